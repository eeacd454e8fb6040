"""Run plumbing: recipes, schedules, safe checkpoints, precision and XLA options."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_sgn import methods
from keras_sgn import models
from keras_sgn import training


def test_defaults_follow_the_dataset_unless_given():
    digits = training.TrainConfig(dataset="digits").resolved()
    assert (digits.model, digits.epsilon, digits.batch_size) == ("sgn_small_cnn", 0.1, 64)
    cifar = training.TrainConfig().resolved()
    assert (cifar.dataset, cifar.model, cifar.method) == ("cifar10", "sgn_resnet18", "sgn")
    assert cifar.epsilon == pytest.approx(8 / 255)
    explicit = training.TrainConfig(dataset="digits", epsilon=0.2, model="sgn_resnet18").resolved()
    assert (explicit.epsilon, explicit.model) == (0.2, "sgn_resnet18")


@pytest.mark.parametrize("kwargs,parameter", [
    (dict(dataset="cifar11"), "cifar10"),
    (dict(method="sgm"), "sgn"),
    (dict(epsilon=-1.0), "epsilon"),
    (dict(epochs=0), "epochs"),
    (dict(strategy="everything"), "strategy"),
    (dict(beta="a lot"), "beta"),
    (dict(sites="input,stage9"), "site"),
])
def test_bad_config_names_the_parameter(kwargs, parameter):
    with pytest.raises(ValueError, match=parameter):
        config = training.TrainConfig(**{"dataset": "digits", **kwargs}).resolved()
        training.build_model(config, __import__("keras_sgn").data.info(config.dataset))


def test_beta_and_sites_parsing():
    assert training.parse_beta("0.05") == 0.05
    assert training.parse_beta("stage1=0.01, stage2=0.2") == {"stage1": 0.01, "stage2": 0.2}
    assert training.parse_sites("none") == ()
    assert training.parse_sites("input, stage2") == ("input", "stage2")


def test_schedules():
    cyclic = training.learning_rate_schedule("cyclic", 0.2, 100)
    values = [float(cyclic(s)) for s in (0, 20, 40, 70, 100)]
    assert values[0] == 0.0 and values[2] == pytest.approx(0.2) and values[-1] == 0.0
    assert values[1] == pytest.approx(0.1) and values[3] == pytest.approx(0.1)
    clone = keras.optimizers.schedules.deserialize(keras.optimizers.schedules.serialize(cyclic))
    assert float(clone(40)) == pytest.approx(0.2)
    piecewise = training.learning_rate_schedule("piecewise", 0.1, 100)
    assert [float(piecewise(s)) for s in (10, 60, 90)] == pytest.approx([0.1, 0.01, 0.001])
    cosine = training.learning_rate_schedule("cosine", 0.1, 100)
    assert float(cosine(0)) == pytest.approx(0.1) and float(cosine(100)) == pytest.approx(0.0)


def test_safe_checkpoint_replaces_best_only_on_improvement(tmp_path):
    model = models.get("sgn_small_cnn", width=4)
    best, last = str(tmp_path / "model.keras"), str(tmp_path / "ck" / "last.weights.h5")
    callback = training.SafeCheckpoint(best, last)
    callback.set_model(model)
    callback.on_epoch_end(0, {"val_robust_accuracy": 0.5})
    first = os.path.getmtime(best)
    reference = model.predict(np.zeros((1, 8, 8, 1), "float32"), verbose=0)
    model.layers[-1].kernel.assign(model.layers[-1].kernel * 2.0)
    callback.on_epoch_end(1, {"val_robust_accuracy": 0.4})   # worse: best file untouched
    assert os.path.getmtime(best) == first and callback.best_epoch == 1
    loaded = keras.saving.load_model(best)
    np.testing.assert_allclose(loaded.predict(np.zeros((1, 8, 8, 1), "float32"), verbose=0),
                               reference, rtol=1e-6)
    callback.on_epoch_end(2, {"val_robust_accuracy": 0.6})
    assert callback.best_epoch == 3 and os.path.exists(last)
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".tmp-")]
    with pytest.raises(KeyError, match="validation"):
        callback.on_epoch_end(3, {"loss": 1.0})


def _tiny_step(method_name, jit):
    keras.utils.set_random_seed(3)
    model = models.get("sgn_small_cnn", width=4, batch_norm=False)
    method = methods.get(method_name, epsilon=0.1, attack_steps=3)
    method.jit_compile = jit
    x = tf.random.uniform((8, 8, 8, 1))
    y = tf.constant([0, 1, 2, 3, 4, 5, 6, 7])
    return tf.function(method.gradients)(model, x, y, tf.constant([1, 2]))[2]


@pytest.mark.parametrize("method_name", ["pgd", "sgn-pgd"])
def test_xla_compiled_attack_gives_the_same_gradients(method_name):
    eager = _tiny_step(method_name, jit=False)
    compiled = _tiny_step(method_name, jit=True)
    for a, b in zip(eager, compiled):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-5)


def test_mixed_precision_training_runs(digits_arrays):
    x, y = digits_arrays("train", 64)
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        model = models.get("sgn_small_cnn", width=8)
        model.compile("adam", method="sgn", epsilon=0.1, eval_steps=2)
        history = model.fit(x, y, batch_size=32, epochs=2, verbose=0, validation_data=(x, y))
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert model.layers[-1].compute_dtype == "float32"
    assert np.all(np.isfinite(history.history["loss"]))
    assert 0.0 <= history.history["val_robust_accuracy"][-1] <= 1.0
