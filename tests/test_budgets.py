"""The budgets study: epochs from measured epoch times, resumable runs, the front
and the time to within one point of the reference."""

import json
import os
import subprocess
import sys

import pytest

from keras_sgn.experiments import budgets

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_plan_gives_each_method_its_epochs_for_the_time():
    cells = budgets.plan(("pgd", "fast"), {"pgd": 60.0, "fast": 15.0}, budgets=(5, 10),
                         two_seed=(10,), reference_budgets=(20,))
    assert ("fast", 5, 0, 20) in cells and ("pgd", 5, 0, 5) in cells  # 4x cheaper: 4x epochs
    assert [c for c in cells if c[:2] == ("fast", 10)] == [("fast", 10, 0, 40),
                                                          ("fast", 10, 1, 40)]
    assert ("pgd", 20, 0, 20) in cells and not any(c[:2] == ("fast", 20) for c in cells)
    assert budgets.budget_epochs(1, 600) == 1  # at least one epoch
    # --seeds keeps the plan's cells of those seeds (it was ignored: seed 1 ran too).
    only_first = budgets.plan(("pgd", "fast"), {"pgd": 60.0, "fast": 15.0}, budgets=(5, 10),
                              two_seed=(10,), reference_budgets=(20,), seeds=(0,))
    assert only_first == [c for c in cells if c[2] == 0]
    assert budgets.plan(("fast",), {"fast": 15.0}, budgets=(5, 10), two_seed=(10,),
                        seeds=(1,)) == [("fast", 10, 1, 40)]


def test_calibration_times_each_entry_and_a_switching_entry_by_its_share():
    seconds = budgets.calibrate("digits", ["fast", "sgn-then-pgd3"], steps_per_epoch=10,
                                repeats=1, n_train=64)
    assert set(seconds) == {"fast", "sgn-then-pgd3"} and min(seconds.values()) > 0
    assert budgets.entry_fields("sgn-then-pgd3")["finish_method"] == "pgd"
    assert budgets.entry_fields("pgd") == {"method": "pgd"}


def test_an_entry_added_later_is_calibrated_on_the_stored_scale(tmp_path, monkeypatch):
    # The machine runs at half speed now: "fast" is stored at 10 s and measures 20 s,
    # so the new entry's 50 s measured are 25 s on the stored scale.
    (tmp_path / budgets.CALIBRATION_FILE).write_text(json.dumps(
        {"epoch_seconds": {"fast": 10.0, "pgd": 60.0}, "how": "earlier"}))
    measured = {"fast": 20.0, "pgd": 120.0, "new": 50.0}
    calls = []

    def calibrate(dataset, labels, steps_per_epoch, **fields):
        calls.append(list(labels))
        return {label: measured[label] for label in labels}

    monkeypatch.setattr(budgets, "calibrate", calibrate)
    seconds = budgets.load_or_calibrate(str(tmp_path), "digits", ["pgd", "fast", "new"], 10)
    assert seconds == {"fast": 10.0, "pgd": 60.0, "new": 25.0}
    assert calls == [["fast", "new"]]  # the cheapest stored entry is the yardstick
    stored = json.loads((tmp_path / budgets.CALIBRATION_FILE).read_text())
    assert stored["epoch_seconds"]["new"] == 25.0 and stored["scaled"]["new"]["to"] == "fast"
    assert budgets.load_or_calibrate(str(tmp_path), "digits", ["new"], 10) == seconds
    assert len(calls) == 1  # stored: not measured again


def _cell(method, minutes, seed, robust, epochs):
    run = {"summary": {"robust_accuracy": robust, "clean_accuracy": 0.8, "epochs": epochs},
           "cpu_seconds": 1.5 * epochs, "wall_seconds": 3.0 * epochs}
    return (method, minutes, seed, run)


