"""The budgets study: which method gives the most robust model for the training
time one has.

Every method trains at several *time* budgets (not epoch budgets): its epochs
are `budget / its measured epoch time`, and its learning-rate schedule spreads
over its own epochs, so a cheap method gets more epochs at the same budget.
The epoch times are measured once, on this machine, before any run
(`calibrate`), and kept in `calibration.json` beside the results: a rerun (in a
later session, say) plans exactly the same runs.

Time is the *planned* training time, epochs x the calibrated epoch time: it is
what equates the methods, and it does not depend on what else the machine ran
meanwhile. Each run's measured time is kept beside it: the CPU time of the
training process (pinned to one core) and its wall time, both validation
excluded. On this 2-core machine other work stretches both (another process on
the same core, the wall time by up to 3x; on the other core, even the CPU time
by about 1.5x, through the shared caches and memory), which is why they are
reported, not used, for the comparison.

Every run trains through `keras_sgn.training.train` (resumable at any step;
its folder locked while it trains), keeps its best epoch by validation robust
accuracy, and ends with the final test of `tools/train.py` on the first
`n_test` test images in the publication's file order (`test_order="original"`).
`history.json` of each run holds its cumulative training seconds
(`train_seconds`, validation excluded) epoch by epoch.

The front of a method is its test robust accuracy (mean and range over seeds)
against its training time; the reference level is that of converged PGD-AT
(`reference_robust_accuracy`, e.g. the anchor's recipe trained to its end);
"within 1 point" is read off each front (`time_within`).

The final numbers of each method (`evaluate_best_cells`): its best budget, chosen by
the runs' validation robust accuracy (mean over seeds; the test split only
measures), seed 0, under `quick` and `standard` on the whole test split.
"""

import json
import os
import re

import numpy as np

from keras_sgn import data as sgn_data
from keras_sgn import io_utils, training
from keras_sgn.errors import ArgumentError
from keras_sgn.experiments import runs

#: Budgets of every method, in minutes of one core.
BUDGET_MINUTES = (5, 10, 20, 40)
#: Extra, longer budgets of the reference method (towards convergence).
REFERENCE_MINUTES = (80, 160)
#: Budgets trained with two seeds (the largest among them); one seed elsewhere.
TWO_SEED_MINUTES = (10, 40)
REFERENCE_METHOD = "pgd"
#: "Reached" means within this much of the reference's robust accuracy.
WITHIN = 0.01
CALIBRATION_FILE = "calibration.json"
#: Suites each method's best cell is measured with on the whole test split, and where.
FINAL_SUITES = ("quick", "standard")
FINAL_DIR = "final"
# Datasets whose test images have a known publication order (digits: stored so).
_ORIGINAL_ORDER = tuple(sgn_data.sources.LOCAL_FILE_DATASETS) + ("digits",)


#: Study entries that are not a method alone: a method plus other `TrainConfig`
#: fields (a label of the study -> those fields).
ENTRIES = {
    # Cheap, then strong: sgn for 80% of the epochs, PGD-3 for the last 20%.
    "sgn-then-pgd3": {"method": "sgn", "finish_method": "pgd", "finish_attack_steps": 3},
    # The winner of the KerasTuner search of sgn's feedback at 5 minutes a trial
    # (docs/reproduce/fashion_mnist-tuning/best_hyperparameters.json).
    "sgn-tuned": {"method": "sgn", "sites": "input,stage2", "beta": "stage2=0.01000013504870775",
                  "normalization": "l2_relative", "step_size": 0.1},
}


#: The study's entries by default: the baselines, the reconstruction, cheap-then-strong,
#: the reconstruction with a per-example memory, with a learned start (its generator
#: at half resolution: a step on sgn_mnist_cnn costs 3.0-3.6x `standard`, near the 3
#: passes it declares) and with its feedback tuned at a fixed time.
DEFAULT_ENTRIES = ("pgd", "fast", "sgn", "sgn-then-pgd3", "sgn-memory", "sgn-learned-start",
                   "sgn-tuned")


def entry_fields(label):
    """The `TrainConfig` fields of a study entry (a method name, or an `ENTRIES` label)."""
    return dict(ENTRIES.get(label, {"method": label}))


