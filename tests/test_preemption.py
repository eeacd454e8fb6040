"""Preemption safety: atomic, complete backups; SIGTERM saves and stops; a
training run SIGTERMed, then SIGKILLed, then rerun with the same command
finishes its planned epochs where it left off."""

import json
import os
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_sgn import data, models, training
from keras_sgn.training import keras_compat

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _tiny_model(seed=0):
    keras.utils.set_random_seed(seed)
    model = models.get("sgn_small_cnn", width=2, batch_norm=False)
    model.compile(keras.optimizers.Adam(1e-2), method="standard", epsilon=0.1, eval_steps=1)
    return model


@pytest.fixture(scope="module")
def digits():
    return data.load("digits", "train", batch_size=16, n_examples=64, seed=0,
                     drop_remainder=True)


def _weights(model):
    return [np.array(v) for v in model.weights] + [np.array(v) for v in model.optimizer.variables]


def test_backup_survives_a_crash_while_saving(tmp_path, digits, monkeypatch):
    model = _tiny_model()
    model.fit(digits, epochs=1, verbose=0, shuffle=False)
    backup = training.callbacks.PreemptionCheckpoint(str(tmp_path / "backup"))
    backup.set_model(model)
    backup.epoch = 1
    backup.save()
    saved = _weights(model)
    model.fit(digits, epochs=1, verbose=0, shuffle=False)

    def crash(path, overwrite=True):  # half a file, then the process "dies"
        with open(path, "wb") as f:
            f.write(b"\x89HDF\r\n partial")
        raise OSError("killed while writing")

    monkeypatch.setattr(model, "save_weights", crash)
    backup.epoch = 2
    with pytest.raises(OSError):
        backup.save()
    assert json.loads((tmp_path / "backup" / "state.json").read_text())["epoch"] == 1
    assert not [p for p in os.listdir(tmp_path / "backup") if p.startswith(".tmp-")]

    fresh = _tiny_model(seed=1)
    restore = training.callbacks.PreemptionCheckpoint(str(tmp_path / "backup"))
    restore.set_model(fresh)
    assert restore.restore()["epoch"] == 1 and restore.epoch == 1
    for a, b in zip(saved, _weights(fresh)):
        np.testing.assert_array_equal(a, b)


def test_resume_restores_weights_optimizer_epoch_history_and_best(tmp_path, digits):
    model = _tiny_model()
    best = training.callbacks.SafeCheckpoint(str(tmp_path / "model.keras"), monitor="loss")
    backup = training.callbacks.PreemptionCheckpoint(
        str(tmp_path / "backup"), stateful={"best": best}, delete_on_completion=False)
    model.fit(digits, epochs=2, callbacks=[best, backup], verbose=0, shuffle=False)
    state = json.loads((tmp_path / "backup" / "state.json").read_text())
    assert state["epoch"] == 2 and state["step"] == 0 and len(state["history"]["loss"]) == 2
    # Only the committed weights file remains.
    assert [p for p in os.listdir(tmp_path / "backup") if p.endswith(".h5")] == [state["weights"]]

    fresh = _tiny_model(seed=1)
    best2 = training.callbacks.SafeCheckpoint(str(tmp_path / "model.keras"), monitor="loss")
    backup2 = training.callbacks.PreemptionCheckpoint(str(tmp_path / "backup"),
                                                      stateful={"best": best2})
    history = fresh.fit(digits, epochs=3, callbacks=[best2, backup2], verbose=0,
                      shuffle=False).history
    assert len(history["loss"]) == 1  # epochs 1 and 2 were done: only epoch 3 ran
    assert int(fresh.optimizer.iterations) == 3 * 4
    assert backup2.restored["callbacks"]["best"] == best.get_state()
    assert len(backup2.history["loss"]) == 3
    assert keras_compat.initial_epoch(fresh) is None  # not left behind for a later fit
    assert not (tmp_path / "backup").exists()  # completed: the backup is removed


class _SendSigterm(keras.callbacks.Callback):
    def on_train_batch_end(self, batch, logs=None):
        if batch == 1:
            os.kill(os.getpid(), signal.SIGTERM)


def test_sigterm_saves_at_the_end_of_the_batch_and_stops(tmp_path, digits):
    previous = signal.getsignal(signal.SIGTERM)
    model = _tiny_model()
    backup = training.callbacks.PreemptionCheckpoint(str(tmp_path / "backup"))
    with pytest.raises(training.callbacks.TrainingPreempted, match="Rerun the same command"):
        # The signal is sent after the backup callback's hook of batch 1: the
        # flag is seen at the end of batch 2.
        model.fit(digits, epochs=3, callbacks=[backup, _SendSigterm()], verbose=0, shuffle=False)
    state = json.loads((tmp_path / "backup" / "state.json").read_text())
    assert (state["epoch"], state["step"]) == (0, 3)
    assert int(model.optimizer.iterations) == 3
    assert signal.getsignal(signal.SIGTERM) == previous  # handler removed


