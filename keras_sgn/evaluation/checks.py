"""Sanity checks that catch a weak evaluation or gradient masking.

One `check_*` function per check (in the manner of AutoAttack's `checks.py`):
each takes measured numbers and returns `{name, passed, detail, ...numbers}`.
`sanity_checks` measures them on a small subset and runs every check.

References: Athalye et al., "Obfuscated Gradients Give a False Sense of
Security", ICML 2018; Carlini et al., "On Evaluating Adversarial Robustness",
arXiv 1902.06705.
"""

import numpy as np
import tensorflow as tf

from keras_sgn import attacks as attack_lib
from keras_sgn.attacks.registry import AttackSpec
from keras_sgn.evaluation import inputs
from keras_sgn.evaluation.outcomes import predict_labels, robust_under
from keras_sgn.evaluation.progress import Progress, quiet

#: Multiples of epsilon at which the accuracy-vs-epsilon curve is measured.
CURVE_FACTORS = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)
#: At most this share of exactly-zero input gradients is tolerated.
MAX_ZERO_GRADIENT_FRACTION = 0.05
#: Accuracy at the curve's largest epsilon may exceed chance by this much.
CHANCE_MARGIN = 0.1


def check_result(name, passed, detail, **numbers):
    """One check's outcome as a JSON-ready dict (floats rounded to 6 digits)."""
    return {"name": name, "passed": bool(passed), "detail": detail,
            **{k: (round(float(v), 6) if isinstance(v, (float, np.floating)) else v)
               for k, v in numbers.items()}}


def check_accuracy_non_increasing_in_epsilon(curve, tolerance):
    """Accuracy must not rise (beyond `tolerance`) as epsilon grows."""
    rises = [b["accuracy"] - a["accuracy"] for a, b in zip(curve, curve[1:])]
    return check_result(
        "accuracy_non_increasing_in_epsilon", max(rises) <= tolerance,
        "accuracy never rises by more than the tolerance as epsilon grows",
        largest_rise=max(rises), tolerance=tolerance)


def check_iterative_at_least_as_strong_as_single_step(pgd_accuracy, fgsm_accuracy, steps,
                                                      tolerance):
    """PGD must fool at least as many points as FGSM."""
    return check_result(
        "iterative_at_least_as_strong_as_single_step",
        pgd_accuracy <= fgsm_accuracy + tolerance,
        f"PGD-{steps} accuracy <= FGSM accuracy + tolerance",
        pgd_accuracy=pgd_accuracy, fgsm_accuracy=fgsm_accuracy)


def check_more_steps_do_not_help_the_model(pgd_accuracy, pgd_double_accuracy, steps,
                                           tolerance):
    """Twice the steps must not leave the model more accurate; a large drop
    instead says the shorter attack had not converged."""
    return check_result(
        "more_steps_do_not_help_the_model", pgd_double_accuracy <= pgd_accuracy + tolerance,
        f"PGD-{2 * steps} accuracy <= PGD-{steps} accuracy + tolerance; a large drop "
        "instead means the attack had not converged",
        pgd_accuracy=pgd_accuracy, pgd_double_accuracy=pgd_double_accuracy,
        converged=bool(pgd_accuracy - pgd_double_accuracy <= tolerance))


def check_large_epsilon_reaches_chance(curve, num_classes):
    """At the curve's largest epsilon, accuracy must fall to about chance."""
    chance = 1.0 / num_classes
    last = curve[-1]
    return check_result(
        "large_epsilon_reaches_chance", last["accuracy"] <= chance + CHANCE_MARGIN,
        "at the largest epsilon of the curve accuracy falls to about chance or below",
        epsilon=last["epsilon"], accuracy=last["accuracy"], chance=chance)


def check_gradient_free_not_stronger_than_white_box(square_accuracy, white_box_accuracy,
                                                    square_only_fooled, tolerance):
    """A gradient-free attack beating the gradient attacks means misleading gradients."""
    return check_result(
        "gradient_free_not_stronger_than_white_box",
        square_accuracy >= white_box_accuracy - tolerance,
        "Square (no gradients) must not beat the gradient attacks; if it does, the "
        "gradients are misleading: possible gradient masking",
        square_accuracy=square_accuracy, white_box_accuracy=white_box_accuracy,
        square_only_fooled=int(square_only_fooled))


def check_input_gradients_finite_and_nonzero(gradient_norms):
    """No non-finite input gradient, and few exactly-zero ones (they blind the attacks)."""
    nonfinite = float(np.mean(np.isnan(gradient_norms)))
    zero = float(np.mean(gradient_norms == 0.0))
    return check_result(
        "input_gradients_finite_and_nonzero",
        nonfinite == 0.0 and zero <= MAX_ZERO_GRADIENT_FRACTION,
        "share of examples whose input gradient is non-finite (must be 0) or exactly "
        "zero (at most 5%; zero gradients blind gradient attacks)",
        nonfinite_fraction=nonfinite, zero_fraction=zero)


def _ce_plus_margin(labels, logits):
    # The margin term keeps the gradient nonzero when an honest but confident
    # model's cross-entropy gradient underflows; a masked model zeroes both.
    core = attack_lib.core
    return core.cross_entropy_loss(labels, logits) + core.margin_loss(labels, logits)