def calibrate(dataset, labels, steps_per_epoch, repeats=5, **fields):
    """Seconds per epoch of each study entry of `labels` on this machine: the
    median time of one training step on a batch of the dataset, times
    `steps_per_epoch` (an entry that switches methods: the average over its
    epochs). `fields`: other `TrainConfig` fields (model, epsilon...)."""
    from keras_sgn.experiments.benchmark import time_method_step

    def epoch_seconds(config, method, options):
        x, y = next(iter(sgn_data.load(dataset, "train", config.batch_size, seed=0)))
        median, _ = time_method_step(config.model, method, x, y, options, repeats=repeats,
                                     num_classes=sgn_data.info(dataset).num_classes)
        return float(median) * steps_per_epoch

    seconds = {}
    for label in labels:
        config = training.TrainConfig(dataset=dataset, verbose=0, **entry_fields(label),
                                      **fields).resolved()
        value = epoch_seconds(config, config.method, config.method_options())
        if config.finish_method is not None:
            options, _ = config.finish_options()
            share = config.finish_fraction
            value = (1 - share) * value + share * epoch_seconds(
                config, config.finish_method, options)
        seconds[label] = round(value, 2)
    return seconds


def load_or_calibrate(results_dir, dataset, methods, steps_per_epoch, **fields):
    """The stored epoch times of `results_dir/calibration.json`, measuring (and
    storing) those of methods it does not have yet.

    An entry added after the first calibration is measured together with an
    entry already stored (the cheapest), and its time is scaled by that entry's
    stored / measured ratio: the machine may be busier or quieter than when the
    others were measured, and the study's time axis must be one scale."""
    path = os.path.join(results_dir, CALIBRATION_FILE)
    stored = {}
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            stored = json.load(f)
    known = stored.setdefault("epoch_seconds", {})
    missing = [m for m in methods if m not in known]
    if missing:
        if not known:
            known.update(calibrate(dataset, missing, steps_per_epoch, **fields))
            stored["how"] = ("median seconds of one training step (batch of the recipe, "
                             f"after warm-up) x {steps_per_epoch} steps per epoch, on this "
                             "machine")
        else:
            anchor = min(known, key=known.get)
            measured = calibrate(dataset, [anchor, *missing], steps_per_epoch, **fields)
            scale = known[anchor] / measured[anchor]
            known.update({m: round(measured[m] * scale, 2) for m in missing})
            stored.setdefault("scaled", {}).update({m: {
                "to": anchor, "measured_seconds": measured[m], "anchor_stored": known[anchor],
                "anchor_measured": measured[anchor]} for m in missing})
        os.makedirs(results_dir, exist_ok=True)
        io_utils.atomic_write_json(path, stored)
    return stored["epoch_seconds"]


