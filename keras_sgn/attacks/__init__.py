"""Attacks, all built on one core (`keras_sgn.attacks.core`).

The core's primitives (`random_start`, `input_gradient`, `ascent_step`,
`project`, `perturb`) serve the training methods and every gradient attack
here: PGD and FGSM (`core`), Auto-PGD (`apgd`), FAB (`fab`) and the
gradient-free Square Attack (`square`). `registry` names them, with typed
options and AutoAttack's presets, for evaluation; `timing` measures what one
iteration of each costs.
"""

from keras_sgn.attacks.apgd import (  # noqa: F401
    APGD_LOSSES,
    apgd,
    apgd_checkpoints,
    apgd_run,
    step_size_halved,
    worst_case_apgd,
)
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
    per_example_norm,
    perturb,
    pgd,
    pgd_run,
    project,
    random_start,
    sphere_start,
    targeted_dlr_loss,
    worst_case_pgd,
)
from keras_sgn.attacks.fab import fab, fab_run, project_to_hyperplane  # noqa: F401
from keras_sgn.attacks.registry import (  # noqa: F401
    AttackSpec,
    parse_attack,
    parse_attacks,
)
from keras_sgn.attacks.square import p_selection, square  # noqa: F401
from keras_sgn.attacks.timing import cost_per_iteration  # noqa: F401
