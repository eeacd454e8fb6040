"""Collect the study's evaluation reports into results.json (README.md quotes it).

Reads MODEL/RUN/report.json and MODEL/RUN/per_example.json beside this file
(written by evaluate_three_ways.py) and writes results.json: per model, each
run's clean and robust accuracy and seconds, and the per-example worst case over
all its runs (robust only if correct and no attack of any run fooled it).

    python docs/reproduce/fashion_mnist-feedback-at-inference/results.py
"""

import json
import os

HERE = os.path.dirname(os.path.abspath(__file__))
MODELS = {
    "control": "sgn, feedback_at_inference off (the control)",
    "feedback": "sgn, feedback_at_inference on",
    "feedback-off": "the feedback model's weights with the feedback switched off (plain network)",
}
RUNS = {
    "pgd-cw-constant": "PGD-20 + CW-20, feedback held constant under differentiation (naive)",
    "pgd-cw": "PGD-20 + CW-20, gradient through the feedback",
    "quick": "quick (APGD-CE + APGD-T, 100 steps), gradient through the feedback",
    "square": "Square (gradient-free)",
}


def _read(path):
    with open(path) as f:
        return json.load(f)


def collect():
    results = {"models": {}, "runs": RUNS,
               "worst_case_means": "per example, over every run of the model: robust only if "
                                   "correctly classified and no attack of any run fooled it"}
    for model, description in MODELS.items():
        runs, robust_masks, clean_mask = {}, [], None
        for run in RUNS:
            folder = os.path.join(HERE, model, run)
            if not os.path.exists(os.path.join(folder, "report.json")):
                continue
            report = _read(os.path.join(folder, "report.json"))
            outcomes = _read(os.path.join(folder, "per_example.json"))
            if clean_mask is None:
                clean_mask = outcomes["clean"]
            elif outcomes["clean"] != clean_mask:
                raise ValueError(f"{model}/{run}: another clean outcome than the other runs")
            robust_masks.append(outcomes["robust"])
            runs[run] = {
                "clean_accuracy": report["clean_accuracy"],
                "robust_accuracy": report["robust_accuracy"],
                "per_attack": report["per_attack"],
                "attack_seconds": report["attack_seconds"],
                "seconds": report["seconds"],
                "n_examples": report["n_examples"],
                "through_feedback_at_inference":
                    report["protocol"]["through_feedback_at_inference"],
                "attacks": report["protocol"]["attacks"],
                "sanity_passed": report.get("sanity_passed"),
                "model": report["model"],
            }
        if not runs:
            continue
        n = len(clean_mask)
        worst = sum(all(mask[i] == "1" for mask in robust_masks) for i in range(n))
        masks = dict(zip(runs, robust_masks))
        results["models"][model] = {
            "description": description,
            "clean_accuracy": clean_mask.count("1") / n,
            "n_examples": n,
            "runs": runs,
            "worst_case": {"robust_accuracy": worst / n, "over_runs": list(runs)},
        }
        if "pgd-cw-constant" in masks and "pgd-cw" in masks:
            naive, through = masks["pgd-cw-constant"], masks["pgd-cw"]
            results["models"][model]["naive_vs_through"] = {
                "robust_only_under_naive": sum(a == "1" and b == "0"
                                               for a, b in zip(naive, through)),
                "robust_only_through_feedback": sum(a == "0" and b == "1"
                                                    for a, b in zip(naive, through)),
                "means": "test images the PGD-20 + CW-20 run with the feedback held constant "
                         "failed to fool but the run through the feedback fooled, and the "
                         "reverse"}
    return results


def markdown(results):
    """The README's table: robust accuracy per model and way of attacking (percent)."""
    columns = ["pgd-cw-constant", "pgd-cw", "quick", "square"]
    lines = ["| model | clean | PGD-20 + CW-20, feedback constant (naive) | PGD-20 + CW-20, "
             "through the feedback | quick | Square (5,000 queries) | worst case |",
             "|---|---|---|---|---|---|---|"]
    for model, entry in results["models"].items():
        cells = [f"{100 * entry['runs'][run]['robust_accuracy']:.1f}" if run in entry["runs"]
                 else "-" for run in columns]
        lines.append(f"| `{model}` | {100 * entry['clean_accuracy']:.1f} | " + " | ".join(cells)
                     + f" | **{100 * entry['worst_case']['robust_accuracy']:.1f}** |")
    return "\n".join(lines)


if __name__ == "__main__":
    out = os.path.join(HERE, "results.json")
    results = collect()
    with open(out, "w") as f:
        json.dump(results, f, indent=1, sort_keys=True)
        f.write("\n")
    print(markdown(results))
    print(f"Wrote {out}")
