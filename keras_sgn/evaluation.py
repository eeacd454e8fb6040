"""Robustness evaluation you can trust: attack suite, worst case, sanity checks.

`evaluate_robustness` runs a list of attacks and counts an example as robust
only if it is classified correctly and no attack fools it (the per-example worst
case). By default each attack runs only on the points still robust, as
AutoAttack does. It then runs sanity checks that catch weak evaluations and
gradient masking (Athalye et al. 2018; Carlini et al. 2019), on a bounded subset.

Attacks are named like `"pgd-ce"`, `"apgd-t"` or `"square"`, with options after
a colon: `"pgd-cw:steps=50,restarts=5"`. Presets: `"quick"` and `"standard"`.
"""

import dataclasses
import os
import time

import numpy as np
import keras
import tensorflow as tf

from keras_sgn import attacks as attack_lib
from keras_sgn import io_utils

# name -> (kind, default options)
ATTACKS = {
    "fgsm": ("single-step", {}),
    "pgd-ce": ("white-box", {"steps": 20, "restarts": 1}),
    "pgd-cw": ("white-box", {"steps": 20, "restarts": 1}),
    "apgd-ce": ("white-box", {"steps": 100, "restarts": 1}),
    "apgd-dlr": ("white-box", {"steps": 100, "restarts": 1}),
    "apgd-t": ("white-box", {"steps": 100, "n_target_classes": 9}),
    "square": ("gradient-free", {"n_queries": 5000}),
}
PRESETS = {
    # A cheap but adaptive pair: APGD with two losses.
    "quick": ("apgd-ce:steps=50", "apgd-dlr:steps=50"),
    # AutoAttack's standard ensemble (APGD-CE, APGD-T, Square) plus a CW-margin PGD.
    "standard": ("apgd-ce", "apgd-t", "pgd-cw:steps=50,restarts=2", "square"),
}
CURVE_FACTORS = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)


@dataclasses.dataclass(frozen=True)
class AttackSpec:
    """One attack of the suite: a registered name and its options, or a custom
    attack `fn(model, x, y, epsilon, norm, seed) -> x_adv` under any name."""

    name: str
    options: tuple = ()
    fn: object = None

    @property
    def kind(self):
        return ATTACKS[self.name][0] if self.fn is None else "custom"

    @property
    def label(self):
        if not self.options:
            return self.name
        return self.name + ":" + ",".join(f"{k}={v}" for k, v in self.options)

    def settings(self):
        defaults = ATTACKS[self.name][1] if self.fn is None else {}
        return {**defaults, **dict(self.options)}

    def run(self, model, x, y, epsilon, norm, seed=0):
        """Adversarial versions of `x` under this attack."""
        if self.fn is not None:
            return self.fn(model, x, y, epsilon, norm, seed)
        options = self.settings()
        if self.name == "fgsm":
            return attack_lib.fgsm(model, x, y, epsilon=epsilon, norm=norm, seed=seed)
        if self.name.startswith("pgd-"):
            return attack_lib.pgd(model, x, y, epsilon=epsilon, norm=norm,
                               loss=self.name.split("-")[1], seed=seed, **options)
        if self.name == "apgd-t":
            return attack_lib.apgd(model, x, y, epsilon=epsilon, norm=norm, loss="dlr",
                                targeted=True, seed=seed, **options)
        if self.name.startswith("apgd-"):
            return attack_lib.apgd(model, x, y, epsilon=epsilon, norm=norm,
                                loss=self.name.split("-")[1], seed=seed, **options)
        return attack_lib.square(model, x, y, epsilon=epsilon, norm=norm, seed=seed, **options)


def _parse_value(text):
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def parse_attacks(attack_list):
    """`"quick"`, `"standard"`, a comma-free list of names, or a string like
    `"pgd-ce;square:n_queries=1000"` -> a tuple of `AttackSpec`."""
    if isinstance(attack_list, str):
        if attack_list in PRESETS:
            attack_list = PRESETS[attack_list]
        else:
            attack_list = [a for a in attack_list.replace(" ", "").split(";") if a]
    specs = []
    for item in attack_list:
        if isinstance(item, AttackSpec):
            specs.append(item)
            continue
        name, _, option_text = item.partition(":")
        if name not in ATTACKS:
            raise ValueError(
                f"attacks: unknown attack {name!r}. Valid: {', '.join(sorted(ATTACKS))}, or a "
                f"preset ({', '.join(PRESETS)}). Options go after a colon, e.g. "
                "'pgd-cw:steps=50,restarts=5'; separate attacks with ';'.")
        options = []
        for pair in filter(None, option_text.split(",")):
            key, sep, value = pair.partition("=")
            if not sep:
                raise ValueError(f"attacks: option {pair!r} of {name!r} must look like key=value.")
            options.append((key, _parse_value(value)))
        specs.append(AttackSpec(name, tuple(options)))
    if not specs:
        raise ValueError("attacks: give at least one attack or a preset ('quick', 'standard').")
    return tuple(specs)


