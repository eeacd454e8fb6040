"""`sgn-memory`: the step against an independent implementation, the memory
across shuffled epochs (each example keyed by its index), its options and
errors, the pipeline's indices, and a resumed run that continues bit-identically."""

import json
import os
import subprocess
import sys
import types

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_sgn import data, methods, training
from keras_sgn.config import ConfigError
from keras_sgn.layers import SelfGradient
from keras_sgn.models import SGNModel
from tests import test_multiworker
from tests.sgn_reference import (
    EPS,
    SEED,
    Tiny,
    compare_gradients,
    project,
    reference_sgn,
    tiny_batch,
    uniform_start,
)
from tests.test_resume_every_step import (  # noqa: F401 (interrupt_at: a fixture)
    _assert_same_run,
    _h5_arrays,
    _run_files,
    interrupt_at,
)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEP = 1.25 * EPS  # sgn's input step
LEVEL = EPS / 127  # one int8 level of the memory


def _method(size, **options):
    method = methods.get("sgn-memory", epsilon=EPS, **options)
    method.build_state(size, (6,))
    return method


def _state(method):
    store = {}
    method.save_own_variables(store)
    return store


def _reference_start(x, remembered, fresh, decay, seed=SEED):
    """`x + decay * m + (1 - decay) * u`, projected; `u` (the random start) where fresh."""
    random = uniform_start(x, seed)
    start = project(x + decay * remembered + (1.0 - decay) * (random - x), x)
    return tf.where(fresh[:, None], random, start)


def _feedback_image(tiny, x, y, start):
    """The image the feedback pass trains on: one FGSM step from `start`."""
    _, g0, *_ = tiny.self_gradient(start, y)
    return project(start + STEP * tf.sign(g0), x)


@pytest.mark.parametrize("decay,dtype", [(1.0, "float32"), (0.5, "float32"), (0.0, "float32"),
                                         (1.0, "int8"), (1.0, "float16")])
def test_step_matches_an_independent_implementation(decay, dtype):
    """Examples seen before start from their remembered perturbation, unseen
    ones from the random start; the step is then sgn's from that start, and
    the memory takes the perturbation each example was trained on."""
    tiny = Tiny()
    method = _method(20, memory_decay=decay, memory_dtype=dtype)
    x, y = tiny_batch()
    index = tf.constant([3, 17, 0, 9, 12, 5, 1, 19])
    visits = np.array([1, 0, 1, 3, 0, 2, 0, 1], np.int32)
    levels = np.round(np.asarray(tf.random.stateless_uniform(x.shape, [8, 9], -127, 127)))
    remembered = tf.constant(levels * LEVEL, tf.float32)
    memory = np.zeros((20, 6), dtype)
    memory[index.numpy()] = levels.astype(dtype) if dtype == "int8" else remembered.numpy()
    all_visits = np.zeros(20, np.int32)
    all_visits[index.numpy()] = visits
    method.load_own_variables({"memory": memory, "visits": all_visits})
    if dtype == "float16":
        remembered = tf.cast(tf.cast(remembered, tf.float16), tf.float32)
    start = _reference_start(x, remembered, tf.constant(visits == 0), decay)
    if decay:  # the remembered start is not the random one
        assert np.abs(start - uniform_start(x))[visits > 0].max() > 0.1 * EPS

    keyed = types.SimpleNamespace(
        gradients=lambda model, x, y, seed: method.gradients(model, x, y, seed, index=index))
    compare_gradients(tiny, keyed, lambda x, y: reference_sgn(
        tiny, x, y, step_size=STEP, input_steps=0, clean_weight=0.0, second_order=False,
        start=start))

    trained_on = (_feedback_image(tiny, x, y, start) - x).numpy()
    state = _state(method)
    got = state["memory"][index.numpy()].astype(np.float32)
    if dtype == "int8":
        np.testing.assert_allclose(got * LEVEL, trained_on, atol=LEVEL / 2 + 1e-6)
    else:
        np.testing.assert_allclose(got, trained_on, atol=1e-3 if dtype == "float16" else 1e-6)
    np.testing.assert_array_equal(state["visits"][index.numpy()], visits + 1)
    untouched = np.setdiff1d(np.arange(20), index.numpy())
    assert not state["memory"][untouched].any() and not state["visits"][untouched].any()


