"""The reproduction runner on a tiny digits budget (resumption, outputs that
agree with each other), and its analysis and plots on handmade curves."""

import json
import os
import re
import subprocess
import sys

import pytest

from keras_sgn import methods, training
from keras_sgn.experiments import analysis, plots, progress, reproduce, runs, tables

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Two methods x two seeds, two epochs, a few images, cheap attacks everywhere.
TINY = dict(dataset="digits", methods=("sgn", "pgd"), seeds=(0, 1), epochs=2, n_train=128,
            n_val=32, n_test=32, val_steps=2, test_steps=2,
            best_attacks="pgd-ce:steps=2;pgd-cw:steps=2", best_sanity_checks=False,
            attack_steps=2)
TOOL_FLAGS = ["--dataset=digits", "--methods=sgn,pgd", "--seeds=0,1", "--epochs=2",
              "--n_train=128", "--n_val=32", "--n_test=32", "--val_steps=2",
              "--test_steps=2", "--best_attacks=pgd-ce:steps=2;pgd-cw:steps=2",
              "--nobest_sanity_checks", "--attack_steps=2"]


def _curve(robust, clean=0.9, seconds=1.0):
    return [{"epoch": i + 1, "train_seconds": seconds * (i + 1), "clean_accuracy": clean,
             "robust_accuracy": r} for i, r in enumerate(robust)]


def _run(method, seed, robust, seconds=1.0, clean=0.9):
    return {"method": method, "seed": seed, "epochs": len(robust),
            "curve": _curve(robust, clean, seconds)}


# -- rules on handmade curves ---------------------------------------------------
def test_catastrophic_overfitting_is_detected():
    assert analysis.catastrophic_overfitting(_curve([0.3, 0.45, 0.5, 0.05, 0.02])) == 4
    assert analysis.catastrophic_overfitting(_curve([0.3, 0.45, 0.5, 0.47, 0.5])) is None
    # A drop while clean accuracy also fell is not the single-step collapse.
    assert analysis.catastrophic_overfitting(_curve([0.5, 0.05], clean=0.3)) is None


def test_time_to_target_counts_only_once_the_curve_stays_there():
    curve = _curve([0.5, 0.7, 0.6, 0.72, 0.75], seconds=10)
    assert analysis.first_crossing(curve, 0.7)["epoch"] == 2
    hit = analysis.time_to_target(curve, 0.7)
    assert (hit["epoch"], hit["train_seconds"]) == (4, 40)
    # Crossed, then fell below at the end: never reached.
    assert analysis.time_to_target(_curve([0.5, 0.8, 0.69]), 0.7) is None
    assert analysis.first_crossing(_curve([0.5, 0.8, 0.69]), 0.7)["epoch"] == 2
    # Exactly at the target counts; no target: nothing to reach.
    assert analysis.time_to_target(_curve([0.7, 0.7]), 0.7)["epoch"] == 1
    assert analysis.time_to_target(curve, None) is None


def test_analysis_target_speedups_and_collapse():
    runs_ = [_run("pgd", 0, [0.2, 0.6, 0.5, 0.62], seconds=10),  # best 0.62 at epoch 4
             _run("pgd", 1, [0.3, 0.5, 0.58, 0.6], seconds=10),  # best 0.60 at epoch 4
             _run("sgn", 0, [0.62, 0.5, 0.65, 0.7], seconds=2),  # stays from epoch 3
             _run("sgn", 1, [0.5, 0.61, 0.64, 0.66], seconds=2),  # stays from epoch 2
             _run("fast", 0, [0.5, 0.55, 0.1, 0.05], seconds=2)]
    result = analysis.analyse(runs_)
    # The target is the mean of each PGD-AT seed's BEST, not of the final epochs.
    assert result["target_robust_accuracy"] == pytest.approx(0.61)
    pgd, sgn, fast = (result["methods"][m] for m in ("pgd", "sgn", "fast"))
    assert pgd["reached_target"] == 1 and pgd["time_to_target_seconds"] == pytest.approx(40)
    assert [r["epochs_to_target"] for r in sgn["runs"]] == [3, 2]
    assert [r["first_crossing_epoch"] for r in sgn["runs"]] == [1, 2]
    assert sgn["time_to_target_seconds"] == pytest.approx(5.0)  # (6 s + 4 s) / 2
    assert sgn["speedup_vs_reference"] == pytest.approx(8.0)
    assert pgd["speedup_vs_reference"] == pytest.approx(1.0)
    assert fast["reached_target"] == 0 and fast["speedup_vs_reference"] is None
    assert [r["collapsed_at_epoch"] for r in fast["runs"]] == [3] and fast["collapsed"] == 1
    assert sgn["best_seed"] == 0 and pgd["best_seed"] == 0
    assert sgn["best_val_robust_accuracy"] == pytest.approx(0.68)
    for rule in ("target", "time_to_target", "speed_up", "collapse"):
        assert result["rules"][rule]
    assert "0.2 below its best" in result["rules"]["collapse"]
    # Without PGD-AT runs there is no target and no speed-up.
    alone = analysis.analyse(runs_[2:4])
    assert alone["target_robust_accuracy"] is None
    assert alone["methods"]["sgn"]["speedup_vs_reference"] is None


