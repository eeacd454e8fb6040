"""keras_sgn.experiments.benchmark and tools/benchmark.py on a tiny budget: the
report has the promised shape, and the expected costs are the pass-count
arithmetic of each method, written out here independently of the registry."""

import json
import math
import os
import statistics
import subprocess
import sys

import pytest

from keras_sgn import benchmark as benchmark_shim
from keras_sgn import methods
from keras_sgn.experiments import benchmark

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize("name,options,passes", [
    ("standard", {}, 1),                    # one forward + backward
    ("fast", {}, 2),                        # FGSM step + update
    ("sgn", {}, 2),                         # self-gradient pass + feedback pass
    ("pgd", {"attack_steps": 5}, 6),        # k attack steps + update
    ("trades", {"attack_steps": 3}, 4),     # k KL steps + update
    ("sgn-pgd", {"attack_steps": 7}, 8),    # k-1 PGD steps + self-gradient + feedback
    ("free", {"replays": 4}, 4),            # m replays, each one pass
])
def test_expected_cost_is_the_pass_count(name, options, passes):
    assert methods.expected_cost(name, epsilon=0.1, **options) == passes


def test_only_multi_step_methods_get_attack_steps():
    assert benchmark.method_options("pgd", 0.1, 3) == {"epsilon": 0.1, "attack_steps": 3}
    assert benchmark.method_options("sgn-pgd", 0.1, 3)["attack_steps"] == 3
    for name in ("standard", "fast", "sgn", "free"):
        assert benchmark.method_options(name, 0.1, 3) == {"epsilon": 0.1}
    # Every registered method is benchmarked by default, the cost unit first.
    assert benchmark.DEFAULT_METHODS[0] == "standard"
    assert sorted(benchmark.DEFAULT_METHODS) == sorted(methods.list_methods(variants=False))


def test_the_old_module_path_is_the_same_benchmark():
    assert benchmark_shim.benchmark_methods is benchmark.benchmark_methods
    assert benchmark_shim.markdown_table is benchmark.markdown_table
    assert benchmark_shim.DEFAULT_METHODS == benchmark.DEFAULT_METHODS


def test_benchmark_tool_writes_the_report(tmp_path):
    out = tmp_path / "bench.json"
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, "tools", "benchmark.py"), "--model=sgn_small_cnn",
         "--batch_size=16", "--methods=sgn,pgd,free", "--attack_steps=2", "--warmup=1",
         "--repeats=2", "--xla", f"--output={out}"],
        capture_output=True, text=True, timeout=300, env=dict(os.environ, PYTHONPATH=ROOT))
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["machine"]["tensorflow"] and report["machine"]["cpu_count"] >= 1
    methods_report = report["methods"]
    assert set(methods_report) == {"standard", "sgn", "pgd", "free"}  # standard: the unit
    # Passes per step: standard 1, sgn 2, pgd-k k + 1 (k = 2), free m (8 replays).
    assert {name: entry["expected_ratio"] for name, entry in methods_report.items()} == {
        "standard": 1.0, "sgn": 2.0, "pgd": 3.0, "free": 8.0}
    assert set(report["methods_xla"]) == {"sgn", "pgd", "free"}
    for name, entry in list(methods_report.items()) + list(report["methods_xla"].items()):
        assert len(entry["samples"]) == 2 and all(s > 0 for s in entry["samples"])
        assert entry["seconds_per_step"] == pytest.approx(statistics.median(entry["samples"]))
        assert entry["images_per_second"] == pytest.approx(16 / entry["seconds_per_step"])
        for key in ("ratio_to_standard", "ratio_over_expected"):
            assert math.isfinite(entry[key]) and entry[key] > 0, (name, key)
        assert entry["expected_ratio"] == methods_report[name]["expected_ratio"]
    assert report["attack"]["pgd20_images_per_second"] > 0
    assert report["attack"]["pgd20_xla_images_per_second"] > 0
    assert report["peak_memory_mb"] > 0
    # The table lists every method with its expected pass count.
    for name, passes in (("standard", 1), ("sgn", 2), ("pgd", 3), ("free", 8)):
        row = next(line for line in result.stdout.splitlines()
                   if line.startswith(f"| `{name}` |"))
        assert row.split("|")[4].strip() == str(passes), row
