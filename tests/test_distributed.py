"""MirroredStrategy on 2 logical CPUs gives the same training as 1 replica."""

import json
import os
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("mirrored") / "report.json"
    env = dict(os.environ, PYTHONPATH=os.path.dirname(HERE))
    result = subprocess.run([sys.executable, os.path.join(HERE, "mirrored_check.py"), str(out)],
                            capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(out.read_text())


def test_two_replicas(report):
    assert report["replicas"] == 2


@pytest.mark.parametrize("method", ["standard", "pgd", "sgn"])
def test_mirrored_equals_one_replica(report, method):
    result = report["methods"][method]
    assert result["max_weight_change"] > 0.01  # it did train
    assert result["max_weight_difference"] < 1e-4, result
    # Metrics are not divided by the replica count.
    assert abs(result["loss"][0] - result["loss"][1]) < 1e-3, result
    assert abs(result["eval_loss"][0] - result["eval_loss"][1]) < 1e-3, result
    assert abs(result["accuracy"][0] - result["accuracy"][1]) < 1e-6, result


def test_replicas_draw_different_random_starts(report):
    assert report["random_starts_differ"]


def test_batch_not_divisible_by_replicas_is_refused(report):
    assert "batch_size" in report["batch_error"] and "divisible" in report["batch_error"]