def test_method_lists_and_default_seeds_come_from_the_registry():
    claims = ["standard", "fast", "pgd", "free", "trades", "sgn", "sgn-pgd"]
    assert sorted(reproduce.STUDIES["claims"]["methods"]) == sorted(claims)
    assert set(claims) <= set(reproduce.ALL_METHODS) == set(methods.list_methods(variants=False))
    # The variants study: every registered variant, against sgn and PGD-AT.
    variants = {m for m in methods.list_methods() if methods.registry.method_class(m).variant}
    assert len(variants) >= 3
    assert set(reproduce.STUDIES["variants"]["methods"]) == variants | {"sgn", "pgd"}
    assert {"fast", "free", "sgn"} <= set(reproduce.SINGLE_STEP)
    assert not {"standard", "pgd", "trades", "sgn-pgd"} & set(reproduce.SINGLE_STEP)
    for method in claims:
        multi = method in ("pgd", "trades", "sgn-pgd")
        assert reproduce.default_seeds(method) == ((0, 1) if multi else (0, 1, 2)), method
    configs = reproduce.plan("digits", ["sgn", "pgd"], epochs=4)
    assert [(c.method, c.seed) for c in configs] == [
        ("sgn", 0), ("sgn", 1), ("sgn", 2), ("pgd", 0), ("pgd", 1)]
    assert [c.seed for c in reproduce.plan("digits", ["pgd"], seeds=3)] == [0, 1, 2]


def test_the_collapse_study_is_fast_sgn_and_pgd_at_a_larger_radius():
    study = reproduce.STUDIES["collapse"]
    assert set(study["methods"]) == {"fast", "sgn", "pgd"} and study["epsilon"] == 0.2
    with pytest.raises(ValueError, match="study must be one of"):
        reproduce.reproduce(study="colapse")


def test_progress_lines_and_eta():
    lines = []

    class Stream:
        def write(self, text):
            lines.append(text)

        def flush(self):
            pass

    plan = [("sgn", 0, 2, 2.0), ("pgd", 0, 2, 4.0)]
    printer = progress.Progress(plan, {"final": 2}, stream=Stream())
    printer.start_run(0, "somewhere")
    printer.epoch({"epoch": 1, "train_seconds": 1.0, "val_seconds": 0.1,
                   "clean_accuracy": 0.5, "robust_accuracy": 0.25}, epochs=2)
    text = "".join(lines)
    assert "[run 1/2] sgn seed 0 | epoch 1/2 |" in text and "run ETA" in text
    assert "all ETA" in text and "final evaluations" in text  # not measured yet: said so
    assert progress.format_duration(3725) == "1h02m"
    assert progress.format_duration(65) == "1m05s"


# -- figures --------------------------------------------------------------------
def test_plots_have_a_mean_line_a_band_and_the_target():
    runs_ = [_run("pgd", 0, [0.2, 0.5, 0.6], seconds=10), _run("pgd", 1, [0.3, 0.5, 0.62]),
             _run("sgn", 0, [0.55])]  # a one-point run must stay visible
    fig, ax = plots.robust_figure(runs_, "train_seconds", target=0.61,
                                  title="fashion_mnist · cnn · eps 0.1 (protocol)")
    import matplotlib.pyplot as plt  # after new_figure chose the headless backend

    try:
        assert ax.get_title() == "fashion_mnist · cnn · eps 0.1 (protocol)"
        assert "wall time" in ax.get_xlabel() and "robust" in ax.get_ylabel()
        lines = {line.get_label(): line for line in ax.get_lines()}
        assert len(lines) == 3  # one mean line per method + the target
        pgd = lines["pgd (mean of 2 seeds)"]
        assert list(pgd.get_ydata()) == pytest.approx([0.25, 0.5, 0.61])
        assert list(pgd.get_xdata()) == pytest.approx([5.5, 11.0, 16.5])  # mean time
        sgn = lines["sgn (1 seed)"]
        assert len(sgn.get_xdata()) == 1 and sgn.get_marker() not in ("None", "", None)
        target = next(line for label, line in lines.items() if label.startswith("target"))
        assert set(target.get_ydata()) == {0.61}
        assert len(ax.collections) == 2  # one min-max band per method
    finally:
        plt.close(fig)
    fig, ax = plots.robust_figure(runs_, "epoch", target=None)
    assert ax.get_xlabel() == "epoch" and len(ax.get_lines()) == 2  # no target line
    plt.close(fig)
    # `standard` near 0 under attack: named with its best, not stretching the axis to 0.
    fig, ax = plots.robust_figure(runs_ + [_run("standard", 0, [0.01, 0.02])], "epoch",
                                  target=0.61)
    low, high = ax.get_ylim()
    assert 0.15 < low < 0.2 and 0.62 < high < 0.7, (low, high)
    labels = [line.get_label() for line in ax.get_lines()]
    assert "standard (1 seed), below the axis: best 0.020" in labels
    assert "pgd (mean of 2 seeds)" in labels
    plt.close(fig)