def input_gradient_norms(model, x, y, batch_size=128):
    """Per-example L1 norm of the input gradient of CE + margin (NaN if non-finite)."""
    norms = []
    for i in range(0, len(x), batch_size):
        xb = tf.constant(x[i:i + batch_size])
        gradient, _ = attack_lib.core.input_gradient(
            lambda images: model(images, training=False), xb, tf.constant(y[i:i + batch_size]),
            _ce_plus_margin)
        g = np.asarray(gradient).reshape(len(xb), -1)
        norms.append(np.where(np.all(np.isfinite(g), axis=1), np.abs(g).sum(axis=1), np.nan))
    return np.concatenate(norms)


def _curve_epsilons(epsilon, norm, x):
    """epsilon times each of `CURVE_FACTORS`, capped at the largest radius that
    means anything (1 for L-inf, the image's L2 diameter)."""
    max_epsilon = 1.0 if norm == "linf" else float(np.sqrt(np.prod(x.shape[1:])))
    return [min(epsilon * factor, max_epsilon) for factor in CURVE_FACTORS]


def accuracy_vs_epsilon(model, x, y, epsilon, norm, steps, seed, clean, progress=None):
    """Robust accuracy under PGD-`steps` (CE and CW margin, per-example worst
    case) at epsilon times each of `CURVE_FACTORS`, capped at the largest
    radius that means anything (1 for L-inf, the image's L2 diameter).
    `progress` (a `Progress`) advances by one per attack run."""
    progress = progress or quiet()
    pgd_ce = AttackSpec("pgd-ce", (("steps", steps),))
    pgd_cw = AttackSpec("pgd-cw", (("steps", steps),))
    curve = []
    for eps in _curve_epsilons(epsilon, norm, x):
        robust = np.ones_like(clean)
        if eps > 0:
            for spec in (pgd_ce, pgd_cw):
                robust &= robust_under(spec, model, x, y, eps, norm, seed)
                progress.advance()
        curve.append({"epsilon": eps, "accuracy": float(np.mean(robust & clean))})
    return curve


def _attack_outcomes(model, x, y, epsilon, norm, steps, square_queries, seed, progress):
    """Who survives FGSM, PGD-`steps` (CE), PGD-2x`steps`, PGD (CW) and Square."""
    suite = {
        "fgsm": AttackSpec("fgsm"),
        "pgd": AttackSpec("pgd-ce", (("steps", steps),)),
        "pgd_double": AttackSpec("pgd-ce", (("steps", 2 * steps),)),
        "margin": AttackSpec("pgd-cw", (("steps", steps),)),
        "square": AttackSpec("square", (("n_queries", square_queries),)),
    }
    survived = {}
    for key, spec in suite.items():
        survived[key] = robust_under(spec, model, x, y, epsilon, norm, seed)
        progress.advance()
    return survived


def _sanity_progress(x, epsilon, norm, verbose):
    """The bar of the sanity checks: 5 attacks, the sweep's attacks, the gradients."""
    sweep = sum(2 for eps in _curve_epsilons(epsilon, norm, x) if eps > 0)
    return Progress(5 + sweep + 1, "attack", verbose=verbose, title=(
        f"Sanity checks on {len(x)} examples: FGSM, PGD, PGD with twice the steps, CW, "
        f"Square, an epsilon sweep ({sweep} attacks), input gradients"))


def sanity_checks(model, x, y, epsilon, norm="linf", num_classes=None, steps=20,
                  square_queries=1000, tolerance=0.03, seed=0, verbose=False):
    """Checks that catch a weak evaluation or gradient masking, on `(x, y)`.

    Returns `(checks, curve)`: a list of dicts `{name, passed, detail, ...numbers}`
    (one per `check_*` function of this module) and the accuracy-vs-epsilon
    curve (`accuracy_vs_epsilon`). `num_classes` sets the chance level
    (default: the model's number of outputs). `verbose`: a progress bar that
    moves after every attack.
    """
    inputs.check_epsilon(epsilon)
    x, y, model_classes = inputs.check_batch(model, x, y, names=("x", "y"))
    num_classes = num_classes or model_classes
    clean = predict_labels(model, x) == y
    progress = _sanity_progress(x, epsilon, norm, verbose)

    def accuracy(robust):
        return float(np.mean(robust & clean)) if len(y) else 0.0

    survived = _attack_outcomes(model, x, y, epsilon, norm, steps, square_queries, seed,
                                progress)
    white_box = survived["pgd"] & survived["pgd_double"] & survived["margin"] & survived["fgsm"]
    curve = accuracy_vs_epsilon(model, x, y, epsilon, norm, steps, seed, clean, progress)
    gradient_norms = input_gradient_norms(model, x, y)
    progress.advance()
    checks = [
        check_accuracy_non_increasing_in_epsilon(curve, tolerance),
        check_iterative_at_least_as_strong_as_single_step(
            accuracy(survived["pgd"]), accuracy(survived["fgsm"]), steps, tolerance),
        check_more_steps_do_not_help_the_model(
            accuracy(survived["pgd"]), accuracy(survived["pgd_double"]), steps, tolerance),
        check_large_epsilon_reaches_chance(curve, num_classes),
        check_gradient_free_not_stronger_than_white_box(
            accuracy(survived["square"]), accuracy(white_box),
            np.sum(white_box & ~survived["square"] & clean), tolerance),
        check_input_gradients_finite_and_nonzero(gradient_norms),
    ]
    return checks, curve
