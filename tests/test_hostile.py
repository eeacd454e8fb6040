"""The hostile suite: a user who misuses the tools gets a clear refusal, never a
wrong answer (issue 23, point 4). One test per misuse the probe found; each
failed before its fix."""

import dataclasses
import json
import os
import shutil
import subprocess
import sys

import keras
import numpy as np
import pytest

from keras_sgn import attacks, evaluation, hub, models, training, zoo

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _tool(tool, *args, timeout=300):
    """Run `tools/<tool>` as a user does (no traceback switch)."""
    env = dict(os.environ, PYTHONPATH=ROOT)
    env.pop("KERAS_SGN_TRACEBACK", None)
    return subprocess.run([sys.executable, os.path.join(ROOT, "tools", tool), *args],
                          capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT)


def _error_line(result):
    """The tool's one `error:` line (exit code 2, no traceback)."""
    assert result.returncode == 2, result.stdout[-2000:] + result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    return line


def _linear_digits_model():
    return keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(),
                             keras.layers.Dense(10)])


def _write_run(run_dir, width=4, seed=0):
    """A finished tools/train.py-like run folder of a tiny SGN (model.keras,
    config.json, summary.json); returns the model."""
    keras.utils.set_random_seed(seed)
    run_dir.mkdir(parents=True, exist_ok=True)
    model = models.get("sgn_small_cnn", width=width)
    model.compile(optimizer="adam", method="sgn", epsilon=0.1)
    model.save(run_dir / "model.keras")
    config = training.TrainConfig(dataset="digits", method="sgn", epochs=1, seed=seed,
                                  output_dir=str(run_dir)).resolved()
    (run_dir / "config.json").write_text(json.dumps(dataclasses.asdict(config)))
    (run_dir / "summary.json").write_text(json.dumps({"epochs": 1, "best_epoch": 1,
                                                      "best_val_robust_accuracy": 0.1}))
    return model


def _write_report(model, model_path, eval_dir, digits_arrays):
    """A tools/evaluate.py-like report of `model` (2-step PGD on 16 images)."""
    x, y = digits_arrays("test", 16)
    report = evaluation.evaluate_robustness(model, [(x, y)], epsilon=0.1,
                                            attacks="pgd-ce:steps=2", run_sanity_checks=False,
                                            verbose=False)
    report.update(model=str(model_path), dataset="digits", split="test")
    evaluation.write_report(report, str(eval_dir))
    return report


@pytest.fixture(scope="module")
def evaluated_run(tmp_path_factory, digits_arrays):
    """A finished run folder with its evaluation report in eval/."""
    run_dir = tmp_path_factory.mktemp("hostile") / "run"
    model = _write_run(run_dir)
    _write_report(model, run_dir / "model.keras", run_dir / "eval", digits_arrays)
    return run_dir


# -- 6. publish --ship --name=../../escaped ----------------------------------------------

def test_publish_refuses_a_name_that_escapes_before_writing(evaluated_run, tmp_path):
    escaped = os.path.join(zoo.PRETRAINED_DIR, "..", "..", f"hostile-escaped-{os.getpid()}")
    name = os.path.relpath(escaped, zoo.PRETRAINED_DIR)
    assert name.startswith("../../")
    try:
        result = _tool("publish.py", f"--run_dir={evaluated_run}", "--ship", f"--name={name}",
                       f"--entry={tmp_path / 'entry.json'}")
        line = _error_line(result)
        assert line.startswith("error: --name must be a plain model name") and (
            f"Received: --name='{name}'" in line)
        assert not os.path.exists(escaped) and not (tmp_path / "entry.json").exists()
        assert not [n for n in os.listdir(os.path.dirname(os.path.abspath(escaped)))
                    if n.startswith(".tmp-export-")]
    finally:
        shutil.rmtree(escaped, ignore_errors=True)
    with pytest.raises(hub.PublishError, match="Received: name='a/b'"):
        hub.export_folder(str(evaluated_run), str(tmp_path / "out"), "a/b",
                          str(evaluated_run / "eval"))
    assert not (tmp_path / "out").exists()


# -- 8. a NaN pixel given to an attack ---------------------------------------------------

def test_an_attack_refuses_a_nan_pixel():
    model = _linear_digits_model()
    x = np.random.default_rng(0).random((4, 8, 8, 1), dtype=np.float32)
    y = np.arange(4, dtype=np.int32)
    x[1, 3, 3, 0] = np.nan
    with pytest.raises(ValueError, match=r"x must be finite.*Received: 1 NaN or infinite"):
        attacks.pgd(model, x, y, epsilon=0.1, steps=2)
    x[1, 3, 3, 0] = np.inf
    with pytest.raises(ValueError, match="must be finite"):
        attacks.fgsm(model, x, y, epsilon=0.1)
    x[1, 3, 3, 0] = 0.5
    assert np.isfinite(np.asarray(attacks.pgd(model, x, y, epsilon=0.1, steps=2))).all()