def _indexed(x, y, batch_size, seed=1):
    """`(images, labels, index)` batches, reshuffled every epoch (as
    `keras_sgn.data.load(..., with_index=True)` gives them)."""
    ds = tf.data.Dataset.from_tensor_slices((x, y)).enumerate()
    return ds.map(lambda i, example: (*example, i)).shuffle(
        len(y), seed=seed, reshuffle_each_iteration=True).batch(batch_size)


@pytest.mark.parametrize("reset_every", [0, 2])
def test_each_example_starts_from_its_own_last_perturbation_across_shuffled_epochs(
        reset_every):
    """Three epochs of `train_step` on a reshuffled dataset, against a reference
    memory kept by index here: every step trains on one FGSM step from the
    perturbation that example had the epoch before (a fresh random start in
    its first epoch, and again every `reset_every` epochs)."""
    tiny = Tiny()
    tiny.model.compile(keras.optimizers.SGD(0.1), method="sgn-memory", epsilon=EPS,
                       memory_dtype="float32", memory_reset_every=reset_every)
    tiny.model.optimizer.build(tiny.model.trainable_variables)
    n = 12
    x_all = tf.random.stateless_uniform((n, 6), [1, 2])
    y_all = tf.constant([i % 3 for i in range(n)])
    tiny.model.method.build_state(n, (6,))
    remembered, visits, orders = {}, dict.fromkeys(range(n), 0), []
    dataset = _indexed(x_all, y_all, 4)
    for _ in range(3):
        order = []
        for x, y, index in dataset:
            rows = [int(i) for i in index]
            order += rows
            fresh = [visits[i] == 0 or bool(reset_every and visits[i] % reset_every == 0)
                     for i in rows]
            memory = tf.stack([remembered.get(i, tf.zeros(6)) for i in rows])
            start = _reference_start(x, memory, tf.constant(fresh), 1.0,
                                     seed=tiny.model._step_seed())
            expected = _feedback_image(tiny, x, y, start)  # the weights before the step
            tiny.recorder.seen.clear()
            tiny.model.train_step((x, y, index))
            (trained_on,) = tiny.recorder.seen  # the feedback pass's input
            np.testing.assert_allclose(trained_on, expected, atol=1e-6)
            for row, i in enumerate(rows):
                remembered[i], visits[i] = expected[row] - x[row], visits[i] + 1
        orders.append(order)
        memory = _state(tiny.model.method)["memory"]
        np.testing.assert_allclose(memory, np.stack([remembered[i] for i in range(n)]),
                                   atol=1e-6)
    assert sorted(orders[0]) == list(range(n)) and len({tuple(o) for o in orders}) == 3
    assert all(v == 3 for v in visits.values())


def test_load_with_index_gives_each_example_its_index_whatever_the_shuffle():
    plain = next(iter(data.load("digits", "train", batch_size=40, n_examples=40,
                                shuffle=False)))[0].numpy()
    shuffled = data.load("digits", "train", batch_size=16, n_examples=40, seed=3,
                         with_index=True)
    orders = []
    for _ in range(2):
        order = []
        for images, _, index in shuffled:
            np.testing.assert_array_equal(images.numpy(), plain[index.numpy()])
            order += index.numpy().tolist()
        orders.append(order)
    assert sorted(orders[0]) == sorted(orders[1]) == list(range(40))
    assert orders[0] != orders[1]
    assert len(next(iter(data.load("digits", "train", batch_size=8, n_examples=8)))) == 2
    with pytest.raises(ValueError, match="with_index must be True or False"):
        data.load("digits", "train", with_index="yes")