def test_front_and_time_within_one_point():
    """Time is planned (epochs x calibrated epoch time), not the measured seconds, which
    other work on the machine stretches; those are reported beside it."""
    cells = [_cell("pgd", 5, 0, 0.60, 5), _cell("pgd", 10, 0, 0.69, 10),
             _cell("pgd", 10, 1, 0.71, 10), _cell("pgd", 20, 0, 0.72, 20),
             _cell("sgn", 5, 0, 0.65, 29), _cell("sgn", 10, 0, 0.705, 59)]
    fronts = budgets.front(cells, {"pgd": 60.0, "sgn": 10.0})
    ten = fronts["pgd"][1]
    assert ten["seeds"] == [0, 1] and ten["robust_accuracy"] == pytest.approx(0.70)
    assert ten["robust_std"] == pytest.approx(0.01414, abs=1e-4)  # sample std (n - 1)
    assert (ten["robust_min"], ten["robust_max"]) == (0.69, 0.71)
    assert ten["train_seconds"] == 600 and ten["measured_cpu_seconds"] == 15.0
    verdict = budgets.verdict(fronts, reference=0.72)
    assert verdict["pgd"]["seconds_to_within"] == pytest.approx(1200)  # 10 min: mean 0.70
    assert verdict["pgd"]["fraction_of_reference"] == pytest.approx(1.0)
    assert verdict["sgn"]["seconds_to_within"] is None  # 0.705 < 0.71: not within the budgets
    verdict = budgets.verdict(fronts, reference=0.712)  # within: >= 0.702
    assert verdict["pgd"]["seconds_to_within"] == pytest.approx(1200)
    assert verdict["sgn"]["seconds_to_within"] == pytest.approx(590)
    assert verdict["sgn"]["fraction_of_reference"] == pytest.approx(590 / 1200)
    verdict = budgets.verdict(fronts, reference=0.70)  # within: >= 0.69
    assert verdict["pgd"]["seconds_to_within"] == pytest.approx(600)  # mean of two seeds


@pytest.mark.slow
def test_a_tiny_study_trains_resumes_and_writes_its_results(tmp_path):
    kwargs = dict(dataset="digits", methods=("pgd", "fast"), output_dir=str(tmp_path / "runs"),
                  results_dir=str(tmp_path / "results"), budgets=(0.02,), two_seed=(),
                  reference_budgets=(0.04,), n_test=30, verbose=0, n_train=64, n_eval=32,
                  batch_size=32, attack_steps=2, eval_steps=1, test_steps=1)
    calibration = tmp_path / "results" / "calibration.json"
    calibration.parent.mkdir()
    calibration.write_text(json.dumps({"epoch_seconds": {"pgd": 0.6, "fast": 0.3}}))
    outcome = budgets.study(**kwargs)
    fronts = outcome["fronts"]
    assert [r["budget_minutes"] for r in fronts["pgd"]] == [0.02, 0.04]
    assert [r["epochs"] for r in fronts["pgd"]] == [2, 4] and fronts["fast"][0]["epochs"] == 4
    summary = json.loads((tmp_path / "runs" / "runs" / "fast-0.02min-seed0" /
                          "summary.json").read_text())
    assert summary["n_test_examples"] == 30 and summary["protocol"]["order"] == "original"
    results = json.loads((tmp_path / "results" / "results.json").read_text())
    assert "stand-in" in results["settings"]["reference_source"]
    assert (tmp_path / "results" / "robust_vs_time.png").stat().st_size > 1000
    md = (tmp_path / "results" / "results.md").read_text()
    assert "| `fast` | 0.02 | 4 | 0 | 1 | " in md  # 4 epochs x 0.3 s planned
    assert fronts["fast"][0]["measured_cpu_seconds"] > 0
    # The final evaluation of each method's best cell, on the whole test split.
    budgets.evaluate_best_cells("digits", kwargs["output_dir"], kwargs["results_dir"],
                                [(m, b, 0, budgets.read_run(budgets.run_dir(
                                    kwargs["output_dir"], m, b, 0)))
                                 for m, b in (("pgd", 0.02), ("pgd", 0.04), ("fast", 0.02))],
                                suites=("quick",), verbose=0)
    final = budgets.read_final(kwargs["results_dir"], [
        (m, b, 0, budgets.read_run(budgets.run_dir(kwargs["output_dir"], m, b, 0)))
        for m, b in (("pgd", 0.02), ("pgd", 0.04), ("fast", 0.02))])
    assert set(final) == {"pgd", "fast"}
    assert final["fast"]["suites"]["quick"]["n_examples"] > 30  # the whole test split
    # A rerun trains nothing: every run is read back as it is.
    before = summary["train_seconds"]
    again = budgets.study(**kwargs)
    assert again["fronts"] == fronts and json.loads((
        tmp_path / "runs" / "runs" / "fast-0.02min-seed0" / "summary.json").read_text()
        )["train_seconds"] == before


def test_committed_results_md_is_the_table_of_results_json():
    """docs/reproduce/fashion_mnist-budgets: results.md is written from results.json (a
    number edited by hand in one of them fails), and each front row's planned time is its
    epochs x the committed calibration."""
    import os

    folder = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                          "docs", "reproduce", "fashion_mnist-budgets")
    with open(os.path.join(folder, "results.json")) as f:
        committed = json.load(f)
    with open(os.path.join(folder, "results.md")) as f:
        assert f.read() == budgets.markdown(committed["fronts"], committed["verdict"],
                                            committed["reference_robust_accuracy"],
                                            committed["settings"], committed.get("final"))
    with open(os.path.join(folder, budgets.CALIBRATION_FILE)) as f:
        calibration = json.load(f)["epoch_seconds"]
    for method, rows in committed["fronts"].items():
        for row in rows:
            assert row["train_seconds"] == pytest.approx(row["epochs"] * calibration[method])
            assert row["epochs"] == budgets.budget_epochs(row["budget_minutes"],
                                                          calibration[method])


