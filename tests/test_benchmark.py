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

from keras_sgn import methods
from keras_sgn.experiments import benchmark

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SUITE_IMAGES = benchmark.SUITE_TARGET["n_examples"]


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
    assert methods.registry.expected_cost(name, epsilon=0.1, **options) == passes


def test_only_multi_step_methods_get_attack_steps():
    assert benchmark.method_options("pgd", 0.1, 3) == {"epsilon": 0.1, "attack_steps": 3}
    assert benchmark.method_options("sgn-pgd", 0.1, 3)["attack_steps"] == 3
    for name in ("standard", "fast", "sgn", "free"):
        assert benchmark.method_options(name, 0.1, 3) == {"epsilon": 0.1}
    # Every registered method is benchmarked by default, the cost unit first.
    assert benchmark.DEFAULT_METHODS[0] == "standard"
    assert sorted(benchmark.DEFAULT_METHODS) == sorted(methods.list_methods(variants=False))


@pytest.mark.slow
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


@pytest.mark.slow
def test_benchmark_tool_takes_a_dataset(tmp_path):
    """`--dataset=fashion_mnist` benchmarks its recipe's model on batches shaped like its
    images (synthetic: no data is read)."""
    out = tmp_path / "bench.json"
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, "tools", "benchmark.py"), "--dataset=fashion_mnist",
         "--methods=sgn", "--batch_size=4", "--warmup=0", "--repeats=1", "--noxla",
         f"--output={out}"],
        capture_output=True, text=True, timeout=300, env=dict(os.environ, PYTHONPATH=ROOT))
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(out.read_text())
    settings = report["settings"]
    assert settings["model"] == "sgn_mnist_cnn" == benchmark.default_model("fashion_mnist")
    assert settings["dataset"] == "fashion_mnist" and settings["num_classes"] == 10
    assert list(settings["input_shape"]) == [28, 28, 1]
    assert settings["epsilon"] == pytest.approx(0.1)  # the dataset's recipe
    assert set(report["methods"]) == {"standard", "sgn"} and not report["methods_xla"]
    assert "attack_suite" not in report


def test_default_model_follows_the_dataset_recipe():
    assert benchmark.default_model() == benchmark.DEFAULT_MODEL == "sgn_resnet18"
    assert benchmark.default_model("digits") == "sgn_small_cnn"
    with pytest.raises(ValueError, match="fashion_mnist"):
        benchmark.default_model("fashion-mnist")


def test_projection_to_the_suite_target():
    # 500 images in 60 s, 5 s of warm-up: 60 x 20 + 5 = 1205 s for 10,000 > 20 min.
    projection = benchmark.project_to_target(60.0, 5.0, 500, "fashion_mnist", "standard")
    assert projection["projected_seconds"] == pytest.approx(1205.0)
    assert projection["extrapolated"] and projection["comparable"]
    assert not projection["within_target"] and "extrapolated" in projection["basis"]
    assert projection["target"] == benchmark.SUITE_TARGET
    assert benchmark.SUITE_TARGET["seconds"] == 1200 and SUITE_IMAGES == 10_000
    measured = benchmark.project_to_target(1100.0, 50.0, 10_000, "fashion_mnist", "standard")
    assert measured["projected_seconds"] == pytest.approx(1150.0)
    assert measured["within_target"] and not measured["extrapolated"]
    assert not benchmark.project_to_target(1.0, 0.0, 10, "digits", "standard")["comparable"]
    assert not benchmark.project_to_target(1.0, 0.0, 10, "fashion_mnist", "quick")["comparable"]


def test_attack_costs_of_an_untrained_model():
    section = benchmark.benchmark_attack_suite("sgn_small_cnn", "digits", "apgd-ce;fgsm",
                                               batch_size=8, repeats=1, time_whole_suite=False)
    assert section["model"] == "sgn_small_cnn (untrained)" and section["suite"] is None
    assert section["epsilon"] == pytest.approx(0.1)  # the digits recipe
    costs = section["iteration_costs"]
    assert [costs[k]["iteration_option"] for k in ("apgd-ce", "fgsm")] == ["steps", None]
    for cost in costs.values():
        assert cost["batch_size"] == 8 and cost["seconds_forward_backward"] > 0
        assert cost["forward_backward_per_iteration"] == pytest.approx(
            cost["seconds_per_iteration"] / cost["seconds_forward_backward"])
    assert "not measured" in benchmark.attack_suite_markdown(section)


@pytest.mark.slow
def test_benchmark_tool_times_an_attack_suite(tmp_path):
    """`--attacks` on a zoo model: each attack's iteration cost, and the suite's time on the
    first images, extrapolated to the target's 10,000 and labelled so."""
    out = tmp_path / "suite.json"
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, "tools", "benchmark.py"), "--methods=",
         "--attacks=apgd-ce;square:n_queries=100", "--zoo=sgn-cnn-digits", "--n_examples=8",
         "--eval_batch_size=8", "--repeats=1", f"--output={out}"],
        capture_output=True, text=True, timeout=300, env=dict(os.environ, PYTHONPATH=ROOT))
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(out.read_text())
    assert "methods" not in report and report["machine"]["cpu_count"] >= 1
    section = report["attack_suite"]
    assert (section["model"], section["dataset"]) == ("sgn-cnn-digits", "digits")
    assert section["epsilon"] == pytest.approx(0.1)  # the zoo entry's threat model
    labels = ["apgd-ce", "square:n_queries=100"]
    assert list(section["iteration_costs"]) == labels
    assert [section["iteration_costs"][k]["iteration_option"] for k in labels] == [
        "steps", "n_queries"]
    suite = section["suite"]
    assert suite["n_examples"] == 8 and list(suite["per_attack"]) == labels
    # The cascade: each attack attacks the images still robust when its turn comes.
    assert suite["per_attack"]["apgd-ce"]["images_attacked"] == round(
        suite["clean_accuracy"] * 8)
    assert suite["per_attack"]["square:n_queries=100"]["images_attacked"] == round(
        suite["per_attack"]["apgd-ce"]["accuracy_after"] * 8)
    assert suite["robust_accuracy"] == suite["per_attack"][labels[-1]]["accuracy_after"]
    assert suite["seconds"] > 0 and suite["process_cpu_seconds"] > 0
    projection = suite["projection"]
    assert projection["extrapolated"] and not projection["comparable"]
    assert projection["projected_seconds"] == pytest.approx(
        suite["seconds"] * SUITE_IMAGES / 8 + suite["warmup_seconds"], abs=0.01)
    assert "extrapolated linearly from 8 images" in result.stdout
    row = next(line for line in result.stdout.splitlines() if line.startswith("| `apgd-ce` |"))
    assert float(row.split("|")[3]) > 0  # forward+backward passes per iteration
