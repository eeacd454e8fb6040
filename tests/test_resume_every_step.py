"""Resume is exact at every step: a tiny 2-epoch run (3 steps per epoch)
interrupted at each of its steps, the last batch of each epoch included, and
rerun each time with the same settings finishes with the weights, history and
test numbers of an uninterrupted run.

Most interruptions happen in-process (a hook in the backup callback fires at
global step k: a real SIGTERM to this process, or an exception standing for a
SIGKILL, which runs no handler and saves nothing); one real SIGKILL hits a
subprocess in the middle of a save."""

import io
import json
import os
import signal
import subprocess
import sys
import zipfile

import h5py
import numpy as np
import pytest

from keras_sgn import training
from keras_sgn.training import outputs
from keras_sgn.training.callbacks import preemption

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEPS_PER_EPOCH, EPOCHS = 3, 2
SETTINGS = dict(dataset="digits", method="pgd", attack_steps=1, epochs=EPOCHS, batch_size=16,
                n_train=16 * STEPS_PER_EPOCH, n_eval=16, eval_steps=1, test_steps=1,
                verbose=0)


def _config(out, **changes):
    return training.TrainConfig(**{**SETTINGS, "output_dir": str(out), **changes})


def _h5_arrays(source):
    arrays = {}
    with h5py.File(source, "r") as f:
        f.visititems(lambda name, item: arrays.__setitem__(name, np.array(item))
                     if isinstance(item, h5py.Dataset) else None)
    return arrays


def _run_files(out):
    """Everything a finished run must reproduce exactly."""
    with zipfile.ZipFile(out / "model.keras") as archive:
        best = _h5_arrays(io.BytesIO(archive.read("model.weights.h5")))
    summary = json.loads((out / "summary.json").read_text())
    return {"last": _h5_arrays(out / "checkpoints" / "last.weights.h5"), "best": best,
            "history": json.loads((out / "history.json").read_text()),
            "numbers": {k: summary[k] for k in ("clean_accuracy", "robust_accuracy",
                                                "per_attack", "best_epoch", "epochs")}}


def _assert_same_run(out, reference):
    run = _run_files(out)
    for name in ("last", "best"):
        assert run[name].keys() == reference[name].keys()
        for key, value in reference[name].items():
            np.testing.assert_array_equal(run[name][key], value, err_msg=f"{name}: {key}")
    # Same keys, lengths and values, the training clocks aside (times are not
    # reproducible); they keep counting across the resumptions.
    clocks = ("train_seconds", "train_cpu_seconds")
    assert {k: v for k, v in run["history"].items() if k not in clocks} == {
        k: v for k, v in reference["history"].items() if k not in clocks}
    assert all(len(v) == EPOCHS for v in run["history"].values())
    for clock in clocks:
        assert 0 < run["history"][clock][0] < run["history"][clock][-1]
    assert run["numbers"] == reference["numbers"]
    assert not (out / "backup").exists() and not list(out.rglob(".tmp-*"))
    assert not (out / ".lock").exists()


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("reference") / "run"
    training.train(_config(out))
    return _run_files(out)


class _Killed(BaseException):
    """Stands for SIGKILL: nothing of the process runs after it (not even
    `except Exception` blocks), so nothing is saved."""


@pytest.fixture
def interrupt_at(monkeypatch):
    """`interrupt_at(step, how)`: during global training step `step` (1-based;
    `"final test"` for the final test), send SIGTERM (`"sigterm"`) or die
    (`"sigkill"`). Fires once per call."""
    armed = {}
    begin = preemption.PreemptionCheckpoint.on_train_batch_begin
    final_test = outputs.final_test

    def on_train_batch_begin(self, batch, logs=None):
        if armed.get("step") == int(self.model.optimizer.iterations) + 1:
            _fire(armed.pop("how"), armed)
        return begin(self, batch, logs)

    def final_test_hook(*args, **kwargs):
        if armed.get("step") == "final test":
            _fire(armed.pop("how"), armed)
        return final_test(*args, **kwargs)

    def _fire(how, armed):
        armed.clear()
        if how == "sigterm":
            os.kill(os.getpid(), signal.SIGTERM)  # the handler stops at the end of the batch
        else:
            raise _Killed()

    monkeypatch.setattr(preemption.PreemptionCheckpoint, "on_train_batch_begin",
                        on_train_batch_begin)
    monkeypatch.setattr(outputs, "final_test", final_test_hook)
    return lambda step, how: armed.update(step=step, how=how)


