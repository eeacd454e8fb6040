"""The reproduction runner on a tiny budget, and its analysis on handmade curves."""

import json
import os
import subprocess
import sys

import pytest

from keras_sgn import reproduce

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _curve(robust, clean=0.9, seconds=1.0):
    return [{"epoch": i + 1, "train_seconds": seconds * (i + 1), "clean_accuracy": clean,
             "robust_accuracy": r, "pgd_accuracy": r, "cw_accuracy": r}
            for i, r in enumerate(robust)]


def test_catastrophic_overfitting_is_detected():
    assert reproduce.catastrophic_overfitting(_curve([0.3, 0.45, 0.5, 0.05, 0.02])) == 4
    assert reproduce.catastrophic_overfitting(_curve([0.3, 0.45, 0.5, 0.47, 0.5])) is None


def test_analysis_times_to_target_and_differences():
    runs = [
        {"method": "pgd", "seed": 0, "epochs": 3, "curve": _curve([0.2, 0.4, 0.6], seconds=10)},
        {"method": "pgd", "seed": 1, "epochs": 3, "curve": _curve([0.2, 0.5, 0.6], seconds=10)},
        {"method": "sgn", "seed": 0, "epochs": 3, "curve": _curve([0.6, 0.7, 0.7], seconds=2)},
        {"method": "sgn", "seed": 1, "epochs": 3, "curve": _curve([0.5, 0.6, 0.65], seconds=2)},
        {"method": "fast", "seed": 0, "epochs": 3, "curve": _curve([0.5, 0.55, 0.1], seconds=2)},
    ]
    analysis = reproduce.analyse(runs)
    assert analysis["target_robust_accuracy"] == pytest.approx(0.6)
    pgd, sgn, fast = (analysis["methods"][m] for m in ("pgd", "sgn", "fast"))
    assert pgd["time_to_target"] == pytest.approx(30.0) and pgd["speedup_to_target_vs_pgd"] == 1
    assert sgn["time_to_target"] == pytest.approx(3.0)  # epoch 1 (2 s) and epoch 2 (4 s)
    assert sgn["epochs_to_target"] == pytest.approx(1.5) and pgd["epochs_to_target"] == 3
    assert sgn["speedup_to_target_vs_pgd"] == pytest.approx(10.0)
    assert sgn["robust_minus_pgd"] == pytest.approx(0.675 - 0.6)
    assert fast["reached_target"] == 0 and fast["time_to_target"] is None
    assert fast["collapsed_at_epoch"] == [3]
    assert "| `sgn` |" in reproduce.markdown(analysis)


def test_reproduce_tool_on_a_tiny_budget(tmp_path):
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, "tools", "reproduce.py"), "--dataset=digits",
         "--methods=standard,pgd,sgn", "--seeds=0,1", "--epochs=2", "--n_train=128",
         "--n_eval=64", "--test_steps=2", "--attack_steps=2", f"--output_dir={tmp_path}"],
        capture_output=True, text=True, timeout=400, env=dict(os.environ, PYTHONPATH=ROOT))
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads((tmp_path / "results.json").read_text())
    assert len(results["runs"]) == 6
    for run in results["runs"]:
        assert [p["epoch"] for p in run["curve"]] == [1, 2]
        assert all(0 <= p["robust_accuracy"] <= p["clean_accuracy"] <= 1 for p in run["curve"])
        assert run["curve"][1]["train_seconds"] > run["curve"][0]["train_seconds"] > 0
    pgd_finals = [r["curve"][-1]["robust_accuracy"] for r in results["runs"]
                  if r["method"] == "pgd"]
    assert results["analysis"]["target_robust_accuracy"] == pytest.approx(
        sum(pgd_finals) / len(pgd_finals))
    for name in ("results.md", "robust_vs_epochs.png", "robust_vs_time.png"):
        assert (tmp_path / name).stat().st_size > 100
