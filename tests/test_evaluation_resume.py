"""A killed robustness evaluation resumes from its checkpoints (one file per
batch) and reports exactly what an uninterrupted run reports."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_sgn import evaluation, io_utils
from keras_sgn.attacks import parse_attacks
from keras_sgn.evaluation import robustness

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SUITE = "pgd-ce:steps=3;pgd-cw:steps=3"
RUN_ATTACKS = robustness.run_attacks
TIMINGS = ("seconds", "attack_seconds")


class Killed(Exception):
    """Stands for the process being killed in the middle of a batch."""


class AttackCounter:
    """Replaces `run_attacks`: counts the batches attacked, and raises `Killed`
    when asked to attack the `kill_at`-th one."""

    def __init__(self, monkeypatch, kill_at=None):
        self.batches, self.kill_at = 0, kill_at
        monkeypatch.setattr(robustness, "run_attacks", self)

    def __call__(self, *args, **kwargs):
        self.batches += 1
        if self.batches == self.kill_at:
            raise Killed(f"killed while attacking batch {self.batches - 1}")
        return RUN_ATTACKS(*args, **kwargs)


def _dataset(x, y, start=0, n=128):
    return tf.data.Dataset.from_tensor_slices((x[start:start + n], y[start:start + n])).batch(32)


def _evaluate(model, dataset, checkpoint_dir=None, **options):
    options = dict(dict(epsilon=0.1, attacks=SUITE, run_sanity_checks=False, verbose=False),
                   **options)
    return evaluation.evaluate_robustness(model, dataset, checkpoint_dir=checkpoint_dir,
                                          **options)


def _without_timings(report):
    return {key: value for key, value in report.items() if key not in TIMINGS}


def _killed(monkeypatch, batches_stored, evaluate, *args, **kwargs):
    """Run `evaluate(*args, **kwargs)` until it is killed attacking the batch
    after the first `batches_stored`."""
    AttackCounter(monkeypatch, kill_at=batches_stored + 1)
    with pytest.raises(Killed):
        evaluate(*args, **kwargs)


def test_a_killed_evaluation_resumes_and_reports_as_if_never_killed(
        digits_mlp, tmp_path, monkeypatch, capsys):
    model, x, y = digits_mlp
    sanity = dict(run_sanity_checks=True, n_sanity_examples=48, sanity_steps=3,
                  square_queries=20)
    shown = evaluation.AdversarialExamples(8)
    reference = _evaluate(model, _dataset(x, y), examples=shown, **sanity)
    assert reference["n_examples"] == 128
    assert 0.0 < reference["robust_accuracy"] < reference["clean_accuracy"]

    folder = tmp_path / "checkpoints"
    _killed(monkeypatch, 2, _evaluate, model, _dataset(x, y), folder,
            examples=evaluation.AdversarialExamples(8), **sanity)
    assert sorted(os.listdir(folder)) == ["batch-00000.npz", "batch-00001.npz",
                                          "settings.json"]

    counter = AttackCounter(monkeypatch)
    resumed_shown = evaluation.AdversarialExamples(8)
    resumed = _evaluate(model, _dataset(x, y), folder, examples=resumed_shown,
                        **dict(sanity, verbose=True))
    assert counter.batches == 2  # only batches 2 and 3 were attacked
    assert f"Resuming: 64 of 128 examples already attacked ({folder})" in capsys.readouterr().out
    assert _without_timings(resumed) == _without_timings(reference)
    assert set(resumed["attack_seconds"]) == set(reference["attack_seconds"])
    for key, value in shown.arrays().items():
        np.testing.assert_array_equal(resumed_shown.arrays()[key], value, err_msg=key)

    # Every batch stored: nothing is attacked, the report is the same again.
    again = _evaluate(model, _dataset(x, y), folder, examples=evaluation.AdversarialExamples(8),
                      **sanity)
    assert counter.batches == 2
    assert _without_timings(again) == _without_timings(reference)


def _perturbed_copy(model):
    other = keras.models.clone_model(model)
    other.set_weights([w + 1e-3 for w in model.get_weights()])
    return other


@pytest.mark.parametrize("change,message", [
    (dict(epsilon=0.2), "protocol.epsilon: stored 0.1, now 0.2"),
    (dict(attacks="pgd-ce:steps=3"), "protocol.attacks: stored"),
    (dict(seed=1), "protocol.seed: stored 0, now 1"),
    (dict(n_examples=96), "n_examples: stored None, now 96"),
    (dict(model=_perturbed_copy), "model.weights_sha256: stored"),
])
def test_other_settings_with_the_same_folder_are_refused_before_attacking(
        digits_mlp, tmp_path, monkeypatch, change, message):
    model, x, y = digits_mlp
    folder = tmp_path / "checkpoints"
    _killed(monkeypatch, 1, _evaluate, model, _dataset(x, y), folder)
    counter = AttackCounter(monkeypatch)
    change = dict(change)
    other = change.pop("model", lambda m: m)(model)
    with pytest.raises(ValueError, match="holds the checkpoints of another evaluation") as error:
        _evaluate(other, _dataset(x, y), folder, **change)
    assert message in str(error.value) and str(folder) in str(error.value)
    assert "--noresume" in str(error.value) and "--output_dir" in str(error.value)
    assert counter.batches == 0
    assert os.path.exists(folder / "batch-00000.npz")  # left as it was


def test_other_data_with_the_same_folder_is_refused_before_attacking(
        digits_mlp, tmp_path, monkeypatch):
    model, x, y = digits_mlp
    folder = tmp_path / "checkpoints"
    _killed(monkeypatch, 1, _evaluate, model, _dataset(x, y), folder)
    counter = AttackCounter(monkeypatch)
    with pytest.raises(ValueError, match="batch-00000.npz was written for other images"):
        _evaluate(model, _dataset(x, y, start=128), folder)  # same settings, other images
    assert counter.batches == 0


def test_a_corrupt_batch_file_is_refused_and_deleting_it_attacks_that_batch_again(
        digits_mlp, tmp_path, monkeypatch):
    model, x, y = digits_mlp
    folder = tmp_path / "checkpoints"
    reference = _evaluate(model, _dataset(x, y))
    _killed(monkeypatch, 2, _evaluate, model, _dataset(x, y), folder)
    broken = folder / "batch-00001.npz"
    broken.write_bytes(broken.read_bytes()[:200])  # truncated
    counter = AttackCounter(monkeypatch)
    with pytest.raises(io_utils.CorruptFileError, match="batch-00001.npz is corrupt"):
        _evaluate(model, _dataset(x, y), folder)
    assert counter.batches == 0
    broken.unlink()
    report = _evaluate(model, _dataset(x, y), folder)
    assert counter.batches == 3  # batches 1, 2 and 3
    assert _without_timings(report) == _without_timings(reference)


def test_batch_files_without_settings_are_refused(digits_mlp, tmp_path, monkeypatch):
    model, x, y = digits_mlp
    folder = tmp_path / "checkpoints"
    _killed(monkeypatch, 1, _evaluate, model, _dataset(x, y), folder)
    (folder / "settings.json").unlink()
    with pytest.raises(ValueError, match="holds batch files but no settings.json"):
        _evaluate(model, _dataset(x, y), folder)


def _tool(*args):
    result = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "evaluate.py"), *args],
                            capture_output=True, text=True, timeout=300, cwd=ROOT,
                            env=dict(os.environ, PYTHONPATH=ROOT))
    assert result.returncode == 0, result.stderr[-3000:]
    return result


@pytest.mark.slow  # end to end: a run of 20-60 s (make test-slow, which CI runs)
def test_the_tool_resumes_and_deletes_the_checkpoints_once_the_report_is_written(
        digits_mlp, tmp_path, monkeypatch):
    model, _, _ = digits_mlp
    model_path = str(tmp_path / "model.keras")
    model.save(model_path)
    out = tmp_path / "eval"
    options = dict(split="test", attacks=parse_attacks(SUITE), n_examples=64,
                   batch_size=32, run_sanity_checks=False, verbose=False)
    reference = evaluation.evaluate_robustness(model, "digits", 0.1, "linf", **options)
    # What the tool would have stored before being killed in its second batch.
    _killed(monkeypatch, 1, evaluation.evaluate_robustness, model, "digits", 0.1, "linf",
            examples=evaluation.AdversarialExamples(evaluation.runs.GRID_EXAMPLES),
            checkpoint_dir=str(out / "checkpoints"), **options)

    command = [f"--model={model_path}", "--dataset=digits", "--epsilon=0.1", "--n_examples=64",
               "--batch_size=32", f"--attacks={SUITE}", "--nosanity_checks",
               f"--output_dir={out}"]
    result = _tool(*command)
    assert "Resuming: 32 of 64 examples already attacked" in result.stdout
    report = json.loads((out / "report.json").read_text())
    for key in ("clean_accuracy", "robust_accuracy", "per_attack", "n_examples"):
        assert report[key] == reference[key], key
    assert not (out / "checkpoints").exists()