def _predict(model, x, batch_size=256):
    out = [np.argmax(np.asarray(model(x[i:i + batch_size], training=False)), axis=-1)
           for i in range(0, len(x), batch_size)]
    return np.concatenate(out) if out else np.zeros((0,), np.int64)


def _robust_under(spec, model, x, y, epsilon, norm, seed):
    """Boolean per example: still correctly classified after the attack."""
    if len(x) == 0:
        return np.zeros((0,), bool)
    x_adv = spec.run(model, x, y, epsilon, norm, seed)
    return _predict(model, np.asarray(x_adv)) == y


def _batches(dataset, n_examples):
    seen = 0
    for x, y in dataset:
        x, y = np.asarray(x, np.float32), np.asarray(y).reshape(-1).astype(np.int32)
        if n_examples is not None:
            x, y = x[: n_examples - seen], y[: n_examples - seen]
        if len(y) == 0:
            break
        attack_lib.check_image_range(x, "dataset images")
        seen += len(y)
        yield x, y
        if n_examples is not None and seen >= n_examples:
            break


def _ce_plus_margin(labels, logits):
    # The margin term keeps the gradient nonzero when an honest but confident
    # model's cross-entropy gradient underflows; a masked model zeroes both.
    return attack_lib.cross_entropy_loss(labels, logits) + attack_lib.margin_loss(labels, logits)


def _count_examples(dataset):
    """Examples in a finite tf.data dataset (for the progress bar), else None."""
    if not isinstance(dataset, tf.data.Dataset) or dataset.cardinality() < 0:
        return None
    return int(dataset.map(lambda x, y: tf.shape(y)[0]).reduce(0, lambda a, b: a + b))


def _input_gradient_norms(model, x, y, batch_size=128):
    """Per-example L1 norm of the input gradient of CE + margin (NaN if non-finite)."""
    norms = []
    for i in range(0, len(x), batch_size):
        xb = tf.constant(x[i:i + batch_size])
        gradient, _ = attack_lib.input_gradient(
            lambda images: model(images, training=False), xb, tf.constant(y[i:i + batch_size]),
            _ce_plus_margin)
        g = np.asarray(gradient).reshape(len(xb), -1)
        norms.append(np.where(np.all(np.isfinite(g), axis=1), np.abs(g).sum(axis=1), np.nan))
    return np.concatenate(norms)


def _check(name, passed, detail, **numbers):
    return {"name": name, "passed": bool(passed), "detail": detail,
            **{k: (round(float(v), 6) if isinstance(v, (float, np.floating)) else v)
               for k, v in numbers.items()}}


