"""What the reproduction's runs mean: time to target, speed-ups, collapse.

Everything here reads run records (dicts, as `keras_sgn.experiments.runs`
writes them) and computes numbers; nothing trains or evaluates. Each rule is
also written out as text (`RULES`) so the outputs say how a number was made.

A run record has `method`, `seed`, `epochs` and `curve`, a list of per-epoch
points with `epoch`, `train_seconds` (cumulative training wall time,
evaluation excluded), `clean_accuracy` and `robust_accuracy` measured on the
VALIDATION split. Optionally `final` (the best-validation-epoch model on the
test split) and `best_model_test` (the stronger suite on the method's best
seed). The test split never enters the time-to-target or collapse numbers.
"""

import statistics

# The reference every method is compared with: PGD adversarial training.
REFERENCE = "pgd"
# A robust accuracy that fell by more than this from its best has collapsed
# (with the other conditions of `catastrophic_overfitting`).
COLLAPSE_DROP = 0.2
# Accuracies are ratios of counts: a difference under this is a rounding error.
_TOLERANCE = 1e-9

RULES = {
    "target": (f"the mean over the {REFERENCE!r} (PGD-AT) seeds of each seed's best per-epoch "
               "validation robust accuracy"),
    "time_to_target": ("cumulative training wall time (evaluation excluded; the first epoch "
                       "includes the one-off graph tracing) and epochs until "
                       "the validation robust accuracy first reaches the target AND stays there "
                       "(>= target at every later epoch); not reached if the last epoch is "
                       "below the target. Method values: mean over the seeds that reached it "
                       "(the 'reached' count says how many)"),
    "speed_up": (f"the {REFERENCE!r} mean time to target divided by the method's mean time to "
                 "target (both over the seeds that reached it)"),
    "collapse": (f"catastrophic overfitting: at some epoch the validation robust accuracy is "
                 f"more than {COLLAPSE_DROP} below its best so far and under half of it, while "
                 "the clean validation accuracy stays above 0.5"),
    "best_model": ("per run, the model of the epoch with the best validation robust accuracy "
                   "(the first such epoch on ties); per method, the best seed is the run with "
                   "the best validation robust accuracy"),
}


def catastrophic_overfitting(curve, drop=COLLAPSE_DROP):
    """The epoch at which robust accuracy collapsed (fell by more than `drop`
    from its best, to under half of it, while clean accuracy held), or None."""
    best = 0.0
    for point in curve:
        best = max(best, point["robust_accuracy"])
        if (best - point["robust_accuracy"] > drop and point["robust_accuracy"] < best / 2
                and point["clean_accuracy"] > 0.5):
            return point["epoch"]
    return None


def time_to_target(curve, target):
    """The first point of `curve` from which the robust accuracy is >= `target`
    at every later epoch (it reaches the target and stays there), or None.

    A curve that crosses the target, falls back and crosses again counts from
    the last crossing; one whose last epoch is below the target never reached it.
    """
    if target is None:
        return None
    hit = None
    for point in curve:
        if point["robust_accuracy"] >= target - _TOLERANCE:
            hit = hit or point
        else:
            hit = None
    return hit


def first_crossing(curve, target):
    """The first point whose robust accuracy is >= `target` (kept for
    comparison with the stays-there rule: it is what a noisy curve crosses
    first, not where it settles), or None."""
    if target is None:
        return None
    return next((p for p in curve if p["robust_accuracy"] >= target - _TOLERANCE), None)


def best_point(curve):
    """The point with the best validation robust accuracy (the first on ties)."""
    return max(curve, key=lambda p: (p["robust_accuracy"], -p["epoch"]))


def best_run(method_runs):
    """The run with the best validation robust accuracy (the first on ties)."""
    return max(method_runs, key=lambda r: best_point(r["curve"])["robust_accuracy"])


def mean_std(values):
    """`(mean, population std)` of the values that are not None; `(None, None)` if none."""
    values = [v for v in values if v is not None]
    if not values:
        return None, None
    return statistics.mean(values), (statistics.pstdev(values) if len(values) > 1 else 0.0)


def reference_target(reference_runs):
    """The target: mean over the reference runs of each run's best validation
    robust accuracy (None without reference runs)."""
    if not reference_runs:
        return None
    return mean_std([best_point(r["curve"])["robust_accuracy"] for r in reference_runs])[0]


def _run_summary(run, target, drop):
    best = best_point(run["curve"])
    hit, first = time_to_target(run["curve"], target), first_crossing(run["curve"], target)
    final = run.get("final") or {}
    return {
        "seed": run["seed"],
        "epochs": run["epochs"],
        "train_seconds": run["curve"][-1]["train_seconds"],
        "best_epoch": best["epoch"],
        "best_val_robust_accuracy": best["robust_accuracy"],
        "best_val_clean_accuracy": best["clean_accuracy"],
        "time_to_target_seconds": hit and hit["train_seconds"],
        "epochs_to_target": hit and hit["epoch"],
        "first_crossing_epoch": first and first["epoch"],
        "collapsed_at_epoch": catastrophic_overfitting(run["curve"], drop),
        "final_clean_accuracy": final.get("clean_accuracy"),
        "final_robust_accuracy": final.get("robust_accuracy"),
    }


def _with_mean_std(entry, key, values):
    entry[key], entry[key + "_std"] = mean_std(values)


def summarise_method(method_runs, target, drop=COLLAPSE_DROP):
    """One method's numbers: per run, and mean / std over its seeds."""
    per_run = [_run_summary(r, target, drop) for r in method_runs]
    entry = {"seeds": [r["seed"] for r in per_run], "epochs": per_run[0]["epochs"],
             "runs": per_run}
    for key in ("best_val_robust_accuracy", "train_seconds", "time_to_target_seconds",
                "epochs_to_target", "final_clean_accuracy", "final_robust_accuracy"):
        _with_mean_std(entry, key, [r[key] for r in per_run])
    entry["reached_target"] = sum(r["time_to_target_seconds"] is not None for r in per_run)
    entry["collapsed"] = sum(r["collapsed_at_epoch"] is not None for r in per_run)
    best = best_run(method_runs)
    entry["best_seed"] = best["seed"]
    entry["best_model_test"] = best.get("best_model_test")
    finals = [r["final"] for r in method_runs if r.get("final")]
    entry["final_protocol"] = finals[0]["protocol_label"] if finals else None
    return entry


def analyse(runs, reference=REFERENCE, drop=COLLAPSE_DROP):
    """Per method: validation curves summarised (best, time to target,
    collapse), final test numbers, and the speed-up to target over `reference`.

    Returns `{"target_robust_accuracy", "reference", "rules", "methods"}`;
    `methods[m]` holds mean / `_std` pairs over seeds and a `runs` list.
    """
    by_method = {}
    for run in runs:
        by_method.setdefault(run["method"], []).append(run)
    target = reference_target(by_method.get(reference))
    methods = {method: summarise_method(method_runs, target, drop)
               for method, method_runs in by_method.items()}
    reference_time = (methods.get(reference) or {}).get("time_to_target_seconds")
    for entry in methods.values():
        own = entry["time_to_target_seconds"]
        entry["speedup_vs_reference"] = reference_time / own if reference_time and own else None
    rules = dict(RULES, collapse=RULES["collapse"].replace(str(COLLAPSE_DROP), str(drop)))
    return {"target_robust_accuracy": target, "reference": reference,
            "reference_seeds": len(by_method.get(reference, ())), "rules": rules,
            "methods": methods}
