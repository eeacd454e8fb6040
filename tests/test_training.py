"""Run plumbing: recipes, schedules, safe checkpoints, precision and XLA options."""

import json
import os
import time

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_sgn
from keras_sgn import methods, models, training
from keras_sgn.attacks import parse_attacks


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
        training.optimization.build_model(config, __import__("keras_sgn").data.info(config.dataset))


def test_beta_and_sites_parsing():
    assert models.parse_beta("0.05") == 0.05
    assert models.parse_beta("stage1=0.01, stage2=0.2") == {"stage1": 0.01, "stage2": 0.2}
    assert models.parse_sites("none") == ()
    assert models.parse_sites("input, stage2") == ("input", "stage2")


def test_schedules():
    cyclic = training.learning_rate_schedule("cyclic", 0.2, 100)
    values = [float(cyclic(s)) for s in (0, 20, 40, 70, 100)]
    assert values[0] == 0.0 and values[2] == pytest.approx(0.2) and values[-1] == 0.0
    assert values[1] == pytest.approx(0.1) and values[3] == pytest.approx(0.1)
    clone = keras.optimizers.schedules.deserialize(keras.optimizers.schedules.serialize(cyclic))
    assert float(clone(40)) == pytest.approx(0.2)
    piecewise = training.learning_rate_schedule("piecewise", 0.1, 100)
    assert [float(piecewise(s)) for s in (10, 60, 90)] == pytest.approx([0.1, 0.01, 0.001])
    anchor = training.learning_rate_schedule("piecewise", 1e-3, 1000, decay_at=(0.89,))
    assert [float(anchor(s)) for s in (0, 890, 891, 999)] == pytest.approx(
        [1e-3, 1e-3, 1e-4, 1e-4])
    assert _digits_config(lr_decay_at="0.89").lr_decay_at == "0.89"
    for bad in ("0.9,0.5", "1.5", "half", "0"):
        with pytest.raises(ValueError, match="lr_decay_at must be increasing fractions"):
            _digits_config(lr_decay_at=bad)
    # Every run's cosine spans the whole run: steps per epoch x its own epochs.
    for epochs in (3, 7):
        model = models.get("sgn_small_cnn", width=4, sites=())
        training.optimization.compile_for_training(
            model, _digits_config(epochs=epochs, method="fast"), steps_per_epoch=10)
        schedule = model.optimizer._learning_rate
        peak = _digits_config().learning_rate
        assert float(schedule(5 * epochs)) == pytest.approx(peak / 2, rel=1e-3)  # mid-run
        assert float(schedule(10 * epochs)) == pytest.approx(0.0, abs=1e-9)  # its end
    cosine = training.learning_rate_schedule("cosine", 0.1, 100)
    assert float(cosine(0)) == pytest.approx(0.1) and float(cosine(100)) == pytest.approx(0.0)


def test_optimizers_saved_before_the_move_still_load():
    """Saved optimizers name the schedule by its registered name; the module
    path they recorded (`keras_sgn.training`, before it became a package) is
    not needed to load them."""
    saved = {"module": "keras.optimizers", "class_name": "SGD", "registered_name": None,
             "config": {"name": "sgd", "momentum": 0.9, "nesterov": True,
                        "weight_decay": 0.0005, "learning_rate": {
                            "module": "keras_sgn.training", "class_name": "TriangularSchedule",
                            "config": {"peak_lr": 0.2, "total_steps": 100,
                                       "peak_fraction": 0.4},
                            "registered_name": "keras_sgn>TriangularSchedule"}}}
    schedule = keras.optimizers.schedules.deserialize(saved["config"]["learning_rate"])
    assert isinstance(schedule, training.TriangularSchedule)
    assert float(schedule(40)) == pytest.approx(0.2)
    optimizer = keras.optimizers.deserialize(saved)
    assert optimizer.get_config()["learning_rate"]["config"] == schedule.get_config()


def test_safe_checkpoint_replaces_best_only_on_improvement(tmp_path):
    model = models.get("sgn_small_cnn", width=4)
    best, last = str(tmp_path / "model.keras"), str(tmp_path / "ck" / "last.weights.h5")
    callback = training.callbacks.SafeCheckpoint(best, last)
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


# -- models that fit, files read and written with clear errors ------------------

def _digits_config(**changes):
    return training.TrainConfig(dataset="digits", **changes).resolved()