def sanity_checks(model, x, y, epsilon, norm="linf", num_classes=None, steps=20,
                  square_queries=1000, tolerance=0.03, seed=0):
    """Checks that catch a weak evaluation or gradient masking, on `(x, y)`.

    Returns `(checks, curve)`: a list of dicts `{name, passed, detail, ...numbers}`
    and the accuracy-vs-epsilon curve (PGD-`steps` with CE and CW margin, per
    example worst case, at epsilon times `CURVE_FACTORS`).
    """
    num_classes = num_classes or int(model.output_shape[-1])
    y = np.asarray(y).astype(np.int32)
    clean = _predict(model, x) == y
    n = len(y)

    def accuracy(robust):
        return float(np.mean(robust & clean)) if n else 0.0

    pgd_ce = AttackSpec("pgd-ce", (("steps", steps),))
    pgd_cw = AttackSpec("pgd-cw", (("steps", steps),))
    pgd_double = AttackSpec("pgd-ce", (("steps", 2 * steps),))
    fgsm = _robust_under(AttackSpec("fgsm"), model, x, y, epsilon, norm, seed)
    iterative = _robust_under(pgd_ce, model, x, y, epsilon, norm, seed)
    doubled = _robust_under(pgd_double, model, x, y, epsilon, norm, seed)
    margin = _robust_under(pgd_cw, model, x, y, epsilon, norm, seed)
    square = _robust_under(AttackSpec("square", (("n_queries", square_queries),)),
                           model, x, y, epsilon, norm, seed)
    white_box = iterative & doubled & margin & fgsm

    max_epsilon = 1.0 if norm == "linf" else float(np.sqrt(np.prod(x.shape[1:])))
    curve = []
    for factor in CURVE_FACTORS:
        eps = min(epsilon * factor, max_epsilon)
        if eps == 0:
            robust = np.ones_like(clean)
        else:
            robust = (_robust_under(pgd_ce, model, x, y, eps, norm, seed)
                      & _robust_under(pgd_cw, model, x, y, eps, norm, seed))
        curve.append({"epsilon": eps, "accuracy": accuracy(robust)})

    grad_norms = _input_gradient_norms(model, x, y)
    nonfinite = float(np.mean(np.isnan(grad_norms)))
    zero = float(np.mean(grad_norms == 0.0))
    rises = [b["accuracy"] - a["accuracy"] for a, b in zip(curve, curve[1:])]
    chance = 1.0 / num_classes
    checks = [
        _check("accuracy_non_increasing_in_epsilon", max(rises) <= tolerance,
               "accuracy never rises by more than the tolerance as epsilon grows",
               largest_rise=max(rises), tolerance=tolerance),
        _check("iterative_at_least_as_strong_as_single_step",
               accuracy(iterative) <= accuracy(fgsm) + tolerance,
               f"PGD-{steps} accuracy <= FGSM accuracy + tolerance",
               pgd_accuracy=accuracy(iterative), fgsm_accuracy=accuracy(fgsm)),
        _check("more_steps_do_not_help_the_model",
               accuracy(doubled) <= accuracy(iterative) + tolerance,
               f"PGD-{2 * steps} accuracy <= PGD-{steps} accuracy + tolerance; a large drop "
               "instead means the attack had not converged",
               pgd_accuracy=accuracy(iterative), pgd_double_accuracy=accuracy(doubled),
               converged=bool(accuracy(iterative) - accuracy(doubled) <= tolerance)),
        _check("large_epsilon_reaches_chance", curve[-1]["accuracy"] <= chance + 0.1,
               "at the largest epsilon of the curve accuracy falls to about chance or below",
               epsilon=curve[-1]["epsilon"], accuracy=curve[-1]["accuracy"], chance=chance),
        _check("gradient_free_not_stronger_than_white_box",
               accuracy(square) >= accuracy(white_box) - tolerance,
               "Square (no gradients) must not beat the gradient attacks; if it does, the "
               "gradients are misleading: possible gradient masking",
               square_accuracy=accuracy(square), white_box_accuracy=accuracy(white_box),
               square_only_fooled=int(np.sum(white_box & ~square & clean))),
        _check("input_gradients_finite_and_nonzero", nonfinite == 0.0 and zero <= 0.05,
               "share of examples whose input gradient is non-finite (must be 0) or exactly "
               "zero (at most 5%; zero gradients blind gradient attacks)",
               nonfinite_fraction=nonfinite, zero_fraction=zero),
    ]
    return checks, curve