def recalibrate(results_dir, dataset, labels, output_dir, epochs=3, **fields):
    """Measure the epoch time of the entries `labels` again, by training epochs
    rather than by one step, and archive their runs planned with the old time.

    A step timed alone can miss what an entry costs over a real epoch (e.g. a
    per-example memory of the whole training split). Each entry and the
    cheapest other stored entry (the yardstick) train `epochs` epochs of the
    full training split side by side in this process; the ratio of their CPU
    seconds per epoch (the first epoch, which traces, left out) scales the
    yardstick's stored time. The entry's run folders under `output_dir/runs`
    move to `output_dir/superseded/<time>/` (kept, never deleted): their epochs
    came from the old time, so the study trains those cells again.

    Returns `{label: new epoch seconds}`; `calibration.json` records how."""
    import datetime
    import shutil
    import tempfile

    if int(epochs) != epochs or epochs < 2:
        raise ArgumentError("recalibrate needs epochs >= 2 (the first one, which traces, is "
                            f"left out). Received: epochs={epochs!r}.")
    path = os.path.join(results_dir, CALIBRATION_FILE)
    if not os.path.exists(path):
        raise ArgumentError(f"Nothing to recalibrate: {path} does not exist yet (the study "
                            "calibrates every entry when it first runs). Received: "
                            f"--recalibrate={','.join(labels)}.")
    with open(path, encoding="utf-8") as f:
        stored = json.load(f)
    known = stored["epoch_seconds"]
    unknown = [label for label in labels if label not in known]
    others = {m: s for m, s in known.items() if m not in labels}
    if unknown or not others:
        raise ArgumentError(f"recalibrate takes entries already calibrated, with another one "
                            f"left as the yardstick. Received: {list(labels)} (calibrated: "
                            f"{sorted(known)}).")
    yardstick = min(others, key=others.get)
    # The timed runs' own small validation and test: given ones are not theirs.
    given = {k: v for k, v in fields.items() if v is not None and k not in ("n_eval", "n_test")}
    cpu = {}
    for label in (yardstick, *labels):
        with tempfile.TemporaryDirectory(prefix="keras_sgn-recalibrate-") as folder:
            config = training.TrainConfig(
                dataset=dataset, **entry_fields(label), epochs=int(epochs), n_eval=100,
                n_test=100, test_steps=1, seed=0, verbose=0, output_dir=folder, **given)
            training.train(config)
            seconds = runs.read_run(folder)["history"]["train_cpu_seconds"]
            per_epoch = np.diff([0.0] + list(seconds))[1:]
            cpu[label] = round(float(np.mean(per_epoch)), 3)
    moved = os.path.join(output_dir, "superseded",
                         datetime.datetime.now().strftime("%Y%m%d-%H%M%S"))
    for label in labels:
        new = round(known[yardstick] * cpu[label] / cpu[yardstick], 2)
        stored.setdefault("rescaled", {})[label] = {
            "to": yardstick, "previous": known[label], "cpu_seconds_per_epoch": {
                yardstick: cpu[yardstick], label: cpu[label]},
            "how": (f"{epochs} training epochs of the full training split each, side by side "
                    "in one process, CPU seconds per epoch after the first; the yardstick's "
                    "stored time scaled by the ratio"),
            "measured_at": datetime.datetime.now(datetime.timezone.utc).isoformat(
                timespec="seconds")}
        known[label] = new
        for run in _entry_runs(output_dir, label):
            os.makedirs(moved, exist_ok=True)
            shutil.move(os.path.join(output_dir, "runs", run), os.path.join(moved, run))
    io_utils.atomic_write_json(path, stored)
    return {label: known[label] for label in labels}


def _entry_runs(output_dir, label):
    """The names of the run folders of entry `label` under `output_dir/runs`
    (`<label>-<minutes>min-seed<k>`, exactly that label)."""
    folder = os.path.join(output_dir, "runs")
    pattern = re.compile(rf"{re.escape(label)}-[0-9.]+min-seed[0-9]+")
    return sorted(name for name in (os.listdir(folder) if os.path.isdir(folder) else ())
                  if pattern.fullmatch(name))


def budget_epochs(minutes, epoch_seconds):
    """Whole epochs that fit `minutes` at `epoch_seconds` each (at least 1)."""
    return max(1, int(round(minutes * 60.0 / epoch_seconds)))


def plan(methods, epoch_seconds, budgets=BUDGET_MINUTES, two_seed=TWO_SEED_MINUTES,
         reference_budgets=REFERENCE_MINUTES, seeds=None):
    """`[(method, minutes, seed, epochs)]`: every method at every budget (the
    reference method also at `reference_budgets`), two seeds at `two_seed`; with
    `seeds`, only the cells of those seeds (a cell's seed comes from the plan, never
    from `seeds`: seed 1 exists only at `two_seed` budgets)."""
    runs = []
    for method in methods:
        minutes = tuple(budgets) + (tuple(reference_budgets)
                                    if method == REFERENCE_METHOD else ())
        for budget in minutes:
            runs += [(method, budget, seed, budget_epochs(budget, epoch_seconds[method]))
                     for seed in ((0, 1) if budget in two_seed else (0,))
                     if seeds is None or seed in seeds]
    # Smallest budgets first, every method at each: partial results are a front.
    return sorted(runs, key=lambda run: (run[1], run[2], methods.index(run[0])))


