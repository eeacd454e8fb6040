"""Reproduce the SGN claims in miniature: every method, several seeds, one budget.

The seed paper claims that self-gradient networks reach a robust solution at
least 10x faster than adversarial training and gain about 10 points of robust
accuracy. `reproduce()` measures both on data available here: it trains each
method for the same number of epochs (Free-AT for epochs / replays, its
published equivalent), evaluates clean and robust accuracy (worst case of PGD
with CE and CW-margin losses, and each alone) after every epoch, and records
wall time spent training (evaluation time excluded).
"""

import dataclasses
import os
import statistics
import time

import keras

from keras_sgn import data as sgn_data
from keras_sgn import evaluation
from keras_sgn import io_utils
from keras_sgn import training

ALL_METHODS = ("standard", "fast", "pgd", "free", "trades", "sgn", "sgn-pgd")
SINGLE_STEP = ("fast", "sgn", "free")


class _EpochEvaluator(keras.callbacks.Callback):
    """Evaluates after each epoch; keeps training wall time apart from evaluation."""

    def __init__(self, dataset, epsilon, norm, steps, seed):
        super().__init__()
        self.dataset, self.epsilon, self.norm, self.steps, self.seed = (
            dataset, epsilon, norm, steps, seed)
        self.curve = []
        self.train_seconds = 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.train_seconds += time.perf_counter() - self._start
        report = evaluation.evaluate(self.model, self.dataset, self.epsilon, self.norm,
                                     steps=self.steps, seed=self.seed, verbose=False)
        ce, cw = report["per_attack"].values()
        self.curve.append({"epoch": epoch + 1, "train_seconds": round(self.train_seconds, 3),
                           "clean_accuracy": report["clean_accuracy"],
                           "robust_accuracy": report["robust_accuracy"],
                           "pgd_accuracy": ce, "cw_accuracy": cw})


def run_method(config, test_steps=20, verbose=0):
    """Train one method as `config` says; return its per-epoch curve."""
    config = config.resolved()
    info = sgn_data.info(config.dataset)
    keras.utils.set_random_seed(config.seed)
    epochs = config.epochs
    if config.method == "free":
        epochs = max(1, round(config.epochs / config.free_replays))
    train_ds = sgn_data.load(config.dataset, "train", config.batch_size,
                             data_dir=config.data_dir, seed=config.seed,
                             n_examples=config.n_train)
    test_ds = sgn_data.load(config.dataset, "test", 256, data_dir=config.data_dir,
                            n_examples=config.n_eval)
    steps_per_epoch = sum(1 for _ in train_ds)
    model = training.compile_for_training(training.build_model(config, info), config,
                                          steps_per_epoch, epochs=epochs)
    evaluator = _EpochEvaluator(test_ds, config.epsilon, config.norm, test_steps, config.seed)
    model.fit(train_ds, epochs=epochs, callbacks=[evaluator], verbose=verbose, shuffle=False)
    return {"method": config.method, "seed": config.seed, "epochs": epochs,
            "curve": evaluator.curve}


def _mean_std(values):
    values = [v for v in values if v is not None]
    if not values:
        return None, None
    return statistics.mean(values), (statistics.pstdev(values) if len(values) > 1 else 0.0)


def catastrophic_overfitting(curve, drop=0.2):
    """The epoch at which robust accuracy collapsed (fell by more than `drop`
    from its best, to under half of it, while clean accuracy held), or None."""
    best = 0.0
    for point in curve:
        best = max(best, point["robust_accuracy"])
        if (best - point["robust_accuracy"] > drop and point["robust_accuracy"] < best / 2
                and point["clean_accuracy"] > 0.5):
            return point["epoch"]
    return None


def analyse(runs):
    """Per method: final accuracies (mean, std over seeds), difference to PGD-AT,
    wall time to reach PGD-AT's final robust accuracy, collapse detection."""
    by_method = {}
    for run in runs:
        by_method.setdefault(run["method"], []).append(run)
    target = None
    if "pgd" in by_method:
        target, _ = _mean_std([r["curve"][-1]["robust_accuracy"] for r in by_method["pgd"]])
    summary = {}
    for method, method_runs in by_method.items():
        finals = [r["curve"][-1] for r in method_runs]
        times_to_target, epochs_to_target = [], []
        for r in method_runs:
            hit = next((p for p in r["curve"]
                        if target is not None and p["robust_accuracy"] >= target), None)
            times_to_target.append(hit and hit["train_seconds"])
            epochs_to_target.append(hit and hit["epoch"])
        entry = {"seeds": [r["seed"] for r in method_runs], "epochs": method_runs[0]["epochs"]}
        for key in ("clean_accuracy", "robust_accuracy", "pgd_accuracy", "cw_accuracy",
                    "train_seconds"):
            entry[key], entry[key + "_std"] = _mean_std([f[key] for f in finals])
        entry["time_to_target"], entry["time_to_target_std"] = _mean_std(times_to_target)
        # Epochs are immune to machine noise; wall time is what users pay.
        entry["epochs_to_target"], entry["epochs_to_target_std"] = _mean_std(epochs_to_target)
        entry["reached_target"] = sum(t is not None for t in times_to_target)
        entry["collapsed_at_epoch"] = [catastrophic_overfitting(r["curve"]) for r in method_runs]
        summary[method] = entry
    if "pgd" in summary:
        pgd = summary["pgd"]
        for entry in summary.values():
            entry["robust_minus_pgd"] = entry["robust_accuracy"] - pgd["robust_accuracy"]
            entry["speedup_to_target_vs_pgd"] = (
                pgd["time_to_target"] / entry["time_to_target"]
                if entry["time_to_target"] and pgd["time_to_target"] else None)
    return {"target_robust_accuracy": target, "methods": summary}


