"""`sgn-learned-start`: the step (classifier and generator gradients) against an
independent implementation, the generator's training (its weights move, its
start stays in the ball and in [0, 1], the saved model is the plain
classifier), its options and errors, a resumed run that continues
bit-identically, and MirroredStrategy."""

import zipfile

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_sgn import data, methods, models, training
from keras_sgn.config import ConfigError
from keras_sgn.layers import SelfGradient
from keras_sgn.methods.learned_start import build_generator, multiply_adds
from keras_sgn.models import SGNModel
from tests.helpers import run_check_script, train_through_sigterms
from tests.sgn_reference import (
    EPS,
    SEED,
    Tiny,
    ce,
    compare_gradients,
    project,
    reference_sgn,
    tiny_batch,
)
from tests.test_resume_every_step import (  # noqa: F401 (interrupt_at: a fixture)
    _assert_same_run,
    _run_files,
    interrupt_at,
)

STEP = 1.25 * EPS  # sgn's input step


def _method(**options):
    method = methods.get("sgn-learned-start", epsilon=EPS, **options)
    method.build_state(8, (6,))
    return method


def _reference_start(tiny, generator_weights, x, y, generator_input):
    """The generator's start written out: the clean input gradient (inference
    mode, summed loss), fed as its sign or scaled to a largest magnitude of 1,
    through dense / relu / residual block / tanh by hand."""
    features = x
    if generator_input != "none":
        with tf.GradientTape() as tape:
            tape.watch(x)
            total = tf.reduce_sum(ce(y, tiny.logits(x, training=False)))
        gradient = tape.gradient(total, x)
        fed = (tf.sign(gradient) if generator_input == "sign" else
               gradient / (tf.reduce_max(tf.abs(gradient), axis=1, keepdims=True) + 1e-12))
        features = tf.concat([x, fed], axis=-1)
    k1, b1, k2, b2, k3, b3, k4, b4 = generator_weights
    hidden = tf.nn.relu(features @ k1 + b1)
    hidden = tf.nn.relu(hidden + (tf.nn.relu(hidden @ k2 + b2) @ k3 + b3))
    return project(x + EPS * tf.tanh(hidden @ k4 + b4), x)


def _reference_generator_gradients(tiny, generator_weights, x, y, generator_input):
    """d/d(generator weights) of the feedback pass's mean cross-entropy at
    `proj(start + step * sign(g_0))`, the sign and the hidden deltas constants."""
    with tf.GradientTape() as tape:
        start = _reference_start(tiny, generator_weights, x, y, generator_input)
        _, g0, activations, *gradients = tiny.self_gradient(tf.stop_gradient(start), y)
        deltas = [tf.stop_gradient(d) for d in tiny.deltas(activations, *gradients)]
        x_feedback = project(start + STEP * tf.sign(g0), x)
        loss = tf.reduce_mean(ce(y, tiny.logits(x_feedback, True, deltas)))
    return tape.gradient(loss, generator_weights)


@pytest.mark.parametrize("generator_input", ["sign", "normalized", "none"])
def test_step_matches_an_independent_implementation(generator_input):
    """The classifier's gradients are sgn's from the generator's start; the
    generator's are those of the classifier's training loss at the feedback
    image, through the start, into its weights."""
    tiny = Tiny()
    method = _method(generator_input=generator_input)
    generator_weights = method.generator.trainable_variables
    x, y = tiny_batch()
    start = _reference_start(tiny, generator_weights, x, y, generator_input)
    assert np.abs(start - x).max() > 0.2 * EPS  # the proposal is not the clean image
    compare_gradients(tiny, method, lambda x, y: reference_sgn(
        tiny, x, y, step_size=STEP, input_steps=0, clean_weight=0.0, second_order=False,
        start=start))

    weights = tiny.model.get_weights()
    *_, got = method.all_gradients(tiny.model, x, y, SEED)
    tiny.model.set_weights(weights)
    want = _reference_generator_gradients(tiny, generator_weights, x, y, generator_input)
    tiny.model.set_weights(weights)
    assert len(got) == len(want) == 8
    assert max(float(tf.reduce_max(tf.abs(g))) for g in want) > 1e-5
    for got_one, want_one in zip(got, want):
        np.testing.assert_allclose(got_one, want_one, rtol=1e-4, atol=1e-7)


