"""The robustness report a person reads: `report.md`, the accuracy-vs-epsilon
plot, the adversarial-examples grid, and the files of `tools/evaluate.py`
written together.

The numbers come from `keras_sgn.evaluation.evaluate_robustness`; nothing
here measures anything.
"""

import os

from keras_sgn import io_utils
from keras_sgn.reporting.adversarial_examples import plot_adversarial_examples
from keras_sgn.reporting.plots import model_title, new_figure, save_figure
from keras_sgn.reporting.tables import markdown_table


def _header(report, title):
    protocol = report["protocol"]
    lines = [f"# {title}", ""]
    lines += [f"- {key}: `{report[key]}`" for key in ("model", "dataset", "split", "order")
              if key in report]
    feedback = ("yes" if protocol["through_feedback_at_inference"] else "no (model has none)")
    lines += [
        f"- threat model: {protocol['norm']}, epsilon = {protocol['epsilon']:.6g}",
        f"- examples: {report['n_examples']}; BatchNorm {protocol['batchnorm']}",
        f"- attacked through inference-time feedback: {feedback}",
    ]
    if report.get("provenance"):
        lines.append(f"- software: {software_line(report['provenance'])}")
    return "\n".join(lines)


def software_line(provenance):
    """`keras-sgn 0.1.0 (git 6071cc0, modified), TensorFlow 2.21.0, ...` from a
    `keras_sgn.provenance.provenance()` dict."""
    commit = provenance.get("git_commit")
    where = (f" (git {commit[:12]}{', modified' if provenance.get('git_dirty') else ''})"
             if commit else "")
    names = {"tensorflow": "TensorFlow", "keras": "Keras", "numpy": "NumPy",
             "python": "Python", "huggingface_hub": "huggingface_hub"}
    libraries = [f"{label} {provenance[key]}" for key, label in names.items()
                 if provenance.get(key)]
    return ", ".join([f"keras-sgn {provenance.get('keras_sgn')}{where}", *libraries])


def _accuracy_table(report):
    rows = [["clean", report["clean_accuracy"]]]
    rows += [[label, value] for label, value in report["per_attack"].items()]
    rows.append(["**worst case over all attacks**", f"**{report['robust_accuracy']:.4f}**"])
    return (markdown_table(["", "accuracy"], rows) + "\n\n"
            f"Per-attack rows: {report['protocol']['per_attack_means']}.")


def _sanity_section(report):
    verdict = "all passed" if report["sanity_passed"] else "SOME FAILED"
    rows = []
    for check in report["sanity_checks"]:
        numbers = ", ".join(f"{k}={v}" for k, v in check.items()
                            if k not in ("name", "passed", "detail"))
        rows.append([check["name"], "pass" if check["passed"] else "**FAIL**", numbers])
    curve = [[f"{p['epsilon']:.4g}", p["accuracy"]] for p in report["accuracy_vs_epsilon"]]
    return "\n\n".join([
        f"## Sanity checks ({report['n_sanity_examples']} examples): {verdict}",
        markdown_table(["check", "result", "numbers"], rows),
        "## Accuracy vs epsilon (PGD, CE and CW margin, worst case)",
        markdown_table(["epsilon", "accuracy"], curve),
    ])


def markdown_report(report, title="Robustness report"):
    """`report.md`: the numbers, the protocol and the sanity checks as tables."""
    sections = [_header(report, title), _accuracy_table(report)]
    if "sanity_checks" in report:
        sections.append(_sanity_section(report))
    return "\n\n".join(sections) + "\n"


def _curve_title(report):
    protocol = report["protocol"]
    subject = " on ".join(part for part in (report.get("model") and model_title(report["model"]),
                                            report.get("dataset")) if part)
    steps = report.get("sanity_steps")
    attack = f"PGD-{steps}" if steps else "PGD"
    return (f"Accuracy vs epsilon{': ' + subject if subject else ''} ({protocol['norm']})\n"
            f"{attack}, CE and CW margin, worst case per example, "
            f"{report.get('n_sanity_examples', '?')} images")