def run_dir(output_dir, method, minutes, seed):
    return os.path.join(output_dir, "runs", f"{method}-{minutes:g}min-seed{seed}")


def run_config(dataset, output_dir, method, minutes, seed, epochs, n_test, **fields):
    """The `TrainConfig` of one cell of the study."""
    given = {k: v for k, v in fields.items() if v is not None}
    return training.TrainConfig(
        dataset=dataset, **entry_fields(method), seed=seed, epochs=epochs, n_test=n_test,
        test_order="original" if dataset in _ORIGINAL_ORDER else "stored",
        output_dir=run_dir(output_dir, method, minutes, seed), **given)


def read_run(folder):
    """`{summary, cpu_seconds, wall_seconds, val_robust_accuracy}` of a finished
    run folder (None if unfinished); the seconds are the run's measured
    training time (`keras_sgn.experiments.runs.read_run` reads the folder)."""
    run = runs.read_run(folder)
    if run is None:
        return None
    summary, history = run["summary"], run["history"]
    cpu = history.get("train_cpu_seconds") or [None]
    wall = history.get("train_seconds") or [summary["train_seconds"]]
    return {"summary": summary, "cpu_seconds": cpu[-1], "wall_seconds": float(wall[-1]),
            "val_robust_accuracy": history.get("val_robust_accuracy", [])}


def _mean(values):
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


def front(cells, epoch_seconds):
    """Per method, per budget: its planned training seconds (epochs x the
    calibrated epoch time), the measured ones, and test robust/clean accuracy,
    mean and range over seeds. `cells`: `[(method, minutes, seed, run)]`."""
    table = {}
    for method, minutes, seed, run in cells:
        if run is not None:
            table.setdefault(method, {}).setdefault(minutes, []).append((seed, run))
    out = {}
    for method, by_budget in table.items():
        rows = []
        for minutes in sorted(by_budget):
            seeds = by_budget[minutes]
            robust = [r["summary"]["robust_accuracy"] for _, r in seeds]
            clean = [r["summary"]["clean_accuracy"] for _, r in seeds]
            rows.append({
                "budget_minutes": minutes, "seeds": [s for s, _ in seeds],
                "epochs": seeds[0][1]["summary"]["epochs"],
                "train_seconds": seeds[0][1]["summary"]["epochs"] * epoch_seconds[method],
                "measured_cpu_seconds": _mean([r["cpu_seconds"] for _, r in seeds]),
                "measured_wall_seconds": _mean([r["wall_seconds"] for _, r in seeds]),
                "robust_accuracy": float(np.mean(robust)), "robust_min": min(robust),
                "robust_max": max(robust),
                "robust_std": float(np.std(robust, ddof=1)) if len(robust) > 1 else None,
                "clean_accuracy": float(np.mean(clean)),
                "per_seed": {str(s): {"robust_accuracy": r["summary"]["robust_accuracy"],
                                      "clean_accuracy": r["summary"]["clean_accuracy"],
                                      "cpu_seconds": r["cpu_seconds"],
                                      "wall_seconds": r["wall_seconds"]}
                             for s, r in seeds}})
        out[method] = rows
    return out


def time_within(rows, reference, within=WITHIN):
    """The training seconds of the first budget whose mean robust accuracy is
    within `within` of `reference` (None: not within the budgets tried)."""
    for row in rows:
        if row["robust_accuracy"] >= reference - within:
            return row["train_seconds"]
    return None


def verdict(fronts, reference):
    """Per method: its time to within 1 point of `reference` and that time as a
    fraction of the reference method's own."""
    own = time_within(fronts.get(REFERENCE_METHOD, []), reference)
    result = {}
    for method, rows in fronts.items():
        seconds = time_within(rows, reference)
        result[method] = {"seconds_to_within": seconds,
                          "fraction_of_reference": (None if seconds is None or not own
                                                    else seconds / own)}
    return result