def test_the_generator_ascends_the_classifiers_loss():
    """`step` moves the generator up its gradient of the loss (Adam's first step
    on the negated gradient: about the learning rate times the gradient's sign)."""
    tiny = Tiny()
    tiny.model.compile(keras.optimizers.SGD(0.0), method="sgn-learned-start", epsilon=EPS,
                       generator_learning_rate=0.01)
    method = tiny.model.method
    method.build_state(8, (6,))
    tiny.model.optimizer.build(tiny.model.trainable_variables)
    x, y = tiny_batch()
    weights = tiny.model.get_weights()
    before = [v.numpy() for v in method.generator.trainable_variables]
    *_, gradients = method.all_gradients(tiny.model, x, y, SEED)
    tiny.model.set_weights(weights)
    method.step(tiny.model, x, y, SEED)
    root = np.sqrt(1.0 - 0.999)  # Keras's Adam: epsilon 1e-7 added to the uncorrected root
    for old, new, gradient in zip(before, method.generator.trainable_variables, gradients):
        g = gradient.numpy()
        np.testing.assert_allclose(new.numpy() - old, 0.01 * root * g / (root * np.abs(g) + 1e-7),
                                   rtol=1e-3, atol=1e-7)


def test_generator_trains_its_start_stays_in_the_ball_and_the_saved_model_is_the_classifier(
        tmp_path):
    x, y = (np.asarray(t) for t in next(iter(data.load(
        "digits", "train", batch_size=96, n_examples=96, shuffle=False))))
    keras.utils.set_random_seed(0)
    model = models.get("sgn_small_cnn", width=8)
    model.compile(keras.optimizers.Adam(3e-3), method="sgn-learned-start", epsilon=0.1,
                  eval_steps=2)
    model.method.build_state(len(y), x.shape[1:])
    generator = model.method.generator
    before = [w.numpy() for w in generator.weights]
    history = model.fit(x, y, batch_size=32, epochs=3, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    assert min(np.abs(a - w.numpy()).max() for a, w in zip(before, generator.weights)) > 1e-4
    start = model.method.propose(model, tf.constant(x), tf.constant(y)).numpy()
    delta = start - x
    assert np.abs(delta).max() <= 0.1 + 1e-6 and start.min() >= 0.0 and start.max() <= 1.0
    assert np.abs(delta).mean() > 0.005  # a proposal, not the clean image
    # Inference is the plain classifier: the saved file holds none of the
    # generator's weights and loads without the method's state.
    path = tmp_path / "model.keras"
    model.save(path)
    with zipfile.ZipFile(path) as archive:
        assert "learned_start_generator" not in archive.read("config.json").decode()
    loaded = keras.saving.load_model(path)
    assert len(loaded.weights) == len(model.weights)
    assert loaded.method.generator is None and loaded.method.name == "sgn-learned-start"
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0),
                               rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("options,field", [
    ({"generator_width": 0}, "generator_width"), ({"generator_width": 2.5}, "generator_width"),
    ({"generator_learning_rate": 0.0}, "generator_learning_rate"),
    ({"generator_learning_rate": float("inf")}, "generator_learning_rate"),
    ({"generator_input": "gradient"}, "generator_input")])
def test_bad_options_name_the_parameter(options, field):
    with pytest.raises(ValueError, match=f"{field} must be .* Received: {field}="):
        methods.get("sgn-learned-start", **options)


@pytest.mark.parametrize("field,value", [("generator_width", -1),
                                         ("generator_learning_rate", -0.1),
                                         ("generator_input", "raw")])
def test_run_configuration_names_the_flag(field, value):
    config = training.TrainConfig(dataset="digits", method="sgn-learned-start", **{field: value})
    with pytest.raises(ConfigError, match=field) as raised:
        config.resolved()
    assert raised.value.field == field


def test_options_cost_and_serialization():
    method = methods.get("sgn-learned-start", epsilon=0.1, generator_width=4,
                         generator_learning_rate=0.01, generator_input="normalized",
                         clean_weight=0.2)
    assert method.cost == 3 and methods.registry.expected_cost("sgn-learned-start") == 3
    assert methods.registry.expected_cost("sgn-learned-start", generator_input="none") == 2
    assert method.step_size == pytest.approx(0.125) and not method.keyed_by_example
    again = methods.deserialize(methods.serialize(method))
    assert again.get_config() == method.get_config()
    assert again.generator is None  # the generator belongs to a training run
    options = training.TrainConfig(dataset="digits", method="sgn-learned-start",
                                   generator_width=8, generator_input="none"
                                   ).resolved().method_options()
    assert options["generator_width"] == 8 and options["generator_input"] == "none"
    assert "generator_width" not in training.TrainConfig(
        dataset="digits", method="sgn").resolved().method_options()