# -- the runner end to end --------------------------------------------------------
def _numbers(cell):
    return [float(x) for x in re.findall(r"-?\d+\.\d+", cell)]


def _table(markdown_text):
    lines = [line for line in markdown_text.splitlines() if line.startswith("|")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    return {row[0].strip("`"): dict(zip(header, row))
            for row in ([c.strip() for c in line.strip("|").split("|")] for line in lines[2:])}


def _check_table_matches_json(markdown_text, result):
    table = _table(markdown_text)
    assert set(table) == set(result["methods"])
    for method, entry in result["methods"].items():
        row = table[method]
        assert row["seeds"] == str(len(entry["seeds"]))
        for column, key in (("val robust, best epoch", "best_val_robust_accuracy"),
                            ("clean (test, quick (2 steps))", "final_clean_accuracy"),
                            ("robust (test, quick (2 steps))", "final_robust_accuracy")):
            assert _numbers(row[column]) == pytest.approx(
                [entry[key], entry[key + "_std"]], abs=5.001e-4), (method, column)
        best = entry["best_model_test"]
        cell = row["pgd-ce:steps=2;pgd-cw:steps=2 on best model: clean / robust"]
        assert cell.startswith(f"seed {entry['best_seed']}:")
        assert _numbers(cell) == pytest.approx(
            [best["clean_accuracy"], best["robust_accuracy"]], abs=5.001e-4)  # 3 decimals
        assert row["reached target"] == f"{entry['reached_target']}/{len(entry['seeds'])}"
        if entry["time_to_target_seconds"] is None:
            assert row["time to target (s)"] == "-" and row["speed-up vs pgd"] == "-"
        else:
            assert _numbers(row["time to target (s)"])[0] == pytest.approx(
                entry["time_to_target_seconds"], abs=0.05)
            assert _numbers(row["epochs to target"])[0] == pytest.approx(
                entry["epochs_to_target"], abs=0.05)
            assert float(row["speed-up vs pgd"].rstrip("x")) == pytest.approx(
                entry["speedup_vs_reference"], abs=0.005)


def _mtimes(folder):
    return {os.path.join(d, f): os.stat(os.path.join(d, f)).st_mtime_ns
            for d, _, files in os.walk(folder / "runs") for f in files}


def _check_results(results, out):
    assert len(results["runs"]) == 4
    for run in results["runs"]:
        assert [p["epoch"] for p in run["curve"]] == [1, 2]
        assert run["curve"][1]["train_seconds"] > run["curve"][0]["train_seconds"] > 0
        assert all(0 <= p["robust_accuracy"] <= p["clean_accuracy"] <= 1 for p in run["curve"])
        assert "PGD-2 robust accuracy on 32 validation images" in run["validation"]
        assert run["final"]["split"] == "test" and run["final"]["n_examples"] == 32
        assert "best-val-epoch model" in run["final"]["protocol_label"]
        assert [a["steps"] for a in run["final"]["protocol"]["attacks"]] == [2, 2]
        assert "summary" not in run and "history" not in run  # left in the run folder
    with_best = [(r["method"], r["seed"]) for r in results["runs"] if r.get("best_model_test")]
    methods = results["analysis"]["methods"]
    assert sorted(with_best) == sorted((m, e["best_seed"]) for m, e in methods.items())
    pgd_bests = [max(p["robust_accuracy"] for p in r["curve"])
                 for r in results["runs"] if r["method"] == "pgd"]
    assert results["analysis"]["target_robust_accuracy"] == pytest.approx(
        sum(pgd_bests) / len(pgd_bests))
    assert results["settings"]["versions"]["keras_sgn"]
    assert results["settings"]["validation_settings"]["split"] == "validation"
    for name in ("robust_vs_time.png", "robust_vs_epochs.png"):
        assert (out / name).stat().st_size > 1000


@pytest.mark.slow
def test_reproduce_end_to_end_resumes_and_skips(tmp_path, capsys, monkeypatch):
    out = tmp_path / "repro"
    reproduce.reproduce(output_dir=str(out), **TINY)
    printed = capsys.readouterr().out
    assert len(re.findall(r"\] (sgn|pgd) seed \d \| epoch \d/2 \|", printed)) == 8
    assert len(re.findall(r"\] (sgn|pgd) seed \d: final test \(quick", printed)) == 4
    results = json.loads((out / "results.json").read_text())
    _check_results(results, out)
    _check_table_matches_json((out / "results.md").read_text(), results["analysis"])

    # The same command again, as a tool: nothing is trained or evaluated again;
    # the results (not the models) can go to another folder.
    before = _mtimes(out)
    docs = tmp_path / "docs"
    tool = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "reproduce.py"),
                           *TOOL_FLAGS, f"--output_dir={out}", f"--results_dir={docs}"],
                          capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, PYTHONPATH=ROOT))
    assert tool.returncode == 0, tool.stderr[-3000:]
    assert tool.stdout.count("finished earlier, skipped") == 4 + 2  # runs, best-seed tests
    assert "| `sgn` |" in tool.stdout  # the table is printed
    assert _mtimes(out) == before
    assert sorted(os.listdir(docs)) == ["results.json", "results.md", "robust_vs_epochs.png",
                                        "robust_vs_time.png"]
    assert json.loads((docs / "results.json").read_text())["analysis"] == results["analysis"]

    # A run that did not finish (no summary.json, as after a kill during its
    # final test): only that run is taken up again, as a training run resumes.
    calls = {"train": 0, "evaluate": 0}
    train_run, evaluate_best = runs.train_run, runs.evaluate_best

    def counted(name, fn):
        def wrapper(*args, **kwargs):
            calls[name] += 1
            return fn(*args, **kwargs)
        return wrapper

    monkeypatch.setattr(runs, "train_run", counted("train", train_run))
    monkeypatch.setattr(runs, "evaluate_best", counted("evaluate", evaluate_best))
    os.remove(out / "runs" / "pgd-seed1" / "summary.json")
    reproduce.reproduce(output_dir=str(out), verbose=False, **TINY)
    assert calls["train"] == 1
    assert calls["evaluate"] <= 1  # the best-seed test, if that run is the best and changed
    assert (out / "runs" / "pgd-seed1" / "summary.json").exists()
    # Other settings in the same folder: refused before any training.
    with pytest.raises(ValueError, match="other settings"):
        reproduce.reproduce(output_dir=str(out), verbose=False, **dict(TINY, epochs=3))
    assert calls["train"] == 1
    # Another runner at work on a run (its folder locked): refused, nothing written twice.
    os.remove(out / "runs" / "pgd-seed1" / "summary.json")
    other = training.run_folder.RunLock(str(out / "runs" / "pgd-seed1")).acquire()
    try:
        with pytest.raises(training.RunFolderBusyError, match="in use by"):
            reproduce.reproduce(output_dir=str(out), verbose=False, **TINY)
    finally:
        other.release()
    assert calls["train"] == 2  # tried, and refused by the lock before any training
    assert not (out / "runs" / "pgd-seed1" / "summary.json").exists()


