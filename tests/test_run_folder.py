"""The run folder belongs to one run at a time (keras_sgn/training/run_folder.py):
a lock naming its owner, stale locks and temporaries cleaned, finished runs
never overwritten by accident, a full disk named before it costs anything."""

import dataclasses
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import zipfile

import pytest

from keras_sgn import io_utils, method_options, training
from keras_sgn.config import resumable_fields
from keras_sgn.training import run_folder

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIELDS = tuple(f.name for f in dataclasses.fields(training.TrainConfig))

SETTINGS = {"dataset": "digits", "method": "sgn", "seed": 0, "verbose": 1}
MAY_DIFFER = ("verbose", "output_dir")
TINY = dict(dataset="digits", method="standard", epochs=1, batch_size=16,
            n_train=32, n_eval=16, eval_steps=1, test_steps=1, verbose=0)


def _finished_run(folder, settings=SETTINGS):
    """A folder as a finished run leaves it (contents are markers; model.keras is
    a whole archive with a Keras model's members, its config the marker)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(settings))
    (folder / "summary.json").write_text(json.dumps({"robust_accuracy": 0.5}))
    with zipfile.ZipFile(folder / "model.keras", "w") as archive:
        for member in ("config.json", "metadata.json", "model.weights.h5"):
            archive.writestr(member, "the old model")
    return folder


def _model_marker(path):
    with zipfile.ZipFile(path) as archive:
        return archive.read("config.json").decode()


# -- the lock ------------------------------------------------------------------------------

def test_a_held_folder_is_refused_naming_the_owner(tmp_path):
    first = run_folder.RunLock(str(tmp_path)).acquire()
    try:
        with pytest.raises(run_folder.RunFolderBusyError) as info:
            run_folder.RunLock(str(tmp_path)).acquire()
        message = str(info.value)
        assert f"pid {os.getpid()} on host {socket.gethostname()}" in message
        assert "--output_dir" in message and "in use" in message
    finally:
        first.release()
    assert not (tmp_path / ".lock").exists()
    run_folder.RunLock(str(tmp_path)).acquire().release()  # free again


def test_a_lock_left_by_a_dead_process_is_taken_over(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    owner = {"pid": int(dead.stdout), "host": socket.gethostname(), "started": time.time()}
    (tmp_path / ".lock").write_text(json.dumps(owner))
    lock = run_folder.RunLock(str(tmp_path)).acquire()
    try:
        assert lock.took_over["pid"] == owner["pid"]
        assert json.loads((tmp_path / ".lock").read_text())["pid"] == os.getpid()
    finally:
        lock.release()


def test_a_lock_from_another_host_is_live_until_it_stops_beating(tmp_path):
    owner = {"pid": 1, "host": "another-host", "started": time.time(), "command": "train.py"}
    (tmp_path / ".lock").write_text(json.dumps(owner))
    with pytest.raises(run_folder.RunFolderBusyError, match="another-host"):
        run_folder.RunLock(str(tmp_path)).acquire()
    stale = time.time() - run_folder.RunLock.STALE_SECONDS - 60
    os.utime(tmp_path / ".lock", (stale, stale))
    lock = run_folder.RunLock(str(tmp_path)).acquire()
    assert lock.took_over["host"] == "another-host"
    lock.release()


def test_the_lock_heartbeat_refreshes_the_lock_file(tmp_path, monkeypatch):
    monkeypatch.setattr(run_folder.RunLock, "HEARTBEAT_SECONDS", 0.05)
    lock = run_folder.RunLock(str(tmp_path)).acquire()
    try:
        old = time.time() - 1000
        os.utime(tmp_path / ".lock", (old, old))
        time.sleep(0.5)
        assert os.path.getmtime(tmp_path / ".lock") > old + 900
    finally:
        lock.release()


def test_train_refuses_a_folder_another_run_holds(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    holder = run_folder.RunLock(str(out)).acquire()  # the other run
    try:
        with pytest.raises(training.RunFolderBusyError, match="in use by the run with pid"):
            training.train(training.TrainConfig(**TINY, output_dir=str(out)))
    finally:
        holder.release()
    assert not (out / "summary.json").exists() and not (out / "config.json").exists()


# -- what the folder holds -----------------------------------------------------------------

def test_stale_temporaries_are_cleaned_at_start(tmp_path):
    (tmp_path / "backup").mkdir()
    leftovers = [tmp_path / ".tmp-abc.keras", tmp_path / "backup" / ".tmp-xyzstate.json"]
    for path in leftovers:
        path.write_text("half a file")
    (tmp_path / "keep.txt").write_text("not ours")
    folder = run_folder.RunFolder(str(tmp_path))
    assert folder.open(SETTINGS, MAY_DIFFER).status == "new"
    folder.close()
    assert sorted(folder.cleaned) == sorted(str(p) for p in leftovers)
    assert not any(p.exists() for p in leftovers) and (tmp_path / "keep.txt").exists()


def test_a_finished_run_with_the_same_settings_is_complete(tmp_path):
    _finished_run(tmp_path)
    folder = run_folder.RunFolder(str(tmp_path))
    state = folder.open({**SETTINGS, "verbose": 0}, MAY_DIFFER)  # runtime fields may differ
    folder.close()
    assert state.status == "complete" and folder.summary() == {"robust_accuracy": 0.5}
    assert _model_marker(tmp_path / "model.keras") == "the old model"


@pytest.mark.parametrize("finished", [True, False])
def test_other_settings_are_refused_unless_overwrite_which_archives(tmp_path, finished):
    _finished_run(tmp_path)
    if not finished:  # an unfinished run: a backup, no summary
        (tmp_path / "summary.json").unlink()
        (tmp_path / "backup").mkdir()
        (tmp_path / "backup" / "state.json").write_text("{}")
    other = {**SETTINGS, "method": "pgd"}
    with pytest.raises(run_folder.RunFolderError) as info:
        run_folder.RunFolder(str(tmp_path)).open(other, MAY_DIFFER)
    message = str(info.value)
    assert "method: 'sgn' -> 'pgd'" in message and "--overwrite" in message
    assert ("holds a finished run" in message) == finished
    assert _model_marker(tmp_path / "model.keras") == "the old model"  # untouched
    assert not (tmp_path / ".lock").exists()  # a refusal releases the lock
    folder = run_folder.RunFolder(str(tmp_path))
    state = folder.open(other, MAY_DIFFER, overwrite=True)
    folder.close()
    assert state.status == "new" and not (tmp_path / "model.keras").exists()
    archived = tmp_path / "previous" / os.path.basename(state.archived)
    assert _model_marker(archived / "model.keras") == "the old model"
    assert json.loads((archived / "config.json").read_text()) == SETTINGS


def test_overwrite_does_not_discard_an_unfinished_run_of_the_same_settings(tmp_path):
    _finished_run(tmp_path)
    (tmp_path / "summary.json").unlink()
    (tmp_path / "backup").mkdir()
    (tmp_path / "backup" / "state.json").write_text("{}")
    folder = run_folder.RunFolder(str(tmp_path))
    assert folder.open(SETTINGS, MAY_DIFFER, overwrite=True).status == "resume"
    folder.close()
    assert not (tmp_path / "previous").exists()


def test_a_folder_of_something_else_is_refused(tmp_path):
    (tmp_path / "model.keras").write_text("someone's model")
    with pytest.raises(run_folder.RunFolderError, match="no config.json"):
        run_folder.RunFolder(str(tmp_path)).open(SETTINGS, MAY_DIFFER)


def test_output_dir_that_is_a_file_or_read_only_names_the_flag(tmp_path):
    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(run_folder.RunFolderError, match="--output_dir must be a folder"):
        run_folder.check_writable_folder(str(a_file))
    with pytest.raises(run_folder.RunFolderError, match="--output_dir=.*cannot be created"):
        run_folder.check_writable_folder(str(a_file / "below"))
    read_only = tmp_path / "read_only"
    read_only.mkdir()
    read_only.chmod(0o500)
    try:
        if os.access(read_only, os.W_OK):
            pytest.skip("running as a user who can write anywhere (root)")
        with pytest.raises(run_folder.RunFolderError, match="--output_dir=.*not writable"):
            run_folder.check_writable_folder(str(read_only))
    finally:
        read_only.chmod(0o700)


# -- train() on a folder -----------------------------------------------------------------

@pytest.mark.slow
def test_train_on_a_finished_folder(tmp_path):
    """Same settings: "already complete", nothing retrained; other settings:
    refused, the finished run intact; --overwrite: archived, trained afresh."""
    out = tmp_path / "run"
    first = training.train(training.TrainConfig(**TINY, output_dir=str(out)))
    model_time = os.path.getmtime(out / "model.keras")
    again = training.train(training.TrainConfig(**{**TINY, "verbose": 1},
                                                output_dir=str(out)))
    assert again["already_complete"] and again["robust_accuracy"] == first["robust_accuracy"]
    assert os.path.getmtime(out / "model.keras") == model_time
    other = training.TrainConfig(**{**TINY, "seed": 1}, output_dir=str(out))
    with pytest.raises(training.RunFolderError, match="seed: 0 -> 1"):
        training.train(other)
    assert json.loads((out / "summary.json").read_text()) == {
        k: v for k, v in first.items()}
    redone = training.train(training.TrainConfig(**{**TINY, "seed": 1, "overwrite": True},
                                                 output_dir=str(out)))
    assert "already_complete" not in redone
    archived = list((out / "previous").iterdir())
    assert len(archived) == 1 and json.loads(
        (archived[0] / "summary.json").read_text()) == first


# -- run folders whose config.json has the earlier layout ----------------------------------

def _earlier_layout(config):
    """`config.to_dict()` as config.json was written before `options` existed: every
    declared method option a key of its own (the method's at their values)."""
    values = {k: v for k, v in config.to_dict().items() if k != "options"}
    values.update({o.field: o.default for o in method_options.declared()})
    values.update(config.options)
    return values


def test_a_run_folder_of_the_earlier_config_layout_is_complete_or_resumed(tmp_path):
    """The anchor's committed run folder (config.json of the earlier layout) is the same
    run as today's config of it: complete when finished, resumed when not, refused when
    an option differs; the study's own settings check agrees."""
    from keras_sgn.experiments import runs

    path = tmp_path / "seed0"
    shutil.copytree(os.path.join(ROOT, "docs", "reproduce", "fashion_mnist-anchor", "state",
                                 "seed0"), path)
    saved = json.loads((path / "config.json").read_text())
    assert "options" not in saved and saved["adversarial_fraction"] == 0.5  # earlier layout
    today = training.TrainConfig(**{k: v for k, v in saved.items() if k in FIELDS},
                                 adversarial_fraction=0.5).resolved()
    assert today.options == {"adversarial_fraction": 0.5}
    folder = run_folder.RunFolder(str(path))
    assert folder.open(today.to_dict(), resumable_fields()).status == "complete"
    folder.close()
    assert runs.read_run(str(path), today)["method"] == "pgd"
    other = dataclasses.replace(today, adversarial_fraction=1.0)
    with pytest.raises(run_folder.RunFolderError, match=r"\(adversarial_fraction: 0\.5 -> 1\.0\)"):
        run_folder.RunFolder(str(path)).open(other.to_dict(), resumable_fields())
    with pytest.raises(ValueError, match="adversarial_fraction"):
        runs.read_run(str(path), other)
    # Unfinished (a backup, no summary): resumed.
    (path / "summary.json").unlink()
    (path / "backup").mkdir()
    (path / "backup" / "state.json").write_text("{}")
    folder = run_folder.RunFolder(str(path))
    assert folder.open(today.to_dict(), resumable_fields()).status == "resume"
    folder.close()
    training.run.check_resumable(saved, today)
    with pytest.raises(run_folder.RunFolderError, match="adversarial_fraction"):
        training.run.check_resumable(saved, other)


def test_train_on_a_finished_folder_of_the_earlier_config_layout(tmp_path):
    out = tmp_path / "run"
    config = training.TrainConfig(**{**TINY, "method": "sgn"}, clean_weight=0.25,
                                  output_dir=str(out))
    first = training.train(config)
    saved = json.loads((out / "config.json").read_text())
    assert saved["options"] == {"clean_weight": 0.25, "second_order": False}
    (out / "config.json").write_text(json.dumps(_earlier_layout(config.resolved())))
    again = training.train(config)
    assert again["already_complete"] and again["robust_accuracy"] == first["robust_accuracy"]
    with pytest.raises(training.RunFolderError, match=r"\(clean_weight: 0\.25 -> 0\.5\)"):
        training.train(dataclasses.replace(config, clean_weight=0.5))


def test_a_full_disk_is_a_clear_error_and_the_run_resumes_after(tmp_path, monkeypatch):
    out = tmp_path / "run"
    config = training.TrainConfig(**{**TINY, "epochs": 2}, output_dir=str(out))
    real = io_utils.shutil.disk_usage
    saves = []

    def nearly_full(path):  # room for the first epoch's files, then none
        saves.append(path)
        usage = real(path)
        return usage._replace(free=usage.free if len(saves) <= 4 else 1000)

    monkeypatch.setattr(io_utils.shutil, "disk_usage", nearly_full)
    with pytest.raises(io_utils.OutOfSpaceError) as info:
        training.train(config)
    assert str(out) in str(info.value) and "free some space" in str(info.value)
    state = json.loads((out / "backup" / "state.json").read_text())
    assert state["epoch"] == 1  # the first epoch's backup is intact
    monkeypatch.setattr(io_utils.shutil, "disk_usage", real)
    summary = training.train(config)
    assert summary["epochs"] == 2 and summary["resumed_from_epoch"] == 1
    history = json.loads((out / "history.json").read_text())
    assert {len(v) for v in history.values()} == {2}


def test_a_full_disk_is_refused_before_training(tmp_path, monkeypatch):
    real = io_utils.shutil.disk_usage
    monkeypatch.setattr(io_utils.shutil, "disk_usage",
                        lambda path: real(path)._replace(free=10))
    with pytest.raises(io_utils.OutOfSpaceError, match="--output_dir"):
        training.train(training.TrainConfig(**TINY, output_dir=str(tmp_path / "run")))
    assert not (tmp_path / "run" / "backup").exists()