def evaluate_robustness(model, dataset, epsilon, norm="linf", attacks="standard",
                        n_examples=None, cascade=True, run_sanity_checks=True,
                        n_sanity_examples=256, sanity_steps=20, square_queries=1000,
                        seed=0, verbose=True):
    """Clean accuracy, each attack's accuracy, the per-example worst case, and
    the sanity checks.

    Args:
        model: a Keras model returning logits; images in [0, 1]. It is run with
            `training=False` (BatchNorm in inference mode). A model with
            `feedback_at_inference=True` is attacked through its feedback (the
            attacks differentiate the whole call, nested tapes included).
        dataset: a `tf.data.Dataset` or iterable of `(images, labels)` batches.
            Memory stays bounded by the batch size (the sanity subset aside).
        epsilon: threat-model radius in pixel units.
        norm: `"linf"` or `"l2"`.
        attacks: a preset (`"quick"`, `"standard"`), a list of attack names
            (see `ATTACKS`; options after a colon) or `AttackSpec`s.
        n_examples: evaluate the first N examples (None: all).
        cascade: run each attack only on points still robust (AutoAttack);
            `per_attack` is then the accuracy after that attack. With False every
            attack runs on every correctly classified point and `per_attack` is
            its accuracy alone.
        run_sanity_checks: run `sanity_checks` on the first `n_sanity_examples`.
        sanity_steps, square_queries: budgets of the sanity attacks.
        seed: seed of the attacks' randomness.
        verbose: progress bars.

    Returns:
        A JSON-ready dict: `clean_accuracy`, `robust_accuracy` (the worst case),
        `per_attack`, `sanity_checks`, `sanity_passed`, `accuracy_vs_epsilon`,
        `protocol`, `n_examples`, `seconds`.

    Example:

    ```python
    report = keras_sgn.evaluation.evaluate_robustness(
        model, keras_sgn.data.load("digits", "test"), epsilon=0.1, attacks="quick")
    ```

    Reference:
        Croce & Hein, "Reliable evaluation of adversarial robustness with an
        ensemble of diverse parameter-free attacks", ICML 2020. Carlini et al.,
        "On Evaluating Adversarial Robustness", arXiv 1902.06705.
    """
    specs = parse_attacks(attacks)
    for spec in specs:
        settings = spec.settings()
        attack_lib.check_attack_args(epsilon, settings.get("steps", 1), norm,
                                     restarts=settings.get("restarts", 1))
    if n_examples is not None and n_examples < 1:
        raise ValueError(f"n_examples must be >= 1 or None, got {n_examples}.")
    start = time.time()
    clean_all, robust_all = [], []
    per_attack = {spec.label: [] for spec in specs}
    seconds = {spec.label: 0.0 for spec in specs}
    sanity_x, sanity_y = [], []
    progress = None
    if verbose:
        progress = keras.utils.Progbar(n_examples or _count_examples(dataset),
                                       unit_name="example")
    seen = 0
    for batch_index, (x, y) in enumerate(_batches(dataset, n_examples)):
        if run_sanity_checks and sum(len(b) for b in sanity_y) < n_sanity_examples:
            room = n_sanity_examples - sum(len(b) for b in sanity_y)
            sanity_x.append(x[:room]), sanity_y.append(y[:room])
        clean = _predict(model, x) == y
        robust = clean.copy()
        for spec in specs:
            tick = time.time()
            targets = robust if cascade else clean
            idx = np.flatnonzero(targets)
            survived = np.zeros_like(clean)
            survived[idx] = _robust_under(spec, model, x[idx], y[idx], epsilon, norm,
                                          seed + 7919 * batch_index)
            robust &= (survived | ~targets) if cascade else survived
            per_attack[spec.label].append(robust.copy() if cascade else survived)
            seconds[spec.label] += time.time() - tick
        clean_all.append(clean), robust_all.append(robust)
        seen += len(y)
        if progress is not None:
            progress.update(seen, [("clean", float(np.mean(np.concatenate(clean_all)))),
                                   ("robust", float(np.mean(np.concatenate(robust_all))))])
    if seen == 0:
        raise ValueError("dataset yielded no examples to evaluate.")
    clean_all, robust_all = np.concatenate(clean_all), np.concatenate(robust_all)
    report = {
        "clean_accuracy": float(clean_all.mean()),
        "robust_accuracy": float(robust_all.mean()),
        "per_attack": {label: float(np.concatenate(v).mean()) for label, v in per_attack.items()},
        "attack_seconds": {label: round(s, 2) for label, s in seconds.items()},
        "n_examples": int(seen),
        "protocol": {
            "norm": norm,
            "epsilon": float(epsilon),
            "attacks": [{"name": s.name, "kind": s.kind, **s.settings()} for s in specs],
            "worst_case": "per example: robust only if correct and no attack fools it",
            "cascade": bool(cascade),
            "per_attack_means": ("accuracy after this attack (attacks run only on points "
                                 "still robust)" if cascade else "accuracy under this attack alone"),
            "batchnorm": "inference mode (training=False)",
            "through_feedback_at_inference": bool(getattr(model, "feedback_at_inference", False)),
            "seed": int(seed),
        },
    }
    if run_sanity_checks:
        checks, curve = sanity_checks(
            model, np.concatenate(sanity_x), np.concatenate(sanity_y), epsilon, norm,
            steps=sanity_steps, square_queries=square_queries, seed=seed)
        report.update(sanity_checks=checks, accuracy_vs_epsilon=curve,
                      sanity_passed=all(c["passed"] for c in checks),
                      n_sanity_examples=int(sum(len(b) for b in sanity_y)))
    report["seconds"] = round(time.time() - start, 2)
    return report