def test_free_trains_the_epochs_of_the_same_budget(tmp_path):
    config = reproduce.plan("digits", ["free"], seeds=[0], epochs=4, free_replays=2,
                            n_train=64)[0]
    result = reproduce.run_method(config, str(tmp_path), reproduce.Validation(1, n_examples=16),
                                  n_test=16)
    assert result["epochs"] == 2 and result["budget_epochs"] == 4  # each batch replayed twice
    assert [p["epoch"] for p in result["curve"]] == [1, 2]
    assert os.path.exists(tmp_path / runs.BEST_MODEL_FILE)
    assert tables.header()[0] == "method"


# -- the committed results -------------------------------------------------------
@pytest.mark.parametrize("study", ["claims", "collapse", "variants"])
def test_committed_results_are_the_analysis_of_their_runs(study):
    """docs/reproduce/fashion_mnist-<study>: results.md is the table of
    results.json, whose analysis is recomputed from its own runs (so a number
    edited by hand anywhere along README -> results.md -> results.json fails)."""
    folder = os.path.join(ROOT, "docs", "reproduce", f"fashion_mnist-{study}")
    with open(os.path.join(folder, "results.json")) as f:
        committed = json.load(f)
    with open(os.path.join(folder, "results.md")) as f:
        assert f.read() == tables.markdown(committed["analysis"], committed["settings"])
    recomputed = json.loads(json.dumps(analysis.analyse(committed["runs"])))  # JSON's types
    assert recomputed == committed["analysis"]
    for run in committed["runs"]:  # every run carries its test evaluation
        assert run["final"]["n_examples"] == committed["settings"]["n_test"], run["method"]