def markdown(fronts, verdicts, reference, settings, final=None):
    """results.md: the protocol, the front table, the verdict and (`final`, of
    `read_final`) each method's best cell on the whole test split."""
    lines = [f"# Budgets study: {settings['dataset']}", "",
             f"- protocol: {settings['protocol']}",
             f"- reference: {_reference_words(settings['reference_source'])} robust accuracy "
             + (f"{reference:.4f} ({settings['reference_source']})" if reference is not None
                else "not measured yet"),
             "", "| method | budget (min) | epochs | seeds | planned time (s) | measured CPU / "
             "wall (s) | clean | robust (mean) | robust (min-max) | std |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    # The study's order (results.json stores its keys sorted).
    order = settings.get("entries") or list(fronts)
    for method in order:
        for r in fronts.get(method, []):
            std = "-" if r["robust_std"] is None else f"{r['robust_std']:.4f}"
            lines.append(
                f"| `{method}` | {r['budget_minutes']:g} | {r['epochs']} | "
                f"{','.join(map(str, r['seeds']))} | {r['train_seconds']:.0f} | "
                f"{_seconds(r['measured_cpu_seconds'])} / {_seconds(r['measured_wall_seconds'])} | "
                f"{r['clean_accuracy']:.4f} | {r['robust_accuracy']:.4f} | "
                f"{r['robust_min']:.4f}-{r['robust_max']:.4f} | {std} |")
    if reference is not None:
        caveat = ("" if not _stand_in(settings["reference_source"]) else
                  " (of the stand-in: it says nothing about the claim until the reference "
                  "has converged)")
        lines += ["", f"Time to within {WITHIN * 100:g} point of the reference{caveat}:", "",
                  "| method | seconds | fraction of PGD-AT's |", "|---|---|---|"]
        for method in (m for m in order if m in verdicts):
            v = verdicts[method]
            seconds = ("not within the budgets tried" if v["seconds_to_within"] is None
                       else f"{v['seconds_to_within']:.0f}")
            fraction = ("-" if v["fraction_of_reference"] is None
                        else f"{v['fraction_of_reference']:.2f}")
            lines.append(f"| `{method}` | {seconds} | {fraction} |")
    if final:
        lines += ["", "Each method's best budget (by validation robust accuracy, mean over "
                  "seeds), seed 0, on the whole test split (`quick`: APGD-CE, APGD-T; "
                  "`standard`: also FAB-T and Square):", "",
                  "| method | budget (min) | clean | robust, quick | robust, standard |",
                  "|---|---|---|---|---|"]
        for method in (m for m in order if m in final):
            cell, suites = final[method], final[method]["suites"]
            clean = next(iter(suites.values()))["clean_accuracy"]
            robust = [f"{suites[name]['robust_accuracy']:.4f} ({suites[name]['n_examples']})"
                      if name in suites else "-" for name in FINAL_SUITES]
            lines.append(f"| `{method}` | {cell['budget_minutes']:g} | {clean:.4f} | "
                         + " | ".join(robust) + " |")
    return "\n".join(lines) + "\n"


def _stand_in(source):
    return bool(source) and source.startswith("stand-in")


def _reference_words(source):
    return (f"{REFERENCE_METHOD} so far, a stand-in," if _stand_in(source)
            else f"converged {REFERENCE_METHOD}")


def _seconds(value):
    return "-" if value is None else f"{value:.0f}"


def plot(fronts, reference, path, title, reference_label=None):
    """Test robust accuracy against training time (log axis), mean and range
    over seeds, one line per method, the reference level as a line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for method, rows in fronts.items():
        t = [r["train_seconds"] / 60 for r in rows]
        ax.plot(t, [r["robust_accuracy"] for r in rows], marker="o", label=method)
        ax.fill_between(t, [r["robust_min"] for r in rows], [r["robust_max"] for r in rows],
                        alpha=0.2)
    if reference is not None:
        ax.axhline(reference, color="k", linestyle="--", linewidth=1,
                   label=reference_label or f"converged {REFERENCE_METHOD} ({reference:.3f})")
        ax.axhline(reference - WITHIN, color="k", linestyle=":", linewidth=1,
                   label=f"within {WITHIN * 100:g} point")
    ax.set_xscale("log")
    # Ticks at the budgets, in plain minutes (log axes label few, in powers of 10).
    from matplotlib.ticker import FixedLocator, NullFormatter, ScalarFormatter

    minutes = sorted({r["train_seconds"] / 60 for rows in fronts.values() for r in rows})
    budgets = sorted({float(r["budget_minutes"]) for rows in fronts.values() for r in rows})
    ax.xaxis.set_major_locator(FixedLocator(budgets))
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_formatter(NullFormatter())
    if len(budgets) == 1:
        ax.set_xlim(min(minutes) / 1.5, max(minutes) * 1.5)
    ax.set_xlabel("training time: epochs x calibrated epoch time (minutes of one core, log)")
    ax.set_ylabel("test robust accuracy")
    ax.set_title(title, fontsize=9, wrap=True)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def best_cells(cells):
    """Per method, the budget (minutes) of its best cell: the highest mean over seeds of
    the runs' best validation robust accuracy (the selection each run makes of its
    epochs; the test split only measures), among the budgets seed 0 finished; a tie
    goes to the longer budget. `cells`: `[(method, minutes, seed, run)]` (`read_run`'s
    dict, or None)."""
    validation = {}
    for method, minutes, seed, run in cells:
        if run is None:
            continue
        best = run["summary"].get("best_val_robust_accuracy")
        if best is None and run["val_robust_accuracy"]:
            best = max(run["val_robust_accuracy"])
        if best is not None:
            validation.setdefault(method, {}).setdefault(minutes, {})[seed] = float(best)
    return {method: max((m for m in by_budget if 0 in by_budget[m]),
                        key=lambda m: (np.mean(list(by_budget[m].values())), m))
            for method, by_budget in validation.items()
            if any(0 in seeds for seeds in by_budget.values())}


def final_report_dir(results_dir, method, minutes, suite):
    """Where the final evaluation of a cell under `suite` is written (its cell in the
    name: a best budget that changes as the study goes on gets a report of its own)."""
    return os.path.join(results_dir, FINAL_DIR, f"{method}-{minutes:g}min-seed0-{suite}")


def evaluate_best_cells(dataset, output_dir, results_dir, cells, suites=FINAL_SUITES,
                        verbose=1, data_dir=None):
    """Evaluate each method's best cell (`best_cells`, seed 0) under each of `suites` on
    the whole test split, in the original file order where the dataset has one.

    A report already written is read, not redone; an interrupted evaluation resumes
    from its batches (checkpointed in the run folder, `final-<suite>-checkpoints`,
    removed once the report is written). Reports go to `final_report_dir`, written as
    `tools/evaluate.py` writes its folder (`evaluation.save_evaluation`).
    """
    from keras_sgn import evaluation
    from keras_sgn.evaluation import sources

    order = "original" if dataset in _ORIGINAL_ORDER else "stored"
    for method, minutes in best_cells(cells).items():
        folder = run_dir(output_dir, method, minutes, 0)
        todo = [suite for suite in suites if not os.path.exists(
            os.path.join(final_report_dir(results_dir, method, minutes, suite), "report.json"))]
        if not todo:
            continue
        source = sources.resolve_model(run_dir=folder)
        model = sources.load(source)  # once per cell, for all its suites
        _, norm, epsilon = sources.resolve_threat_model(source, dataset)
        for suite in todo:
            target = final_report_dir(results_dir, method, minutes, suite)
            if verbose:
                print(f"[budgets] final: {method} {minutes:g} min, seed 0, {suite} on the "
                      "whole test split", flush=True)
            checkpoint_dir = os.path.join(folder, f"final-{suite}-checkpoints")
            report = evaluation.evaluate_robustness(
                model, dataset, epsilon, norm, attacks=suite, order=order,
                run_sanity_checks=suite == "standard", verbose=bool(verbose),
                data_dir=data_dir, model_label=source.label, checkpoint_dir=checkpoint_dir)
            evaluation.save_evaluation(report, target)
            evaluation.checkpoints.delete_checkpoints(checkpoint_dir)  # the report holds it


def read_final(results_dir, cells):
    """`{method: {"budget_minutes", "suites": {suite: {clean_accuracy, robust_accuracy,
    per_attack, n_examples}}}}` of the final reports written for the current best cells."""
    final = {}
    for method, minutes in best_cells(cells).items():
        suites = {}
        for suite in FINAL_SUITES:
            path = os.path.join(final_report_dir(results_dir, method, minutes, suite),
                                "report.json")
            if os.path.exists(path):
                report = io_utils.read_json_object(
                    path, "Delete its folder and rerun with --final_evaluations.")
                suites[suite] = {key: report[key] for key in (
                    "clean_accuracy", "robust_accuracy", "per_attack", "n_examples")}
        if suites:
            final[method] = {"budget_minutes": minutes, "seed": 0, "suites": suites}
    return final


def study(dataset="fashion_mnist", methods=DEFAULT_ENTRIES, output_dir=None,
          results_dir=None, budgets=BUDGET_MINUTES, two_seed=TWO_SEED_MINUTES,
          reference_budgets=REFERENCE_MINUTES, n_test=2000, reference_run=None,
          train=True, verbose=1, seeds=None, final_evaluations=False, **fields):
    """Plan, train (resuming whatever is unfinished), and write `results.json`,
    `results.md` and `robust_vs_time.png` to `results_dir` after every run.

    Args:
        reference_run: the run folder of converged PGD-AT (its `summary.json`
            gives the reference level); None: the reference method's largest
            finished budget stands in, and the outputs say so.
        train: False only writes the results of the runs already finished.
        final_evaluations: then evaluate each method's best cell on the whole test
            split (`evaluate_best_cells`; resumable, a finished report is kept).
        seeds: only the cells of these seeds (see `plan`); None: all.
        fields: other `TrainConfig` fields of every run (model, epsilon, ...).
    """
    output_dir = output_dir or os.path.join("runs", "reproduce", f"{dataset}-budgets")
    results_dir = results_dir or output_dir
    if not plan(methods, dict.fromkeys(methods, 1.0), budgets, two_seed, reference_budgets,
                seeds=seeds):  # before any calibration
        raise ArgumentError(
            f"seeds={list(seeds)} selects none of the study's cells: seed 0 runs at every "
            f"budget, seed 1 only at the two-seed budgets {list(two_seed)}. Received: "
            f"seeds={list(seeds)}, budgets={list(budgets)}. Give --seeds=0, or leave it out.")
    probe = training.TrainConfig(dataset=dataset, verbose=0, **{
        k: v for k, v in fields.items() if v is not None}).resolved()
    steps = sgn_data.info(dataset).num_examples["train"] // probe.batch_size
    epoch_seconds = load_or_calibrate(results_dir, dataset, methods, steps, **{
        k: v for k, v in fields.items() if v is not None})
    cells = plan(methods, epoch_seconds, budgets, two_seed, reference_budgets, seeds=seeds)
    configs = [run_config(dataset, output_dir, m, b, s, e, n_test, verbose=verbose, **fields)
               for m, b, s, e in cells]
    for config in configs:
        config.resolved()  # every setting checked before any training
    finished = []
    for (method, minutes, seed, epochs), config in zip(cells, configs):
        run = read_run(config.output_dir)
        if run is None and train:
            if verbose:
                print(f"[budgets] {method} {minutes:g} min ({epochs} epochs), seed {seed}",
                      flush=True)
            training.train(config)
            run = read_run(config.output_dir)
        finished.append((method, minutes, seed, run))
        write_results(results_dir, finished, dataset, n_test, epoch_seconds, reference_run)
    if final_evaluations:
        evaluate_best_cells(dataset, output_dir, results_dir, finished, verbose=verbose,
                            data_dir=fields.get("data_dir"))
    return write_results(results_dir, finished, dataset, n_test, epoch_seconds, reference_run)


#: The attacks of the study's test protocol (`quick`), in order.
TEST_ATTACKS = ("apgd-ce", "apgd-t")


def reference_report_level(path, dataset, n_test):
    """`(robust accuracy, source)` of a `tools/evaluate.py` report (`report.json` or
    its folder) of converged PGD-AT, refused unless measured like the study's runs:
    `quick` on the first `n_test` test images in the study's order."""
    if os.path.isdir(path):
        path = os.path.join(path, "report.json")
    with open(path, encoding="utf-8") as f:
        report = json.load(f)
    order = "original" if dataset in _ORIGINAL_ORDER else "stored"
    measured = {"dataset": report.get("dataset"), "n_examples": report.get("n_examples"),
                "order": report.get("order", "stored"),
                "attacks": tuple(a["name"] for a in report["protocol"]["attacks"])}
    wanted = {"dataset": dataset, "n_examples": n_test, "order": order, "attacks": TEST_ATTACKS}
    differs = {k: measured[k] for k in wanted if measured[k] != wanted[k]}
    if differs:
        raise ArgumentError(
            f"the reference report {path} was not measured like the study's runs: "
            f"{differs} where the runs have { {k: wanted[k] for k in differs} }. "
            f"Evaluate the reference with --attacks=quick --n_examples={n_test} "
            f"--order={order}. Received: --reference_run={path}.")
    return report["robust_accuracy"], f"quick on the same test images, {path}"