@pytest.mark.parametrize("options,field", [
    ({"memory_decay": 1.5}, "memory_decay"), ({"memory_decay": -0.1}, "memory_decay"),
    ({"memory_reset_every": -1}, "memory_reset_every"),
    ({"memory_reset_every": 2.5}, "memory_reset_every"),
    ({"memory_dtype": "int4"}, "memory_dtype")])
def test_bad_options_name_the_parameter(options, field):
    with pytest.raises(ValueError, match=f"{field} must be .* Received: {field}="):
        methods.get("sgn-memory", **options)


@pytest.mark.parametrize("field,value", [("memory_decay", 2.0), ("memory_reset_every", -3)])
def test_run_configuration_names_the_flag(field, value):
    config = training.TrainConfig(dataset="digits", method="sgn-memory", **{field: value})
    with pytest.raises(ConfigError, match=field) as raised:
        config.resolved()
    assert raised.value.field == field


def test_options_cost_and_serialization():
    method = methods.get("sgn-memory", epsilon=0.1, memory_decay=0.5, memory_reset_every=4,
                         memory_dtype="float16", clean_weight=0.2)
    assert method.cost == 2 and methods.registry.expected_cost("sgn-memory") == 2
    assert method.step_size == pytest.approx(0.125) and method.keyed_by_example
    again = methods.deserialize(methods.serialize(method))
    assert again.get_config() == method.get_config()
    assert again.memory is None  # the memory belongs to a training run, not to the config
    options = training.TrainConfig(dataset="digits", method="sgn-memory", memory_decay=0.7,
                                   memory_reset_every=3).resolved().method_options()
    assert options["memory_decay"] == 0.7 and options["memory_reset_every"] == 3
    assert "memory_decay" not in training.TrainConfig(dataset="digits",
                                                      method="sgn").resolved().method_options()


def test_errors_say_what_is_missing():
    tiny = Tiny()
    x, y = tiny_batch()
    method = methods.get("sgn-memory", epsilon=EPS)
    with pytest.raises(ValueError, match="build_state"):
        method.gradients(tiny.model, x, y, SEED, index=tf.range(8))
    method.build_state(8, (6,))
    with pytest.raises(ValueError, match="with_index=True"):
        method.gradients(tiny.model, x, y, SEED)
    with pytest.raises(tf.errors.InvalidArgumentError, match="beyond the memory"):
        method.gradients(tiny.model, x, y, SEED, index=tf.range(8) + 1)
    with pytest.raises(ValueError, match=r"Received: memory of \(9, 6\)"):
        method.load_own_variables({"memory": np.zeros((9, 6), np.int8),
                                   "visits": np.zeros(9, np.int32)})
    inputs = keras.Input((6,))
    hidden_site_only = SGNModel(inputs, keras.layers.Dense(3)(
        SelfGradient(name="site_stage1")(keras.layers.Dense(4)(inputs))))
    with pytest.raises(ValueError, match="needs an input site"):
        method.gradients(hidden_site_only, x, y, SEED, index=tf.range(8))


STEPS_PER_EPOCH, EPOCHS = 3, 2
SETTINGS = dict(dataset="digits", method="sgn-memory", epochs=EPOCHS, batch_size=16,
                n_train=16 * STEPS_PER_EPOCH, n_eval=16, eval_steps=1, test_steps=1, verbose=0,
                backup_every_steps=1)


def _config(out):
    return training.TrainConfig(**{**SETTINGS, "output_dir": str(out)})


