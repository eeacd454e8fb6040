"""The reproduction's results as Markdown: the rules, the protocols, one table.

Every number in the table is a value of `results.json` (`analysis.methods`),
rounded to 3 decimals (accuracies, epochs) or 1 decimal (seconds)."""

from keras_sgn import reporting


def _pm(mean, std, digits=3):
    """`mean ± std`, or `-` when there is no value."""
    if mean is None:
        return "-"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def _accuracy(value):
    return "-" if value is None else f"{value:.3f}"


def _collapse_cell(entry):
    hits = [f"seed {r['seed']} @ epoch {r['collapsed_at_epoch']}" for r in entry["runs"]
            if r["collapsed_at_epoch"] is not None]
    return "; ".join(hits) if hits else "none"


def _best_model_cell(entry):
    report = entry.get("best_model_test")
    if not report:
        return "-"
    sanity = report.get("sanity_passed")
    note = "" if sanity is None else (" (sanity checks passed)" if sanity
                                      else " (sanity checks FAILED)")
    return (f"seed {entry['best_seed']}: {_accuracy(report['clean_accuracy'])} / "
            f"{_accuracy(report['robust_accuracy'])}{note}")


def header(final_suite="quick", best_suite="standard", reference="pgd"):
    """The table's column titles, naming the suites and the reference."""
    return ("method", "seeds", "val robust, best epoch", f"clean (test, {final_suite})",
            f"robust (test, {final_suite})", f"{best_suite} on best model: clean / robust",
            "time to target (s)", "epochs to target", "reached target",
            f"speed-up vs {reference}", "collapse")


def row(method, entry):
    """One method's cells (see `header`)."""
    speedup = entry.get("speedup_vs_reference")
    return [f"`{method}`", str(len(entry["seeds"])),
            _pm(entry["best_val_robust_accuracy"], entry["best_val_robust_accuracy_std"]),
            _pm(entry["final_clean_accuracy"], entry["final_clean_accuracy_std"]),
            _pm(entry["final_robust_accuracy"], entry["final_robust_accuracy_std"]),
            _best_model_cell(entry),
            _pm(entry["time_to_target_seconds"], entry["time_to_target_seconds_std"], 1),
            _pm(entry["epochs_to_target"], entry["epochs_to_target_std"], 1),
            f"{entry['reached_target']}/{len(entry['seeds'])}",
            "-" if speedup is None else f"{speedup:.2f}x",
            _collapse_cell(entry)]


def _protocol_lines(analysis, settings):
    rules = analysis["rules"]
    target = analysis["target_robust_accuracy"]
    target_text = "-" if target is None else f"{target:.3f}"
    lines = [
        f"- **Target** (validation robust accuracy): {target_text} = {rules['target']} "
        f"({analysis['reference_seeds']} seed(s)).",
        f"- **Time to target**: {rules['time_to_target']}.",
        f"- **Speed-up**: {rules['speed_up']}.",
        f"- **Collapse**: {rules['collapse']}.",
        f"- **Best model**: {rules['best_model']}.",
    ]
    if settings:
        lines[:0] = [f"- **Validation curves** (per epoch): {settings['validation']}."]
        lines += [f"- **Final numbers** on the test split: `{settings['final_suite']}` = "
                  f"{settings['final_suite_text']} on every run's best model; "
                  f"`{settings['best_suite']}` = {settings['best_suite_text']} on each "
                  f"method's best seed; {settings['test_examples']}.",
                  f"- Training budget: {settings['budget']}.",
                  f"- {settings['provenance']}."]
    return lines


def markdown(analysis, settings=None):
    """`results.md`: a title, the rules and protocols, and the table.

    `settings` (optional): the `describe` dict of `keras_sgn.experiments.reproduce`
    (title, validation, suites, budget, provenance); without it only the rules
    and a generic header are written."""
    settings = settings or None
    title = settings["title"] if settings else "Reproduction"
    columns = (header(settings["final_suite"], settings["best_suite"], analysis["reference"])
               if settings else header(reference=analysis["reference"]))
    # The study's order (results.json stores the methods sorted by name).
    order = [m for m in (settings or {}).get("methods", ()) if m in analysis["methods"]]
    order += [m for m in analysis["methods"] if m not in order]
    rows = [row(method, analysis["methods"][method]) for method in order]
    return "\n".join([f"# {title}", "", *_protocol_lines(analysis, settings), "",
                      reporting.tables.markdown_table(columns, rows), ""])