def _state(out):
    path = out / "backup" / "state.json"
    return json.loads(path.read_text()) if path.exists() else None


@pytest.mark.slow
def test_sigterm_at_every_step_then_rerun_gives_the_uninterrupted_run(
        tmp_path, reference, interrupt_at):
    out = tmp_path / "run"
    for step in range(1, EPOCHS * STEPS_PER_EPOCH + 1):
        interrupt_at(step, "sigterm")
        with pytest.raises(training.callbacks.TrainingPreempted, match="Rerun the same command"):
            training.train(_config(out))
        # Saved at the end of that very step; after an epoch's last step the
        # epoch is not finished yet (its validation is still to run).
        epoch, step_in_epoch = divmod(step - 1, STEPS_PER_EPOCH)
        state = _state(out)
        assert (state["epoch"], state["step"]) == (epoch, step_in_epoch + 1), step
        assert len(state["history"].get("loss", [])) == epoch
    summary = training.train(_config(out))
    assert summary["resumed_from_epoch"] == EPOCHS - 1
    _assert_same_run(out, reference)


@pytest.mark.slow
def test_sigkill_at_every_step_then_rerun_gives_the_uninterrupted_run(
        tmp_path, reference, interrupt_at):
    """Without step backups (the default) a killed epoch is replayed from its start."""
    out = tmp_path / "run"
    for step in [*range(1, EPOCHS * STEPS_PER_EPOCH + 1), "final test"]:
        interrupt_at(step, "sigkill")
        with pytest.raises(_Killed):
            training.train(_config(out))
        state = _state(out)
        done = EPOCHS if step == "final test" else (step - 1) // STEPS_PER_EPOCH
        assert (state or {"epoch": 0})["epoch"] == done and not (out / "summary.json").exists()
    training.train(_config(out))
    _assert_same_run(out, reference)


_DIE_WHILE_SAVING = """
import os, signal
from keras_sgn import io_utils
from keras_sgn.training import train, TrainConfig
commit, commits = io_utils._commit, []
def commit_or_die(tmp, path):
    if path.endswith("state.json"):
        commits.append(path)
        if len(commits) == {die_at}:  # its weights are written, its state not yet
            os.kill(os.getpid(), signal.SIGKILL)
    commit(tmp, path)
io_utils._commit = commit_or_die
train(TrainConfig(**{settings}))
"""


@pytest.mark.slow
def test_a_real_sigkill_while_saving_after_an_epochs_last_step(tmp_path, reference):
    """With step backups, SIGKILL while the first epoch-end backup is being
    written: the last committed backup was taken after the epoch's last step,
    before its validation (the rerun used to skip that epoch's data and leave
    history.json one `loss` short, forever); the dead process leaves its lock
    and a temporary file behind."""
    out = tmp_path / "run"
    settings = {**SETTINGS, "output_dir": str(out), "backup_every_steps": 1}
    code = _DIE_WHILE_SAVING.replace("{settings}", repr(settings)).replace(
        "{die_at}", str(STEPS_PER_EPOCH + 1))
    killed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=300, cwd=ROOT, env=dict(os.environ, PYTHONPATH=ROOT))
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert (_state(out)["epoch"], _state(out)["step"]) == (0, STEPS_PER_EPOCH)
    lock = json.loads((out / ".lock").read_text())
    assert lock["pid"] > 0 and lock["host"]  # left behind by the dead process
    assert list(out.rglob(".tmp-*"))  # the state file it was committing
    summary = training.train(_config(out, backup_every_steps=1, verbose=1))
    assert summary["epochs"] == EPOCHS and summary["resumed_from_epoch"] == 0
    _assert_same_run(out, reference)
