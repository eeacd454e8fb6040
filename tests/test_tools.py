"""tools/train.py and tools/evaluate.py end to end on a digits subset, as a user runs them."""

import json
import os
import subprocess
import sys
import time

import pytest

from keras_sgn import cli
from keras_sgn.attacks import parse_attacks

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QUICK = ["--dataset=digits", "--epochs=2", "--n_train=128", "--n_eval=64", "--eval_steps=2",
         "--test_steps=3", "--verbose=0"]


def _run(tool, *args, timeout=300):
    env = dict(os.environ, PYTHONPATH=ROOT)
    tool = tool if os.path.isabs(tool) else os.path.join(ROOT, "tools", tool)
    return subprocess.run([sys.executable, tool, *args],
                          capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT)


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """One `tools/train.py` run, and the same command started again while it runs."""
    out = tmp_path_factory.mktemp("train") / "run"
    command = [sys.executable, os.path.join(ROOT, "tools", "train.py"), "--method=sgn",
               f"--output_dir={out}", *QUICK]
    first = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, cwd=ROOT, env=dict(os.environ, PYTHONPATH=ROOT))
    try:
        deadline = time.time() + 300
        while not (out / ".lock").exists() and first.poll() is None and time.time() < deadline:
            time.sleep(0.1)
        second = _run(*command[1:])
        stdout, stderr = first.communicate(timeout=300)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    assert first.returncode == 0, stderr[-3000:]
    return out, subprocess.CompletedProcess(command, 0, stdout, stderr), second, first.pid


def test_train_writes_the_promised_files(trained_run):
    out, result, _, _ = trained_run
    summary = json.loads((out / "summary.json").read_text())
    for key in ("clean_accuracy", "robust_accuracy", "epochs", "method", "train_seconds"):
        assert key in summary
    assert summary["method"] == "sgn" and summary["epochs"] == 2
    assert 0.0 <= summary["robust_accuracy"] <= summary["clean_accuracy"] <= 1.0
    assert summary["clean_accuracy"] > 0.15  # better than chance after 2 tiny epochs
    assert (out / "checkpoints" / "last.weights.h5").exists()
    assert (out / "training_curves.png").stat().st_size > 1000
    assert any((out / "logs").rglob("*tfevents*"))
    # No temporary files left behind by the atomic writes, no lock.
    assert not [p for p in out.rglob(".tmp-*")] and not (out / ".lock").exists()


def test_train_ends_with_where_it_wrote_and_the_result(trained_run):
    """--verbose=0: no JSON dump; one line of files, one of numbers and protocol."""
    out, result, _, _ = trained_run
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 2 and "{" not in result.stdout, result.stdout[-3000:]
    assert lines[0].startswith(f"wrote {out / 'model.keras'}, {out / 'summary.json'}")
    summary = json.loads((out / "summary.json").read_text())
    assert lines[1].startswith(f"clean accuracy {summary['clean_accuracy']:.4f}, robust "
                               f"accuracy {summary['robust_accuracy']:.4f} (linf eps=0.1, quick")
    assert "cascade, worst case per example" in lines[1]


def test_the_final_test_is_the_quick_suite_as_a_cascade(trained_run):
    out = trained_run[0]
    summary = json.loads((out / "summary.json").read_text())
    protocol = summary["protocol"]
    quick = [spec.name for spec in parse_attacks("quick")]
    assert [a["name"] for a in protocol["attacks"]] == quick
    assert all(a["steps"] == 3 for a in protocol["attacks"])  # --test_steps=3
    assert protocol["cascade"] and protocol["split"] == "test"
    assert "after the cascade" in protocol["per_attack"]
    # per_attack is the accuracy after the cascade: non-increasing, ending at the worst case.
    after = list(summary["per_attack"].values())
    assert after == sorted(after, reverse=True) and after[-1] == summary["robust_accuracy"]
    assert "cheap" in summary["validation_protocol"]


def test_a_second_command_on_a_running_folder_leaves_the_first_alone(trained_run):
    """Two identical commands a few seconds apart: the second is refused while
    the first runs (or, if the first has finished, finds it complete); the
    first finishes either way."""
    out, _, second, first_pid = trained_run
    if second.returncode:
        assert f"in use by the run with pid {first_pid}" in second.stderr
        assert "Traceback" not in second.stderr
    else:
        assert "already holds this run" in second.stdout
    assert json.loads((out / "summary.json").read_text())["epochs"] == 2