def test_the_reference_is_measured_on_the_runs_test_images(tmp_path):
    """Converged PGD-AT's level comes from a report measured like the runs (quick, the
    first n_test images in the original order); any other report is refused."""
    def report(n, order="original", attacks=("apgd-ce", "apgd-t")):
        folder = tmp_path / f"{n}-{order}-{len(attacks)}"
        folder.mkdir()
        (folder / "report.json").write_text(json.dumps({
            "dataset": "fashion_mnist", "n_examples": n, "order": order,
            "robust_accuracy": 0.75, "protocol": {"attacks": [{"name": a} for a in attacks]}}))
        return str(folder)

    level, source = budgets.reference_level(report(2000), "fashion_mnist", 2000)
    assert level == 0.75 and source.startswith("quick on the same test images")
    for other, what in ((report(10_000), "n_examples"), (report(2000, "stored"), "order"),
                        (report(2000, attacks=("apgd-ce",)), "attacks")):
        with pytest.raises(ValueError, match=f"'{what}'.*--reference_run="):
            budgets.reference_level(other, "fashion_mnist", 2000)
    assert budgets.reference_level(None, "fashion_mnist", 2000) == (None, None)


def test_recalibrating_an_entry_rescales_it_by_epochs_and_sets_its_runs_aside(tmp_path,
                                                                            monkeypatch):
    """An entry whose step timing missed part of its cost is measured again by training
    epochs beside the yardstick (the cheapest other entry); its runs planned with the old
    time move to superseded/ (kept), the others' stay."""
    results, output = tmp_path / "results", tmp_path / "runs"
    results.mkdir()
    (results / budgets.CALIBRATION_FILE).write_text(json.dumps(
        {"epoch_seconds": {"fast": 10.0, "sgn": 12.0, "pgd": 60.0}}))
    for name in ("sgn-5min-seed0", "sgn-10min-seed1", "sgn-memory-5min-seed0", "fast-5min-seed0"):
        (output / "runs" / name).mkdir(parents=True)
    cpu_per_epoch = {"fast": 2.0, "sgn": 3.0}  # sgn costs 1.5x fast over real epochs
    trained = []

    def train(config):
        label = "fast" if config.method == "fast" else "sgn"
        trained.append((label, config.epochs, config.n_train))
        history = {"train_cpu_seconds": [7.0 + cpu_per_epoch[label] * e
                                         for e in range(config.epochs)],
                   "train_seconds": [1.0] * config.epochs}
        import os as os_
        for name, value in (("history.json", history), ("summary.json", {}),
                            ("config.json", {"seed": 0})):
            with open(os_.path.join(config.output_dir, name), "w") as f:
                json.dump(value, f)

    monkeypatch.setattr(budgets.training, "train", train)
    monkeypatch.setattr(budgets.runs, "read_run", lambda folder: {"history": json.load(
        open(f"{folder}/history.json"))})
    seconds = budgets.recalibrate(str(results), "digits", ["sgn"], str(output), epochs=3)
    assert seconds == {"sgn": 15.0}  # fast's stored 10 s x 3/2 (the first epoch left out)
    assert trained == [("fast", 3, None), ("sgn", 3, None)]  # the full training split
    stored = json.loads((results / budgets.CALIBRATION_FILE).read_text())
    assert stored["epoch_seconds"] == {"fast": 10.0, "sgn": 15.0, "pgd": 60.0}
    assert stored["rescaled"]["sgn"]["previous"] == 12.0
    assert stored["rescaled"]["sgn"]["to"] == "fast"
    assert sorted(p.name for p in (output / "runs").iterdir()) == [
        "fast-5min-seed0", "sgn-memory-5min-seed0"]  # only exactly this entry's runs moved
    (superseded,) = (output / "superseded").iterdir()
    assert sorted(p.name for p in superseded.iterdir()) == ["sgn-10min-seed1", "sgn-5min-seed0"]
    with pytest.raises(ValueError, match="entries already calibrated"):
        budgets.recalibrate(str(results), "digits", ["nope"], str(output))
    with pytest.raises(ValueError, match="epochs >= 2"):
        budgets.recalibrate(str(results), "digits", ["sgn"], str(output), epochs=1)