def markdown(analysis):
    fmt = lambda v, s: "-" if v is None else f"{v:.3f} ± {s:.3f}"  # noqa: E731
    lines = [f"Target (PGD-AT final robust accuracy): "
             f"{analysis['target_robust_accuracy'] or float('nan'):.3f}", "",
             "| method | clean | robust (worst) | PGD | CW | train s | epochs to target | "
             "s to target | reached | robust − PGD-AT | speed-up to target | collapse |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for method, e in analysis["methods"].items():
        speedup = e.get("speedup_to_target_vs_pgd")
        collapses = [c for c in e["collapsed_at_epoch"] if c]
        lines.append(
            f"| `{method}` | {fmt(e['clean_accuracy'], e['clean_accuracy_std'])} | "
            f"{fmt(e['robust_accuracy'], e['robust_accuracy_std'])} | "
            f"{fmt(e['pgd_accuracy'], e['pgd_accuracy_std'])} | "
            f"{fmt(e['cw_accuracy'], e['cw_accuracy_std'])} | {e['train_seconds']:.1f} | "
            f"{fmt(e['epochs_to_target'], e['epochs_to_target_std'])} | "
            f"{fmt(e['time_to_target'], e['time_to_target_std'])} | "
            f"{e['reached_target']}/{len(e['seeds'])} | "
            f"{e.get('robust_minus_pgd', 0.0):+.3f} | "
            f"{'-' if speedup is None else f'{speedup:.2f}x'} | "
            f"{'epochs ' + str(collapses) if collapses else 'none'} |")
    return "\n".join(lines) + "\n"


def plot(runs, path_prefix):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = {}
    for x_key, suffix, label in (("epoch", "epochs", "epoch"),
                                 ("train_seconds", "time", "training wall time (s)")):
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for run in runs:
            color = colors.setdefault(run["method"], f"C{len(colors)}")
            ax.plot([p[x_key] for p in run["curve"]],
                    [p["robust_accuracy"] for p in run["curve"]], color=color, alpha=0.8,
                    label=run["method"] if run["seed"] == runs[0]["seed"] else None)
        ax.set_xlabel(label)
        ax.set_ylabel("robust accuracy (worst of PGD CE/CW)")
        ax.legend()
        fig.tight_layout()
        fig.savefig(f"{path_prefix}robust_vs_{suffix}.png", dpi=100)
        plt.close(fig)


def reproduce(dataset="digits", methods=ALL_METHODS, seeds=(0, 1, 2), output_dir="runs/reproduce",
              data_dir=None, epochs=None, n_train=None, n_eval=None, test_steps=20,
              attack_steps=None, verbose=True):
    """Train every method with every seed and write `results.json`, `results.md`
    and `robust_vs_epochs.png` / `robust_vs_time.png` to `output_dir`."""
    configs = []
    for seed in seeds:
        for method in methods:
            config = training.TrainConfig(dataset=dataset, data_dir=data_dir, method=method,
                                          epochs=epochs, seed=seed, n_train=n_train,
                                          n_eval=n_eval, attack_steps=attack_steps, verbose=0)
            configs.append(config.resolved())  # every config is checked before any training
    runs = []
    for config in configs:
        start = time.time()
        runs.append(run_method(config, test_steps=test_steps))
        if verbose:
            last = runs[-1]["curve"][-1]
            print(f"{config.method:>9} seed {config.seed}: clean {last['clean_accuracy']:.3f} "
                  f"robust {last['robust_accuracy']:.3f} ({time.time() - start:.0f} s)", flush=True)
    analysis = analyse(runs)
    settings = {"dataset": dataset, "methods": list(methods), "seeds": list(seeds),
                "test_steps": test_steps, "config": dataclasses.asdict(configs[0])}
    os.makedirs(output_dir, exist_ok=True)
    io_utils.atomic_write_json(os.path.join(output_dir, "results.json"),
                               {"settings": settings, "analysis": analysis, "runs": runs})
    io_utils.atomic_write_text(os.path.join(output_dir, "results.md"), markdown(analysis))
    plot(runs, os.path.join(output_dir, ""))
    return analysis
