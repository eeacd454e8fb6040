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
attack), `outcomes` (predictions, who
survives an attack), `examples` (a few adversarial examples kept to be shown),
`progress` (the progress bars), `checkpoints` (one file per attacked batch, so a
killed evaluation resumes), `sources` (which model, dataset and threat model: a saved
file, a run folder or a zoo name, resolved once for the tools and `evaluate_pretrained`),
`runs` (a model on a named dataset, the report folder, `evaluate_pretrained`). The
report a person reads is written by `keras_sgn.reporting.robustness_report`
(`markdown_report` and `plot_accuracy_vs_epsilon` are public here).
"""

# Loaded so that `evaluation.<module>.<name>` works after importing the package.
from keras_sgn.evaluation import checkpoints, inputs, sources  # noqa: F401
from keras_sgn.evaluation.checks import accuracy_vs_epsilon, sanity_checks
from keras_sgn.evaluation.examples import AdversarialExamples
from keras_sgn.evaluation.robustness import evaluate_robustness
from keras_sgn.evaluation.runs import save_evaluation
from keras_sgn.reporting.robustness_report import markdown_report, plot_accuracy_vs_epsilon

__all__ = [
    "AdversarialExamples",
    "evaluate_robustness",
    "sanity_checks",
    "accuracy_vs_epsilon",
    "save_evaluation",
    "markdown_report",
    "plot_accuracy_vs_epsilon",
]