def test_the_tuned_entry_is_the_committed_winner_of_the_search():
    path = os.path.join(os.path.dirname(__file__), os.pardir, "docs", "reproduce",
                        "fashion_mnist-tuning", "best_hyperparameters.json")
    with open(path) as f:
        winner = json.load(f)["train_config"]
    config = budgets.run_config("fashion_mnist", "/unused", "sgn-tuned", 5, 0, 1, 2000).resolved()
    for field in ("method", "sites", "beta", "normalization", "step_size", "epsilon",
                  "learning_rate", "weight_decay", "model"):
        assert getattr(config, field) == winner[field], field
    assert config.options == winner["options"]


def test_the_tool_passes_seeds_to_the_plan_and_an_empty_selection_is_one_line(tmp_path):
    """`reproduce.py --study=budgets --seeds=1` used to ignore --seeds and train seed 0:
    here seed 1 selects none of the cells (it runs only at the two-seed budgets)."""
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, "tools", "reproduce.py"), "--study=budgets",
         "--dataset=digits", "--methods=fast", "--budgets=0.02", "--seeds=1",
         f"--output_dir={tmp_path / 'runs'}", f"--results_dir={tmp_path / 'results'}"],
        capture_output=True, text=True, timeout=300, cwd=ROOT, env=dict(os.environ,
                                                                         PYTHONPATH=ROOT))
    assert result.returncode == 2, result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "seeds=[1] selects none of the study's cells" in lines[0]
    assert not (tmp_path / "runs").exists() and not (tmp_path / "results").exists()


def _validated(method, minutes, seed, best_val):
    run = _cell(method, minutes, seed, 0.6, 10)[3]
    run["summary"]["best_val_robust_accuracy"] = best_val
    run["val_robust_accuracy"] = [best_val - 0.05, best_val]
    return (method, minutes, seed, run)


def test_the_best_cell_is_chosen_on_validation_with_seed_zero_finished():
    cells = [_validated("pgd", 5, 0, 0.70), _validated("pgd", 10, 0, 0.74),
             _validated("pgd", 10, 1, 0.70),  # 10 min: mean 0.72
             _validated("pgd", 20, 0, 0.73),
             _validated("sgn", 5, 0, 0.71), _validated("sgn", 10, 0, 0.71),  # tie: longer
             _validated("sgn", 40, 1, 0.90),  # seed 0 unfinished: not a candidate
             _validated("fast", 10, 1, 0.80), ("fast", 5, 0, None)]
    # Test accuracy (0.6 everywhere) plays no part: only validation selects.
    assert budgets.best_cells(cells) == {"pgd": 20, "sgn": 10}


def test_final_reports_of_the_best_cells_enter_results_json_and_md(tmp_path):
    cells = [_validated("pgd", 5, 0, 0.70), _validated("pgd", 10, 0, 0.75),
             _validated("sgn", 5, 0, 0.71)]
    for method, minutes, suite, robust in (("pgd", 10, "quick", 0.7312),
                                           ("pgd", 10, "standard", 0.7251),
                                           ("pgd", 5, "quick", 0.5),  # not the best cell
                                           ("sgn", 5, "quick", 0.6843)):
        folder = budgets.final_report_dir(str(tmp_path), method, minutes, suite)
        os.makedirs(folder)
        with open(os.path.join(folder, "report.json"), "w") as f:
            json.dump({"clean_accuracy": 0.88, "robust_accuracy": robust, "n_examples": 10000,
                       "per_attack": {"apgd-ce": robust + 0.01}}, f)
    outcome = budgets.write_results(str(tmp_path), cells, "digits", 30,
                                    {"pgd": 60.0, "sgn": 10.0})
    final = json.loads((tmp_path / "results.json").read_text())["final"]
    assert final["pgd"]["budget_minutes"] == 10 and outcome["fronts"]["pgd"]
    assert final["pgd"]["suites"]["standard"]["robust_accuracy"] == 0.7251
    assert set(final["sgn"]["suites"]) == {"quick"}
    md = (tmp_path / "results.md").read_text()
    assert "| `pgd` | 10 | 0.8800 | 0.7312 (10000) | 0.7251 (10000) |" in md
    assert "| `sgn` | 5 | 0.8800 | 0.6843 (10000) | - |" in md


def test_final_evaluations_belong_to_the_budgets_study(tmp_path):
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, "tools", "reproduce.py"), "--study=claims",
         "--final_evaluations", f"--output_dir={tmp_path / 'runs'}"],
        capture_output=True, text=True, timeout=300, cwd=ROOT, env=dict(os.environ,
                                                                         PYTHONPATH=ROOT))
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "--final_evaluations" in lines[0] and "--study=budgets" in lines[0]
    assert not (tmp_path / "runs").exists()
