"""Attacks, all built on one core (`keras_sgn.attacks.core`).

The core's primitives (`random_start`, `input_gradient`, `ascent_step`,
`project`, `perturb`) serve the training methods and every gradient attack
here: PGD and FGSM (`core`), Auto-PGD (`apgd`), FAB (`fab`) and the
gradient-free Square Attack (`square`). `registry` names them, with typed
options and AutoAttack's presets, for evaluation; `timing` measures what one
iteration of each costs.
"""

# Loaded so that `attacks.<module>.<name>` works after importing the package.
from keras_sgn.attacks import timing  # noqa: F401
from keras_sgn.attacks.apgd import apgd
from keras_sgn.attacks.core import NORMS, fgsm, pgd
from keras_sgn.attacks.fab import fab
from keras_sgn.attacks.registry import ATTACKS, PRESETS, AttackSpec, parse_attacks
from keras_sgn.attacks.square import square

__all__ = [
    "ATTACKS",
    "PRESETS",
    "AttackSpec",
    "NORMS",
    "apgd",
    "fab",
    "fgsm",
    "pgd",
    "square",
    "parse_attacks",
]