def attacks_module_check(epsilon, steps, norm, restarts):
    attack_lib.check_attack_args(epsilon, steps, norm, restarts=restarts)


def evaluate(model, dataset, epsilon, norm="linf", steps=20, restarts=1, n_examples=None,
             seed=0, verbose=True):
    """The training runs' final test: PGD-`steps` with cross-entropy and with
    the CW margin, each alone on every point, worst case per example."""
    options = (("steps", steps), ("restarts", restarts))
    return evaluate_robustness(
        model, dataset, epsilon, norm,
        attacks=(AttackSpec("pgd-ce", options), AttackSpec("pgd-cw", options)),
        n_examples=n_examples, cascade=False, run_sanity_checks=False, seed=seed,
        verbose=verbose)


# ---------------------------------------------------------------------------
# Reports a person reads.


def markdown_report(report, title="Robustness report"):
    """`report.md`: the numbers, the protocol and the sanity checks as tables."""
    protocol = report["protocol"]
    lines = [f"# {title}", ""]
    for key in ("model", "dataset", "split"):
        if key in report:
            lines.append(f"- {key}: `{report[key]}`")
    lines += [
        f"- threat model: {protocol['norm']}, epsilon = {protocol['epsilon']:.6g}",
        f"- examples: {report['n_examples']}; BatchNorm {protocol['batchnorm']}",
        f"- attacked through inference-time feedback: "
        f"{'yes' if protocol['through_feedback_at_inference'] else 'no (model has none)'}",
        "",
        "| | accuracy |",
        "|---|---|",
        f"| clean | {report['clean_accuracy']:.4f} |",
    ]
    for label, value in report["per_attack"].items():
        lines.append(f"| {label} | {value:.4f} |")
    lines += [f"| **worst case over all attacks** | **{report['robust_accuracy']:.4f}** |", "",
              f"Per-attack rows: {protocol['per_attack_means']}.", ""]
    if "sanity_checks" in report:
        lines += [f"## Sanity checks ({report['n_sanity_examples']} examples): "
                  f"{'all passed' if report['sanity_passed'] else 'SOME FAILED'}", "",
                  "| check | result | numbers |", "|---|---|---|"]
        for check in report["sanity_checks"]:
            numbers = ", ".join(f"{k}={v}" for k, v in check.items()
                                if k not in ("name", "passed", "detail"))
            lines.append(f"| {check['name']} | {'pass' if check['passed'] else '**FAIL**'} | "
                         f"{numbers} |")
        lines += ["", "## Accuracy vs epsilon (PGD, CE and CW margin, worst case)", "",
                  "| epsilon | accuracy |", "|---|---|"]
        lines += [f"| {p['epsilon']:.4g} | {p['accuracy']:.4f} |"
                  for p in report["accuracy_vs_epsilon"]]
    return "\n".join(lines) + "\n"


def plot_accuracy_vs_epsilon(report, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curve = report["accuracy_vs_epsilon"]
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot([p["epsilon"] for p in curve], [p["accuracy"] for p in curve], "o-")
    ax.axvline(report["protocol"]["epsilon"], color="gray", ls="--", label="evaluated epsilon")
    ax.set_xlabel(f"epsilon ({report['protocol']['norm']})")
    ax.set_ylabel("robust accuracy")
    ax.set_ylim(0, 1)
    ax.legend()
    fig.tight_layout()
    directory = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(directory, ".tmp-" + os.path.basename(path))
    fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
    os.replace(tmp, path)


def write_report(report, output_dir):
    """Write `report.json`, `report.md` and (with sanity checks) the
    `accuracy_vs_epsilon.png` plot, each atomically."""
    os.makedirs(output_dir, exist_ok=True)
    io_utils.atomic_write_json(os.path.join(output_dir, "report.json"), report)
    io_utils.atomic_write_text(os.path.join(output_dir, "report.md"), markdown_report(report))
    if "accuracy_vs_epsilon" in report:
        plot_accuracy_vs_epsilon(report, os.path.join(output_dir, "accuracy_vs_epsilon.png"))