@pytest.mark.parametrize("build,field,match", [
    (dict(input_shape=(28, 28, 1)), "model", r"takes images of shape \(28, 28, 1\)"),
    (dict(input_shape=(8, 8, 3)), "model", "height, width, channels"),
    (dict(num_classes=5), "model", "outputs 5 logits, but 'digits' has 10"),
    (dict(sites=()), "sites", "feedback sites"),
])
def test_a_model_that_does_not_fit_is_refused_before_any_data(build, field, match):
    info = __import__("keras_sgn").data.info("digits")
    kwargs = {"input_shape": info.image_shape, "num_classes": 10, "width": 4, **build}
    model = models.get("sgn_small_cnn", **kwargs)
    with pytest.raises(training.ConfigError, match=match) as error:
        training.optimization.check_model_fits(model, _digits_config(method="sgn"), info)
    assert error.value.field == field
    training.optimization.check_model_fits(models.get("sgn_small_cnn", width=4, sites=()),
                                           _digits_config(method="standard"), info)


def test_corrupt_model_files_are_named_corrupt(tmp_path):
    from keras_sgn import io_utils

    model = models.get("sgn_small_cnn", width=4)
    path = str(tmp_path / "model.keras")
    io_utils.atomic_save_model(model, path)
    payload = open(path, "rb").read()
    for name, content in (("truncated", payload[: len(payload) // 2]),
                          ("random", np.random.default_rng(0).bytes(5000))):
        bad = tmp_path / f"{name}.keras"
        bad.write_bytes(content)
        with pytest.raises(io_utils.CorruptFileError, match="is corrupt") as info:
            io_utils.load_model_file(str(bad), flag="--model")
        assert "File not found" not in str(info.value) and "--model=" in str(info.value)
    with pytest.raises(FileNotFoundError, match="no such file"):
        io_utils.load_model_file(str(tmp_path / "missing.keras"))
    assert io_utils.load_model_file(path).count_params() == model.count_params()


def test_a_full_disk_refuses_a_save_and_keeps_the_previous_file(tmp_path, monkeypatch):
    import errno

    from keras_sgn import io_utils

    model = models.get("sgn_small_cnn", width=4)
    path = str(tmp_path / "model.keras")
    io_utils.atomic_save_model(model, path)
    before = open(path, "rb").read()
    real = io_utils.shutil.disk_usage
    monkeypatch.setattr(io_utils.shutil, "disk_usage", lambda p: real(p)._replace(free=1))
    with pytest.raises(io_utils.OutOfSpaceError, match=str(tmp_path)) as info:
        io_utils.atomic_save_model(model, path)
    assert info.value.errno == errno.ENOSPC and open(path, "rb").read() == before
    monkeypatch.setattr(io_utils.shutil, "disk_usage", real)

    def no_room(tmp, target):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(io_utils, "_commit", no_room)
    with pytest.raises(io_utils.OutOfSpaceError, match="Out of disk space writing"):
        io_utils.atomic_write_json(str(tmp_path / "summary.json"), {"a": 1})
    assert not list(tmp_path.glob(".tmp-*"))


def test_training_curves_plot_series_of_different_lengths(tmp_path):
    from keras_sgn.training import outputs

    # As a resume from an old, wedged backup could leave it: one `loss` short.
    history = {"loss": [1.0], "val_loss": [1.1, 0.9], "val_robust_accuracy": [0.1, 0.2]}
    outputs.write_history(history, str(tmp_path), best_epoch=2)
    assert (tmp_path / "training_curves.png").stat().st_size > 1000


def test_the_final_test_is_the_quick_suite(tmp_path):

    quick = [spec.name for spec in parse_attacks("quick")]
    default = training.outputs.final_test_attacks(_digits_config())
    assert [spec.name for spec in default] == quick
    assert [s.settings() for s in default] == [
        s.settings() for s in parse_attacks("quick")]
    fewer = training.outputs.final_test_attacks(_digits_config(test_steps=3, test_restarts=2))
    assert all(s.settings()["steps"] == 3 for s in fewer)
    assert all(s.settings().get("restarts", 2) == 2 for s in fewer)


def test_epsilon_zero_trains_a_clean_baseline_that_loads(tmp_path):
    out = tmp_path / "run"
    summary = training.train(training.TrainConfig(
        dataset="digits", method="standard", epsilon=0.0, epochs=1, batch_size=16, n_train=32,
        n_eval=16, eval_steps=1, test_steps=1, verbose=0, output_dir=str(out)))
    assert summary["epsilon"] == 0.0
    assert summary["robust_accuracy"] == summary["clean_accuracy"]  # nothing can move
    # Every summary says what produced it.
    assert summary["provenance"]["keras_sgn"] == keras_sgn.__version__
    assert {"tensorflow", "keras", "numpy", "python", "git_commit"} <= set(summary["provenance"])
    loaded = keras.saving.load_model(out / "model.keras")
    assert loaded.method.epsilon == 0.0


def test_training_clock_test_size_and_order_reach_history_and_summary(tmp_path):
    """history.json has the cumulative training seconds (validation excluded) of every
    epoch; the final test takes --n_test images in --test_order."""
    out = tmp_path / "run"
    summary = training.train(training.TrainConfig(
        dataset="digits", method="fast", epochs=3, batch_size=16, n_train=64, n_eval=32,
        n_test=24, test_order="original", eval_steps=1, test_steps=1, verbose=0,
        output_dir=str(out)))
    assert summary["n_test_examples"] == 24 and summary["protocol"]["order"] == "original"
    history = json.loads((out / "history.json").read_text())
    seconds, cpu = history["train_seconds"], history["train_cpu_seconds"]
    assert len(seconds) == 3 and 0 < seconds[0] < seconds[1] < seconds[2]
    assert len(cpu) == 3 and 0 < cpu[0] < cpu[1] < cpu[2]
    assert seconds[2] <= summary["train_seconds"]  # the run's wall time includes validation


def test_training_clock_excludes_validation_and_resumes():
    from keras_sgn.training.callbacks import TrainingClock

    clock, logs = TrainingClock(), {}
    clock.on_epoch_begin(0)
    time.sleep(0.05)
    clock.on_test_begin()
    time.sleep(0.2)  # validation: not counted
    clock.on_epoch_end(0, logs)
    first = logs["train_seconds"]
    assert 0.05 <= first < 0.2
    assert logs["train_cpu_seconds"] < 0.05  # asleep: wall time passes, CPU time hardly
    resumed = TrainingClock()
    resumed.set_state(clock.get_state())
    resumed.on_epoch_begin(1)
    resumed.on_epoch_end(1, logs)
    assert logs["train_seconds"] >= first  # continues from the saved seconds


@pytest.mark.slow
def test_cheap_then_strong_switches_method_for_the_last_epochs(tmp_path):
    out = tmp_path / "run"
    config = training.TrainConfig(
        dataset="digits", method="fast", finish_method="pgd", finish_attack_steps=2,
        finish_fraction=0.3, epochs=3, batch_size=16, n_train=64, n_eval=32, eval_steps=1,
        test_steps=1, verbose=0, output_dir=str(out))
    assert config.resolved().finish_options() == (
        {"epsilon": 0.1, "norm": "linf", "attack_steps": 2, "adversarial_fraction": 1.0}, 2)
    from keras_sgn.training.callbacks import MethodSwitch

    seen = []
    switch = MethodSwitch(methods.get("pgd", epsilon=0.1, attack_steps=2), 2)
    model = models.get("sgn_small_cnn", width=4, sites=())
    model.compile("adam", method="fast", epsilon=0.1)
    switch.set_model(model)
    for epoch in range(3):
        switch.on_epoch_begin(epoch)
        seen.append((model.method.name, model.method.attack_steps))
    assert seen == [("fast", 1), ("fast", 1), ("pgd", 2)]
    resumed = MethodSwitch(methods.get("pgd", epsilon=0.1, attack_steps=2), 2)
    resumed.set_model(model)
    model.compile("adam", method="fast", epsilon=0.1)
    resumed.on_epoch_begin(2)  # a run resumed in its last epoch finishes with PGD
    assert model.method.name == "pgd"
    training.train(config)
    saved = keras.saving.load_model(out / "model.keras")
    assert saved.method.name in ("fast", "pgd")  # the best epoch's method
    for bad, match in ((dict(finish_fraction=1.0), "finish_fraction must be in"),
                       (dict(finish_method="pgdd"), "finish_method must be one of"),
                       (dict(finish_attack_steps=0), "finish_attack_steps must be")):
        with pytest.raises(ValueError, match=match):
            _digits_config(**{"method": "fast", "finish_method": "pgd", **bad})