def test_saved_model_loads_in_a_fresh_process(trained_run):
    out = trained_run[0]
    code = ("import keras, keras_sgn, numpy as np;"
            f"m = keras.saving.load_model({str(out / 'model.keras')!r});"
            "print(type(m).__name__,"
            " m.predict(np.zeros((2, 8, 8, 1), 'float32'), verbose=0).shape)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env=dict(os.environ, PYTHONPATH=ROOT), timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "SGNModel (2, 10)" in result.stdout


@pytest.mark.slow  # end to end: a run of 20-60 s (make test-slow, which CI runs)
def test_evaluate_writes_the_three_reports(trained_run, tmp_path):
    out = trained_run[0]
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


def _error_lines(result):
    return [line for line in result.stderr.splitlines() if line.startswith("error: ")]


@pytest.mark.parametrize("flag,parameter", [
    ("--epsilon=-0.1", "epsilon"),
    ("--dataset=cifar11", "cifar10"),
    ("--model=resnet19", "model"),
    ("--attack_steps=0", "attack_steps"),
    ("--beta=strong", "beta"),
    ("--epsilon=5", "--allow_large_epsilon"),
    ("--sites=none", "--sites=default"),
    ("--method=sgm", "--method=sgm"),
])
def test_bad_flags_fail_fast_with_a_clear_message(flag, parameter, tmp_path):
    result = _run("train.py", f"--output_dir={tmp_path / 'x'}", *QUICK, flag, timeout=120)
    assert result.returncode == cli.USAGE_EXIT_CODE
    assert parameter in result.stderr
    # One line naming the flag, no traceback.
    assert len(_error_lines(result)) == 1 and "Traceback" not in result.stderr, result.stderr
    assert not (tmp_path / "x" / "summary.json").exists()


def test_an_output_dir_that_is_a_file_is_one_line(tmp_path):
    (tmp_path / "x").write_text("not a folder")
    result = _run("train.py", f"--output_dir={tmp_path / 'x'}", *QUICK, timeout=120)
    assert result.returncode == cli.USAGE_EXIT_CODE and "Traceback" not in result.stderr
    assert _error_lines(result) == [
        f"error: --output_dir must be a folder, but {str(tmp_path / 'x')!r} is a "
        f"file. Received: --output_dir={tmp_path / 'x'}. Pick another --output_dir or move "
        "the file away."]


def test_batch_not_divisible_by_replicas(tmp_path):
    result = _run("train.py", "--strategy=mirrored", "--logical_cpus=2", "--batch_size=33",
                  f"--output_dir={tmp_path}", *QUICK, timeout=120)
    assert result.returncode != 0
    assert "divisible" in result.stderr and "batch_size" in result.stderr


def test_summarize_runs_averages_only_over_seeds(trained_run, tmp_path):
    """Copies of one run as seeds 0/1 and as a 2-epoch setting: two rows, never one."""
    import shutil

    source = trained_run[0]
    config = json.loads((source / "config.json").read_text())
    summary = json.loads((source / "summary.json").read_text())
    for name, changes, robust in (("a", {"seed": 0}, 0.5), ("b", {"seed": 1}, 0.7),
                                  ("c", {"seed": 0, "epochs": config["epochs"] + 1}, 0.1)):
        folder = tmp_path / "runs" / name
        folder.mkdir(parents=True)
        (folder / "config.json").write_text(json.dumps({**config, **changes}))
        (folder / "summary.json").write_text(json.dumps({**summary, "robust_accuracy": robust}))
    shutil.rmtree(tmp_path / "unused", ignore_errors=True)
    result = _run("summarize_runs.py", f"--runs={tmp_path / 'runs' / '*'}")
    assert result.returncode == 0, result.stderr[-2000:]
    rows = [line for line in result.stdout.splitlines() if line.startswith("| `")]
    assert len(rows) == 2
    seeds = [row for row in rows if "2 (0, 1)" in row][0]
    assert "0.600 ± 0.100" in seeds and f"epochs={config['epochs']}" in seeds
    other = [row for row in rows if row is not seeds][0]
    assert "0.100" in other and f"epochs={config['epochs'] + 1}" in other


def test_summarize_runs_tabulates_a_run(trained_run):
    out = trained_run[0]
    result = _run("summarize_runs.py", f"--runs={out}")
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    row = [line for line in result.stdout.splitlines() if line.startswith("| `sgn`")][0]
    assert f"{summary['robust_accuracy']:.3f}" in row and "digits" in row
