"""Robustness evaluation you can trust: attack suite, worst case, sanity checks.

`evaluate_robustness` runs a list of attacks and counts an example as robust
only if it is classified correctly and no attack fools it (the per-example worst
case). By default each attack runs only on the points still robust, as
AutoAttack does. It then runs sanity checks that catch weak evaluations and
gradient masking (Athalye et al. 2018; Carlini et al. 2019), on a bounded subset.

Attacks are named like `"pgd-ce"`, `"apgd-t"` or `"square"`, with options after
a colon: `"pgd-cw:steps=50,restarts=5"`. Presets, as AutoAttack names them:
`"standard"` (APGD-CE, APGD-T, FAB-T, Square-5000), `"plus"` and `"quick"` (APGD-CE +
APGD-T); the table is `keras_sgn.attacks.registry`.

Modules: `robustness` (the suite, cascade and worst case), `checks` (one
`check_*` function per sanity check), `inputs` (bad input refused before any
attack), `suite` (attack names, presets, parsing), `outcomes` (predictions, who
survives an attack), `examples` (a few adversarial examples kept to be shown),
`progress` (the progress bars), `checkpoints` (one file per attacked batch, so a
killed evaluation resumes), `runs` (a model on a named dataset, the report
folder, `evaluate_pretrained`). The report a person reads is written by
`keras_sgn.reporting.robustness_report` (re-exported here).
"""

from keras_sgn.evaluation.checkpoints import (
    CHECKPOINTS_FOLDER,
    BatchCheckpoints,
    delete_checkpoints,
)
from keras_sgn.evaluation.checks import (
    CURVE_FACTORS,
    accuracy_vs_epsilon,
    check_accuracy_non_increasing_in_epsilon,
    check_gradient_free_not_stronger_than_white_box,
    check_input_gradients_finite_and_nonzero,
    check_iterative_at_least_as_strong_as_single_step,
    check_large_epsilon_reaches_chance,
    check_more_steps_do_not_help_the_model,
    input_gradient_norms,
    sanity_checks,
)
from keras_sgn.evaluation.examples import AdversarialExamples
from keras_sgn.evaluation.inputs import check_epsilon, labels_as_indices
from keras_sgn.evaluation.robustness import (
    PER_ATTACK_MEANINGS,
    BatchOutcome,
    attack_batch,
    evaluate,
    evaluate_robustness,
    run_attacks,
)
from keras_sgn.evaluation.runs import (
    GRID_EXAMPLES,
    evaluate_on_dataset,
    evaluate_pretrained,
    save_evaluation,
)
from keras_sgn.evaluation.suite import ATTACKS, PRESETS, AttackSpec, parse_attacks
from keras_sgn.reporting.robustness_report import (
    markdown_report,
    plot_accuracy_vs_epsilon,
    write_report,
)

__all__ = [
    "ATTACKS",
    "AdversarialExamples",
    "AttackSpec",
    "BatchCheckpoints",
    "BatchOutcome",
    "CHECKPOINTS_FOLDER",
    "CURVE_FACTORS",
    "GRID_EXAMPLES",
    "PER_ATTACK_MEANINGS",
    "PRESETS",
    "accuracy_vs_epsilon",
    "attack_batch",
    "check_accuracy_non_increasing_in_epsilon",
    "check_epsilon",
    "check_gradient_free_not_stronger_than_white_box",
    "check_input_gradients_finite_and_nonzero",
    "check_iterative_at_least_as_strong_as_single_step",
    "check_large_epsilon_reaches_chance",
    "check_more_steps_do_not_help_the_model",
    "delete_checkpoints",
    "evaluate",
    "evaluate_on_dataset",
    "evaluate_pretrained",
    "evaluate_robustness",
    "input_gradient_norms",
    "labels_as_indices",
    "markdown_report",
    "parse_attacks",
    "plot_accuracy_vs_epsilon",
    "run_attacks",
    "sanity_checks",
    "save_evaluation",
    "write_report",
]
