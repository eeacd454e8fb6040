"""Attacks, all built on one core (`keras_sgn.attacks.core`).

The core's primitives (`random_start`, `input_gradient`, `ascent_step`,
`project`, `perturb`) serve the training methods and every gradient attack
here; evaluation composes the attacks (see `keras_sgn.evaluation`).
"""

from keras_sgn.attacks.core import (  # noqa: F401
    LOSSES,
    NORMS,
    ascent_step,
    check_attack_args,
    check_image_range,
    cross_entropy_loss,
    dlr_loss,
    fgsm,
    input_gradient,
    kl_loss,
    margin_loss,
    perturb,
    pgd,
    project,
    random_start,
    targeted_dlr_loss,
    worst_case_pgd,
)
from keras_sgn.attacks.apgd import (  # noqa: F401
    APGD_LOSSES,
    apgd,
    apgd_checkpoints,
    apgd_run,
    worst_case_apgd,
)
from keras_sgn.attacks.square import p_selection, square  # noqa: F401