def suite_label(protocol):
    """How a report names its attack suite: the attacks' names joined, e.g.
    `apgd-ce + apgd-t` (a `quick` run is not called the full suite)."""
    names = [attack["name"] for attack in protocol.get("attacks", [])]
    return " + ".join(names) if names else "the attack suite"


def accuracy_vs_epsilon_figure(report):
    """The accuracy-vs-epsilon curve of the sanity checks, titled with the
    model, dataset, norm and protocol; the evaluated epsilon is marked, with
    the suite's robust accuracy there. Returns `(figure, axes)`.

    The sweep doubles epsilon up to 8x the evaluated one (the check that a large
    enough radius breaks the model), so a linear axis would squash the useful
    range near the evaluated epsilon into its left quarter: the x axis is
    linear up to the sweep's smallest non-zero radius and logarithmic beyond,
    with a tick at every radius swept."""
    curve, protocol = report["accuracy_vs_epsilon"], report["protocol"]
    fig, ax = new_figure(figsize=(8, 5.5))
    epsilons = [p["epsilon"] for p in curve]
    ax.plot(epsilons, [p["accuracy"] for p in curve], "o-", label="PGD sweep (sanity checks)")
    epsilon = protocol["epsilon"]
    ax.axvline(epsilon, color="gray", ls="--", label=f"evaluated epsilon = {epsilon:.4g}")
    ax.plot([epsilon], [report["robust_accuracy"]], "r*", markersize=14,
            label=(f"robust accuracy, {suite_label(protocol)} on {report['n_examples']} "
                   f"images ({report['robust_accuracy']:.3f})"))
    chance = next((c["chance"] for c in report.get("sanity_checks", []) if "chance" in c), None)
    if chance is not None:
        ax.axhline(chance, color="black", ls=":", lw=1, label=f"chance ({chance:.2g})")
    positive = sorted({e for e in epsilons + [epsilon] if e > 0})
    if positive:
        ax.set_xscale("symlog", linthresh=positive[0], linscale=0.5)
        ax.set_xticks(sorted({0.0, *positive}))
        ax.set_xticklabels([f"{e:.3g}" for e in sorted({0.0, *positive})])
        ax.minorticks_off()
        ax.set_xlim(0, positive[-1] * 1.15)
    ax.set_xlabel(f"epsilon ({protocol['norm']} radius, pixel units in [0, 1]; "
                  "log scale beyond the first radius)")
    ax.set_ylabel("robust accuracy")
    ax.set_ylim(0, 1.02)
    ax.set_title(_curve_title(report))
    ax.grid(alpha=0.3)
    ax.legend()
    return fig, ax


def plot_accuracy_vs_epsilon(report, path):
    """The accuracy-vs-epsilon curve of the sanity checks as a PNG at `path`."""
    fig, _ = accuracy_vs_epsilon_figure(report)
    return save_figure(fig, path)


def write_report(report, output_dir, adversarial_examples=None):
    """Write `report.json`, `report.md`, (with sanity checks) the
    `accuracy_vs_epsilon.png` plot and (given `adversarial_examples`, the
    arrays of `keras_sgn.evaluation.AdversarialExamples.arrays()`) the
    `adversarial_examples.png` grid, each atomically. Returns the file names
    written."""
    os.makedirs(output_dir, exist_ok=True)
    io_utils.atomic_write_json(os.path.join(output_dir, "report.json"), report)
    io_utils.atomic_write_text(os.path.join(output_dir, "report.md"), markdown_report(report))
    written = ["report.json", "report.md"]
    if "accuracy_vs_epsilon" in report:
        plot_accuracy_vs_epsilon(report, os.path.join(output_dir, "accuracy_vs_epsilon.png"))
        written.append("accuracy_vs_epsilon.png")
    if adversarial_examples is not None:
        plot_adversarial_examples(report, adversarial_examples,
                                  os.path.join(output_dir, "adversarial_examples.png"))
        written.append("adversarial_examples.png")
    return written