def reference_level(reference_run, dataset, n_test):
    """`(robust accuracy, source)` of converged PGD-AT: an evaluation report (checked
    to match the runs' test protocol) or a finished run folder (its final test, which
    may have used other test images: the source says so); `(None, None)` if absent."""
    if reference_run is None:
        return None, None
    if reference_run.endswith(".json") or os.path.exists(
            os.path.join(reference_run, "report.json")):
        return reference_report_level(reference_run, dataset, n_test)
    run = read_run(reference_run)
    if run is None:
        return None, None
    config = {}
    if os.path.exists(os.path.join(reference_run, "config.json")):
        with open(os.path.join(reference_run, "config.json"), encoding="utf-8") as f:
            config = json.load(f)
    same = config.get("n_test") == n_test and config.get("test_order") == "original"
    return run["summary"]["robust_accuracy"], (
        f"final test of {reference_run}" + ("" if same else
                                             " (on its own test images, not the runs')"))


def write_results(results_dir, cells, dataset, n_test, epoch_seconds, reference_run=None):
    fronts = front(cells, epoch_seconds)
    reference, source = reference_level(reference_run, dataset, n_test)
    if reference is None and fronts.get(REFERENCE_METHOD):
        reference = fronts[REFERENCE_METHOD][-1]["robust_accuracy"]
        source = (f"stand-in: {REFERENCE_METHOD} at its largest finished budget, "
                  f"{fronts[REFERENCE_METHOD][-1]['budget_minutes']:g} min")
    verdicts = verdict(fronts, reference) if reference is not None else {}
    order = "original file order" if dataset in _ORIGINAL_ORDER else "stored order"
    settings = {"dataset": dataset, "n_test": n_test, "epoch_seconds": epoch_seconds,
                "entries": list(fronts),
                "reference_source": source,
                "protocol": (f"final test of each run's best-validation epoch: quick (APGD-CE, "
                             f"APGD-T), the first {n_test} test images in {order}; "
                             "time = epochs x the calibrated epoch time of the entry "
                             "(calibration.json); the measured CPU and wall seconds of each "
                             "run (pinned to one core, validation excluded) beside it")}
    final = read_final(results_dir, cells)
    os.makedirs(results_dir, exist_ok=True)
    io_utils.atomic_write_json(os.path.join(results_dir, "results.json"), {
        "settings": settings, "reference_robust_accuracy": reference, "fronts": fronts,
        "verdict": verdicts, "final": final})
    io_utils.atomic_write_text(os.path.join(results_dir, "results.md"),
                               markdown(fronts, verdicts, reference, settings, final))
    if fronts:
        label = (None if not _stand_in(source) else
                 f"{REFERENCE_METHOD} at its largest budget so far ({reference:.3f}; "
                 "stand-in until converged)")
        plot(fronts, reference, os.path.join(results_dir, "robust_vs_time.png"),
             f"{dataset}: test robust accuracy against training time (quick, first {n_test} "
             "test images); line: mean over seeds, band: min-max", reference_label=label)
    return {"fronts": fronts, "verdict": verdicts, "reference": reference}
