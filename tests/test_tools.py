"""tools/train.py and tools/evaluate.py end to end on a digits subset, as a user runs them."""

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QUICK = ["--dataset=digits", "--epochs=2", "--n_train=128", "--n_eval=64", "--eval_steps=2",
         "--test_steps=3", "--verbose=0"]


def _run(tool, *args, timeout=300):
    env = dict(os.environ, PYTHONPATH=ROOT)
    return subprocess.run([sys.executable, os.path.join(ROOT, "tools", tool), *args],
                          capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT)


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("train") / "run"
    result = _run("train.py", "--method=sgn", f"--output_dir={out}", *QUICK)
    assert result.returncode == 0, result.stderr[-3000:]
    return out, result


def test_train_writes_the_promised_files(trained_run):
    out, result = trained_run
    summary = json.loads((out / "summary.json").read_text())
    for key in ("clean_accuracy", "robust_accuracy", "epochs", "method", "train_seconds"):
        assert key in summary
    assert summary["method"] == "sgn" and summary["epochs"] == 2
    assert 0.0 <= summary["robust_accuracy"] <= summary["clean_accuracy"] <= 1.0
    assert summary["clean_accuracy"] > 0.15  # better than chance after 2 tiny epochs
    assert (out / "checkpoints" / "last.weights.h5").exists()
    assert (out / "training_curves.png").stat().st_size > 1000
    assert any((out / "logs").rglob("*tfevents*"))
    assert "robust accuracy" in result.stdout
    # No temporary files left behind by the atomic writes.
    assert not [p for p in out.rglob(".tmp-*")]


def test_saved_model_loads_in_a_fresh_process(trained_run):
    out, _ = trained_run
    code = ("import keras, keras_sgn, numpy as np;"
            f"m = keras.saving.load_model({str(out / 'model.keras')!r});"
            "print(type(m).__name__, m.predict(np.zeros((2, 8, 8, 1), 'float32'), verbose=0).shape)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env=dict(os.environ, PYTHONPATH=ROOT), timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "SGNModel (2, 10)" in result.stdout


def test_evaluate_writes_the_three_reports(trained_run, tmp_path):
    out, _ = trained_run
    result = _run("evaluate.py", f"--model={out / 'model.keras'}", "--dataset=digits",
                  "--epsilon=0.1", "--n_examples=64", "--attacks=pgd-ce:steps=3;apgd-dlr:steps=5",
                  "--sanity_examples=32", "--square_queries=50", f"--output_dir={tmp_path}")
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((tmp_path / "report.json").read_text())
    summary = json.loads((out / "summary.json").read_text())
    assert report["n_examples"] == 64
    # Same model, same 64 test images: the clean accuracy must agree exactly.
    assert report["clean_accuracy"] == pytest.approx(summary["clean_accuracy"])
    assert 0.0 <= report["robust_accuracy"] <= report["clean_accuracy"]
    assert set(report["per_attack"]) == {"pgd-ce:steps=3", "apgd-dlr:steps=5"}
    assert len(report["sanity_checks"]) == 6 and "protocol" in report
    assert "worst case over all attacks" in (tmp_path / "report.md").read_text()
    assert (tmp_path / "accuracy_vs_epsilon.png").exists()


def test_evaluate_refuses_bad_arguments_before_loading(tmp_path):
    result = _run("evaluate.py", f"--model={tmp_path / 'missing.keras'}", "--dataset=digits",
                  "--attacks=pgd-zz")
    assert result.returncode != 0 and "pgd-zz" in result.stderr
    result = _run("evaluate.py", f"--model={tmp_path / 'missing.keras'}", "--dataset=digits")
    assert result.returncode != 0 and "--model" in result.stderr
    result = _run("evaluate.py", "--model=sgn-cnn-digitz", "--dataset=digits")
    assert result.returncode != 0 and "sgn-cnn-digits" in result.stderr  # the close match


def test_evaluate_takes_a_zoo_name(tmp_path):
    result = _run("evaluate.py", "--model=sgn-cnn-digits", "--dataset=digits", "--n_examples=32",
                  "--attacks=pgd-ce:steps=2", "--nosanity_checks", f"--output_dir={tmp_path}")
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["model"] == "sgn-cnn-digits" and report["clean_accuracy"] > 0.9


@pytest.mark.parametrize("flag,parameter", [
    ("--epsilon=-0.1", "epsilon"),
    ("--dataset=cifar11", "cifar10"),
    ("--model=resnet19", "model"),
    ("--attack_steps=0", "attack_steps"),
    ("--beta=strong", "beta"),
])
def test_bad_flags_fail_fast_with_a_clear_message(flag, parameter, tmp_path):
    result = _run("train.py", f"--output_dir={tmp_path / 'x'}", *QUICK, flag, timeout=120)
    assert result.returncode != 0
    assert parameter in result.stderr
    assert not (tmp_path / "x" / "summary.json").exists()


def test_batch_not_divisible_by_replicas(tmp_path):
    result = _run("train.py", "--strategy=mirrored", "--logical_cpus=2", "--batch_size=33",
                  f"--output_dir={tmp_path}", *QUICK, timeout=120)
    assert result.returncode != 0
    assert "divisible" in result.stderr and "batch_size" in result.stderr


def test_summarize_runs_tabulates_a_run(trained_run):
    out, _ = trained_run
    result = _run("summarize_runs.py", f"--runs={out}")
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    row = [line for line in result.stdout.splitlines() if line.startswith("| `sgn`")][0]
    assert f"{summary['robust_accuracy']:.3f}" in row and "digits" in row