@pytest.mark.parametrize("example_shape", [(28, 28, 1), (8, 8, 1), (7, 7, 1), (32, 32, 3)])
def test_the_generator_proposes_the_images_exact_shape(example_shape):
    """Half resolution and back: odd sizes are cropped to the input's shape."""
    method = methods.get("sgn-learned-start", epsilon=EPS)
    method.build_state(4, example_shape)
    features = tf.zeros((2,) + example_shape[:-1] + (2 * example_shape[-1],))
    direction = method.generator(features)
    assert tuple(direction.shape) == (2,) + example_shape
    assert float(tf.reduce_max(tf.abs(direction))) <= 1.0


def test_the_generator_costs_a_fraction_of_the_classifiers_pass():
    """At the default width the generator's multiply-adds per 28x28 image are
    below half of sgn_mnist_cnn's, so a step stays near the 3 classifier passes
    the method declares (a generator at the image's full resolution costs more
    than the classifier: 1.07M at width 8, 3.95M at width 16)."""
    classifier = multiply_adds(models.get("sgn_mnist_cnn"))
    assert classifier == 609_384  # the convolutions and dense layers, counted by hand
    width = methods.get("sgn-learned-start").generator_width
    generator = multiply_adds(build_generator((28, 28, 1), width, with_gradient=True))
    assert generator < 0.5 * classifier


def test_errors_say_what_is_missing():
    tiny = Tiny()
    x, y = tiny_batch()
    method = methods.get("sgn-learned-start", epsilon=EPS)
    with pytest.raises(ValueError, match="build_state"):
        method.gradients(tiny.model, x, y, SEED)
    method.build_state(8, (6,))
    state = {}
    method.save_own_variables(state)
    other = methods.get("sgn-learned-start", epsilon=EPS, generator_width=4)
    other.build_state(8, (6,))
    with pytest.raises(ValueError, match=r"Received: \(12, 8\) \(another generator_width"):
        other.load_own_variables(state)
    inputs = keras.Input((6,))
    hidden_site_only = SGNModel(inputs, keras.layers.Dense(3)(
        SelfGradient(name="site_stage1")(keras.layers.Dense(4)(inputs))))
    with pytest.raises(ValueError, match="needs an input site"):
        method.gradients(hidden_site_only, x, y, SEED)


STEPS_PER_EPOCH, EPOCHS = 3, 2
SETTINGS = dict(dataset="digits", method="sgn-learned-start", epochs=EPOCHS, batch_size=16,
                n_train=16 * STEPS_PER_EPOCH, n_eval=16, eval_steps=1, test_steps=1, verbose=0,
                backup_every_steps=1, generator_width=4)


def _config(out):
    return training.TrainConfig(**{**SETTINGS, "output_dir": str(out)})


@pytest.mark.slow
def test_a_resumed_run_continues_bit_identically(tmp_path, interrupt_at):  # noqa: F811
    """SIGTERM in the first epoch and in the second, each rerun resuming from
    the backup (which holds the generator and its Adam state): the run ends
    with the weights, history and test numbers of an uninterrupted one."""
    reference = tmp_path / "reference"
    training.train(_config(reference))

    def check_backup(state, arrays, step):
        assert (state["epoch"], state["step"]) == divmod(step, STEPS_PER_EPOCH)
        assert arrays["method0/generator_0"].shape == (3, 3, 2, 4)  # image + gradient in
        assert int(arrays["method0/generator_optimizer_0"]) == step  # Adam's iterations

    train_through_sigterms(_config(tmp_path / "run"), (2, 5), interrupt_at, check_backup)
    _assert_same_run(tmp_path / "run", _run_files(reference))


@pytest.mark.slow
def test_mirrored_strategy_trains_like_one_replica():
    """Two replicas (logical CPUs) at the same global batch: the same classifier
    and generator weights (to float tolerance), the generator's copies equal."""
    report = run_check_script("learned_start_mirrored_check.py")
    assert report["replicas"] == report["copies"] == 2 and report["copies_equal"], report
    assert report["generator_moved"] > 1e-4, report
    assert report["weights_max_relative_difference"] < 1e-4, report
    assert report["generator_max_relative_difference"] < 1e-4, report