def test_keras_makes_two_iterators_per_epoch(digits):
    """The exact resume of train() relies on it (KERAS_ITERATORS_PER_EPOCH)."""
    tf.random.set_seed(0)
    dataset = data.load("digits", "train", batch_size=16, n_examples=64, seed=3,
                        drop_remainder=True)
    _tiny_model().fit(dataset, epochs=2, verbose=0, shuffle=False)
    after_fit = next(iter(dataset))[1].numpy()
    tf.random.set_seed(0)
    reference = data.load("digits", "train", batch_size=16, n_examples=64, seed=3,
                          drop_remainder=True)
    for _ in range(keras_compat.KERAS_ITERATORS_PER_EPOCH * 2):
        iter(reference)
    np.testing.assert_array_equal(after_fit, next(iter(reference))[1].numpy())


def test_resuming_with_other_settings_is_refused():
    saved = training.TrainConfig(dataset="digits", method="pgd").resolved()
    changed = training.TrainConfig(dataset="digits", method="sgn", verbose=2).resolved()
    import dataclasses

    training.run.check_resumable(dataclasses.asdict(saved), dataclasses.replace(saved, verbose=2))
    with pytest.raises(ValueError, match="method: 'pgd' -> 'sgn'"):
        training.run.check_resumable(dataclasses.asdict(saved), changed)


# -- end to end: tools/train.py SIGTERMed, SIGKILLed, rerun -------------------------

COMMAND = ["--dataset=digits", "--method=pgd", "--attack_steps=2", "--epochs=6",
           "--batch_size=32", "--n_train=512", "--n_eval=32", "--eval_steps=1",
           "--test_steps=2", "--verbose=2"]


def _start(out, log):
    env = dict(os.environ, PYTHONPATH=ROOT, PYTHONUNBUFFERED="1")
    return subprocess.Popen([sys.executable, os.path.join(ROOT, "tools", "train.py"),
                             *COMMAND, f"--output_dir={out}"],
                            stdout=open(log, "w"), stderr=subprocess.STDOUT, env=env, cwd=ROOT)


def _wait_for(condition, process, timeout=180):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if condition():
            return True
        if process.poll() is not None:
            return False
        time.sleep(0.05)
    raise TimeoutError("training did not get there in time")


def _state(out):
    path = out / "backup" / "state.json"
    return json.loads(path.read_text()) if path.exists() else None


def _epoch_lines(text):
    """The `Epoch N/M` of each epoch started (a resumed epoch whose steps were
    all done before the interruption says so after a colon)."""
    return [line.split(":")[0] for line in text.splitlines() if line.startswith("Epoch ")]


@pytest.mark.slow
def test_sigterm_then_sigkill_then_the_same_command_finishes(tmp_path):
    out = tmp_path / "run"
    processes = []
    try:
        # 1. SIGTERM during the second epoch: saves at the end of the batch, exit 42.
        first = _start(out, tmp_path / "1.log")
        processes.append(first)
        assert _wait_for(lambda: "Epoch 2/6" in (tmp_path / "1.log").read_text(), first)
        first.send_signal(signal.SIGTERM)
        assert first.wait(timeout=120) == training.callbacks.TrainingPreempted.exit_code, \
            (tmp_path / "1.log").read_text()[-3000:]
        log1 = (tmp_path / "1.log").read_text()
        assert "Rerun the same command to resume" in log1
        stopped = _state(out)
        assert stopped["epoch"] >= 1

        # 2. Same command: resumes there; SIGKILLed once it has backed up another epoch.
        second = _start(out, tmp_path / "2.log")
        processes.append(second)
        assert _wait_for(lambda: (_state(out) or stopped)["epoch"] > stopped["epoch"], second)
        second.kill()
        second.wait(timeout=60)
        log2 = (tmp_path / "2.log").read_text()
        assert f"Resuming from {out / 'backup'}: {stopped['epoch']} of 6 epoch(s)" in log2
        if stopped["step"]:
            assert f"at step {stopped['step']}/16" in log2
        assert _epoch_lines(log2)[0] == f"Epoch {stopped['epoch'] + 1}/6"
        killed = _state(out)  # the last backup committed before SIGKILL
        assert killed["epoch"] > stopped["epoch"] and not (out / "summary.json").exists()

        # 3. Same command again: continues after the last completed epoch, finishes.
        third = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "train.py"),
                                *COMMAND, f"--output_dir={out}"], capture_output=True,
                               text=True, timeout=300, cwd=ROOT,
                               env=dict(os.environ, PYTHONPATH=ROOT))
        assert third.returncode == 0, third.stderr[-3000:]
        lines = _epoch_lines(third.stdout)
        assert lines[0] == f"Epoch {killed['epoch'] + 1}/6" and lines[-1] == "Epoch 6/6"
        summary = json.loads((out / "summary.json").read_text())
        assert summary["epochs"] == 6 and summary["resumed_from_epoch"] == killed["epoch"]
        history = json.loads((out / "history.json").read_text())
        assert len(history["loss"]) == len(history["val_robust_accuracy"]) == 6
        assert 1 <= summary["best_epoch"] <= 6
        keras.saving.load_model(out / "model.keras")
        assert not (out / "backup").exists()
        assert not list(out.rglob(".tmp-*"))
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
