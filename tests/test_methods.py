"""Training methods: the SGN step against an independent computation, each
method learning, compile/save round trips, and argument errors."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_sgn import attacks, methods, models
from keras_sgn.layers import SelfGradient
from keras_sgn.models import SGNModel

EPS = 0.1


def _tiny():
    inputs = keras.Input((6,))
    dense = [keras.layers.Dense(5, activation="tanh"), keras.layers.Dense(4, activation="tanh"),
             keras.layers.Dense(3)]
    h = SelfGradient(input_site=True, name="site_input")(inputs)
    h = SelfGradient(beta=0.3, name="site_stage1")(dense[0](h))
    h = SelfGradient(beta=0.05, name="site_stage2")(dense[1](h))
    return SGNModel(inputs, dense[2](h)), dense


def _rel(a, g):
    return np.linalg.norm(a, axis=1, keepdims=True) * g / np.linalg.norm(g, axis=1, keepdims=True)


def test_sgn_step_matches_an_independent_implementation():
    model, (d1, d2, d3) = _tiny()
    x = tf.random.uniform((8, 6))
    y = tf.constant([0, 1, 2, 0, 1, 2, 0, 1])
    seed = tf.constant([3, 4])
    method = methods.get("sgn", epsilon=EPS, clean_weight=0.3)
    loss, _, grads = method.gradients(model, x, y, seed)

    def ce(logits):
        return tf.reduce_mean(attacks.core.cross_entropy_loss(y, logits))

    start = attacks.core.random_start(x, EPS, "linf", seed)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(start)
        a1 = d1(start)
        tape.watch(a1)
        a2 = d2(a1)
        tape.watch(a2)
        loss1 = ce(d3(a2))
    g0, g1, g2 = (tape.gradient(loss1, t).numpy() for t in (start, a1, a2))
    x_fb = np.clip(np.clip(start + 1.25 * EPS * np.sign(g0), x - EPS, x + EPS), 0, 1)
    delta1, delta2 = 0.3 * _rel(a1.numpy(), g1), 0.05 * _rel(a2.numpy(), g2)
    variables = model.trainable_variables
    with tf.GradientTape() as weight_tape:
        loss2 = ce(d3(d2(d1(x_fb) + delta1) + delta2))
    with tf.GradientTape() as clean_tape:
        clean_loss = ce(d3(d2(d1(start))))
    expected = [0.7 * a + 0.3 * b for a, b in zip(weight_tape.gradient(loss2, variables),
                                                  clean_tape.gradient(clean_loss, variables))]
    np.testing.assert_allclose(loss, 0.7 * loss2 + 0.3 * clean_loss, rtol=1e-5)
    for got, want in zip(grads, expected):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)


def test_second_order_changes_the_gradient_and_stays_finite():
    model, _ = _tiny()
    x = tf.random.uniform((8, 6))
    y = tf.constant([0, 1, 2, 0, 1, 2, 0, 1])
    seed = tf.constant([1, 1])
    first = methods.get("sgn", epsilon=EPS).gradients(model, x, y, seed)[2]
    second = methods.get("sgn", epsilon=EPS, second_order=True).gradients(model, x, y, seed)[2]
    assert all(np.all(np.isfinite(g)) for g in second)
    assert max(float(tf.reduce_max(tf.abs(a - b))) for a, b in zip(first, second)) > 1e-7


# Options that keep each method's tiny training short (and its feedback on).
TINY_OPTIONS = {"pgd": {"attack_steps": 3}, "trades": {"attack_steps": 3},
                "sgn-pgd": {"attack_steps": 3}, "free": {"replays": 2},
                "sgn-reuse": {"replays": 2}, "sgn-ramp": {"ramp_steps": 8}}


@pytest.mark.parametrize("name", ["standard", "fast", "pgd", "free", "trades", "sgn", "sgn-pgd",
                                  "sgn-reuse", "sgn-ramp", "sgn-align", "sgn-nfgsm"])
def test_each_method_trains_a_tiny_model(name, digits_arrays):
    x, y = digits_arrays("train", 256)
    keras.utils.set_random_seed(0)
    model = models.get("sgn_small_cnn", width=8)
    model.compile(keras.optimizers.Adam(3e-3), method=name, epsilon=0.05, eval_steps=2,
                  **TINY_OPTIONS.get(name, {}))
    history = model.fit(x, y, batch_size=32, epochs=4, verbose=0, validation_data=(x[:64], y[:64]),
                        validation_freq=4)
    losses = history.history["loss"]
    assert np.all(np.isfinite(losses))
    assert losses[-1] < losses[0], losses
    # The training accuracy is named for what it is measured on; validation
    # keeps its names whatever the method.
    train_accuracy = "accuracy" if name == "standard" else "adv_accuracy"
    assert set(history.history) == {"loss", train_accuracy, "val_loss", "val_accuracy",
                                     "val_robust_accuracy"}


def test_validation_reports_clean_and_robust_accuracy(digits_arrays):
    x, y = digits_arrays("train", 256)
    model = models.get("sgn_small_cnn", width=8)
    model.compile("adam", method="standard", epsilon=0.1, eval_steps=5)
    model.fit(x, y, batch_size=64, epochs=3, verbose=0)
    results = model.evaluate(x, y, batch_size=64, return_dict=True, verbose=0)
    assert set(results) >= {"loss", "accuracy", "robust_accuracy"}
    assert 0.0 <= results["robust_accuracy"] < results["accuracy"]
    # The same number as the public attack (same protocol, fresh random start).
    x_adv = np.concatenate([
        attacks.pgd(model, x[i:i + 64], y[i:i + 64], epsilon=0.1, steps=5)
        for i in range(0, len(x), 64)])
    manual = float(np.mean(np.argmax(model.predict(x_adv, verbose=0), -1) == y))
    assert abs(manual - results["robust_accuracy"]) < 0.06


def test_compiled_model_round_trips_through_keras_file(tmp_path, digits_arrays):
    x, y = digits_arrays("train", 128)
    model = models.get("sgn_small_cnn", width=8, beta={"stage1": 0.02})
    model.compile(keras.optimizers.SGD(0.01, momentum=0.9), method="sgn-pgd", epsilon=0.05,
                  attack_steps=2, clean_weight=0.1, seed=7)
    model.fit(x, y, batch_size=32, epochs=1, verbose=0)
    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded, SGNModel)
    assert methods.serialize(loaded.method) == methods.serialize(model.method)
    assert loaded.method.input_attack == "pgd" and loaded.attack_seed == 7
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0),
                               rtol=1e-5, atol=1e-5)
    # Training can go on from the loaded file.
    loaded.fit(x, y, batch_size=32, epochs=1, verbose=0)


def test_images_outside_unit_range_fail_in_fit(digits_arrays):
    x, y = digits_arrays("train", 64)
    model = models.get("sgn_small_cnn", width=8)
    model.compile("adam", method="fast", epsilon=0.1)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"images \(x\) must be in \[0, 1\]"):
        model.fit(x * 16.0, y, batch_size=32, epochs=1, verbose=0)


# name -> (step size / epsilon, attack steps, cost, multi_step, budget of 16 epochs), pinned.
DEFAULTS = {
    "standard": (0.25, 10, 1, False, 16),
    "fast": (1.25, 1, 2, False, 16),
    "pgd": (0.25, 10, 11, True, 16),
    "free": (1.0, 10, 8, False, 2),
    "trades": (0.25, 10, 11, True, 16),
    "sgn": (1.25, 1, 2, False, 16),
    "sgn-pgd": (0.25, 10, 11, True, 16),
    "sgn-reuse": (1.0, 10, 8, False, 2),
    "sgn-ramp": (1.25, 1, 2, False, 16),
    "sgn-align": (1.25, 1, 4, False, 16),
    "sgn-nfgsm": (1.0, 1, 2, False, 16),
    "sgn-memory": (1.25, 1, 2, False, 16),
    "sgn-learned-start": (1.25, 1, 3, False, 16),
}


@pytest.mark.parametrize("name", sorted(DEFAULTS))
def test_each_method_keeps_its_contract(name):
    assert methods.list_methods() == sorted(DEFAULTS)
    method = methods.get(name, epsilon=0.2)
    cls = methods.registry.method_class(name)
    step, steps, cost, multi_step, budget = DEFAULTS[name]
    assert (method.step_size, method.attack_steps) == (pytest.approx(step * 0.2), steps)
    assert (cls.default_step_size, cls.default_attack_steps) == (step, steps)
    expected = methods.registry.expected_cost(name)
    assert (method.cost, expected, cls.multi_step) == (cost, cost, multi_step)
    assert methods.registry.budget_epochs(name, 16) == method.budget_epochs(16) == budget
    assert methods.registry.default_step_size(name, 0.2) == pytest.approx(step * 0.2)
    assert cls.name == method.name == name and cls.description
    # get_config is the constructor's arguments: a clone has the same config.
    config = method.get_config()
    assert cls(**config).get_config() == config
    assert methods.deserialize(methods.serialize(method)).get_config() == config
    # Every run-configuration field and declared option maps onto a constructor argument.
    run_options = methods.registry.run_options(name)
    assert set(run_options.values()) <= set(config)
    run = {field: 0.3 if field == "epsilon" else None for field in run_options}
    assert methods.registry.options_from_run(name, {**run, "unrelated": 1}) == {"epsilon": 0.3}


@pytest.mark.parametrize("kwargs,parameter", [
    (dict(method="pgdd"), "pgd"),
    (dict(method="pgd", epsilon=-1.0), "epsilon"),
    (dict(method="pgd", attack_steps=0), "steps"),
    (dict(method="sgn", clean_weight=1.5), "clean_weight"),
    (dict(method="sgn", input_attack="cw"), "input_attack"),
    (dict(method="free", replays=0), "replays"),
    (dict(method="sgn-reuse", replays=1.5), "replays"),
    (dict(method="sgn-ramp", ramp="sideways"), "ramp"),
    (dict(method="sgn-ramp", ramp_steps=0), "ramp_steps"),
    (dict(method="sgn-align", align_weight=-1.0), "align_weight"),
    (dict(method="sgn-align", input_attack="pgd"), "input_attack"),
    (dict(method="sgn-nfgsm", noise_scale=-1.0), "noise_scale"),
    (dict(method="sgn-memory", memory_decay=1.5), "memory_decay"),
])
def test_bad_method_arguments_name_the_parameter(kwargs, parameter):
    with pytest.raises(ValueError, match=parameter):
        methods.get(kwargs.pop("method"), **kwargs)


def test_fit_before_compile_is_a_clear_error(digits_arrays):
    x, y = digits_arrays("train", 32)
    model = models.get("sgn_small_cnn", width=8)
    with pytest.raises(ValueError, match="compile"):
        model.fit(x, y, epochs=1, verbose=0)


def test_adversarial_fraction_attacks_only_the_first_share_of_the_batch(digits_arrays,
                                                                         monkeypatch):
    """The anchor's recipe attacks the first half of each batch and trains the rest clean."""
    from keras_sgn.methods import adversarial

    x, y = digits_arrays("train", 16)
    model = models.get("sgn_small_cnn", width=4, sites=())
    half = methods.get("pgd", epsilon=0.1, attack_steps=3, adversarial_fraction=0.5)
    assert half.cost == pytest.approx(2.5) and half.get_config()["adversarial_fraction"] == 0.5
    attacked, trained = [], []
    perturb, train_on = adversarial.AdversarialTraining.perturb, adversarial._train_on

    def spy_perturb(self, forward, x_in, *args, **options):
        attacked.append(int(x_in.shape[0]))
        return perturb(self, forward, x_in, *args, **options)

    def spy_train_on(m, x_train, labels):
        trained.append(x_train.numpy())
        return train_on(m, x_train, labels)

    monkeypatch.setattr(adversarial.AdversarialTraining, "perturb", spy_perturb)
    monkeypatch.setattr(adversarial, "_train_on", spy_train_on)
    half.gradients(model, tf.constant(x), tf.constant(y), tf.constant([1, 2]))
    assert attacked == [8]
    np.testing.assert_array_equal(trained[0][8:], x[8:])  # the second half stays clean
    assert np.abs(trained[0][:8] - x[:8]).max() > 0
    for bad in (0, 1.5, "half"):
        with pytest.raises(ValueError, match="adversarial_fraction must be in"):
            methods.get("pgd", adversarial_fraction=bad)