@pytest.mark.slow
def test_a_resumed_run_continues_bit_identically(tmp_path, interrupt_at):  # noqa: F811
    """SIGTERM in the first epoch and in the second, each rerun resuming from
    the backup (which holds the memory): the run ends with the weights,
    history and test numbers of an uninterrupted one. Without the memory in
    the backup the second epoch would start afresh and the weights differ."""
    reference = tmp_path / "reference"
    training.train(_config(reference))
    out = tmp_path / "run"
    for step in (2, 5):
        interrupt_at(step, "sigterm")
        with pytest.raises(training.callbacks.TrainingPreempted):
            training.train(_config(out))
        state = json.loads((out / "backup" / "state.json").read_text())
        assert (state["epoch"], state["step"]) == divmod(step, STEPS_PER_EPOCH)
        with np.load(out / "backup" / state["variables"]) as saved:
            visits, memory = saved["method0/visits"], saved["method0/memory"]
        assert memory.dtype == np.int8 and memory.shape == (48, 8, 8, 1)
        assert visits.sum() == 16 * step  # each step visits its 16 examples
        assert np.abs(memory[visits > 0]).max() > 100  # perturbations near epsilon
    training.train(_config(out))
    _assert_same_run(out, _run_files(reference))


def test_mirrored_strategy_trains_like_one_replica():
    """Two replicas (logical CPUs) at the same global batch: the same weights
    (to float tolerance) and the same memory, equal on both replicas."""
    script = os.path.join(ROOT, "tests", "memory_mirrored_check.py")
    result = subprocess.run([sys.executable, script], capture_output=True, text=True,
                            timeout=600, cwd=ROOT, env=dict(os.environ, PYTHONPATH=ROOT))
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["replicas"] == report["copies"] == 2
    assert report["copies_equal"] and report["visits_equal"], report
    assert report["memory_nonzero"] > report["memory_values"] / 2, report
    assert report["memory_levels_off"] <= report["memory_values"] * 1e-3, report
    assert report["weights_max_relative_difference"] < 1e-4, report


@pytest.mark.slow  # two worker processes training two epochs: minutes (make test-slow)
def test_two_workers_train_like_one_process(tmp_path, monkeypatch):
    """MultiWorkerMirroredStrategy, two worker processes on localhost: every
    worker keeps the whole memory and writes each step's global batch into
    it, so the run's last weights are one process's (to float tolerance)."""
    command = [sys.executable, os.path.join(ROOT, "tools", "train.py"), "--dataset=digits",
               "--method=sgn-memory", "--epochs=2", "--batch_size=32", "--n_train=96",
               "--n_eval=32", "--eval_steps=2", "--test_steps=2", "--verbose=2"]
    single = subprocess.run(command + [f"--output_dir={tmp_path / 'single'}"], cwd=ROOT,
                            env=dict(os.environ, PYTHONPATH=ROOT), capture_output=True,
                            text=True, timeout=600)
    assert single.returncode == 0, single.stderr[-3000:]
    monkeypatch.setattr(test_multiworker, "TIMEOUT", 900)  # two epochs on a shared core
    codes, outputs, _ = test_multiworker._run_cluster(
        command + ["--strategy=multi_worker", f"--output_dir={tmp_path / 'cluster'}"],
        tmp_path, "memory")
    for code, output in zip(codes, outputs):
        assert code == 0, output[-4000:]
    one, two = (_h5_arrays(tmp_path / run / "checkpoints" / "last.weights.h5")
                for run in ("single", "cluster"))
    assert one.keys() == two.keys() and one
    for key in one:  # float noise over 6 steps (7.6e-5 measured); a lost memory is O(1)
        scale = np.abs(one[key]).max() + 1e-12
        assert np.abs(two[key] - one[key]).max() <= 1e-3 * scale, key


@pytest.mark.slow  # end to end: a run of 20-60 s (make test-slow, which CI runs)
def test_the_studies_train_it_too(tmp_path):
    """The reproduction trains through `experiments.runs.train_run` (a training
    run, `training.train`, which keys the batches and builds the memory)."""
    from keras_sgn.experiments import reproduce

    config = reproduce.plan("digits", ["sgn-memory"], seeds=[0], epochs=2, n_train=64)[0]
    result = reproduce.run_method(config, str(tmp_path), reproduce.Validation(1, n_examples=16),
                                  n_test=16)
    assert result["method"] == "sgn-memory" and result["epochs"] == 2
    assert [p["epoch"] for p in result["curve"]] == [1, 2]
