"""tools/benchmark.py on a tiny budget: the report has the promised shape and honest fields."""

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


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
    methods = report["methods"]
    assert set(methods) == {"standard", "sgn", "pgd", "free"}  # standard is always the unit
    assert methods["standard"]["ratio_to_standard"] == 1.0
    assert (methods["sgn"]["expected_ratio"], methods["pgd"]["expected_ratio"],
            methods["free"]["expected_ratio"]) == (2.0, 3.0, 8.0)
    for entry in list(methods.values()) + list(report["methods_xla"].values()):
        assert entry["images_per_second"] > 0 and len(entry["samples"]) == 2
        assert abs(entry["ratio_over_expected"] * entry["expected_ratio"]
                   - entry["ratio_to_standard"]) < 1e-9
    assert set(report["methods_xla"]) == {"sgn", "pgd", "free"}
    assert report["attack"]["pgd20_images_per_second"] > 0
    assert report["peak_memory_mb"] > 0
    assert "| `sgn` |" in result.stdout
