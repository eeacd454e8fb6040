"""The names the command line offers, known without importing TensorFlow.

The tools make their flags (and answer ``--help``) from :mod:`keras_sgn.config` and these
lists, so ``--help`` imports no TensorFlow. Each registry keeps its own list (the methods in
:mod:`keras_sgn.methods`, the norms in :mod:`keras_sgn.attacks`, ...); a test checks that
these are the same, so a name added to a registry and not here fails it.
"""

#: Training methods, as ``keras_sgn.methods.list_methods()`` lists them (sorted).
METHODS = ("fast", "free", "pgd", "sgn", "sgn-align", "sgn-learned-start", "sgn-memory",
           "sgn-nfgsm", "sgn-pgd", "sgn-ramp", "sgn-reuse", "standard", "trades")
#: The methods whose attack takes several steps (``TrainingMethod.multi_step``).
MULTI_STEP_METHODS = ("pgd", "sgn-pgd", "trades")
#: What the generator of ``sgn-learned-start`` sees besides the image (its input gradient's
#: sign, the gradient scaled to a largest magnitude of 1, or nothing).
GENERATOR_INPUTS = ("sign", "normalized", "none")
#: Threat-model norms (``keras_sgn.attacks.NORMS``).
NORMS = ("linf", "l2")
#: Normalisations of hidden-site gradients (``keras_sgn.layers.NORMALIZATIONS``).
NORMALIZATIONS = ("l2_relative", "sign", "raw")
#: Search algorithms of ``keras_sgn.tuning`` (``keras_sgn.tuning.TUNERS``).
TUNERS = ("hyperband", "bayesian", "random")
#: Exit code of a training run stopped by SIGTERM after saving
#: (``keras_sgn.training.callbacks.TrainingPreempted.exit_code``).
PREEMPTION_EXIT_CODE = 42
#: The methods ``keras_sgn.tuning`` searches the feedback hyperparameters of
#: (``keras_sgn.tuning.hypermodel.METHODS``).
TUNABLE_METHODS = ("sgn", "sgn-pgd")
#: The attacks an evaluation suite names (``keras_sgn.attacks.ATTACKS``), sorted.
ATTACKS = ("apgd-ce", "apgd-dlr", "apgd-t", "fab", "fab-t", "fgsm", "pgd", "pgd-ce", "pgd-cw",
           "square")
#: The studies of ``tools/reproduce.py`` (``keras_sgn.experiments.reproduce.STUDIES``):
#: ``{name: {"methods": ..., "epsilon": ... (None: the recipe's), "about": ...}}``.
STUDIES = {
    "claims": {"methods": ("standard", "fast", "pgd", "trades", "free", "sgn", "sgn-pgd"),
               "epsilon": None,
               "about": "every method at the dataset's threat radius: speed and robustness"},
    "collapse": {"methods": ("fast", "sgn", "pgd"), "epsilon": 0.2,
                 "about": "catastrophic overfitting of single-step training at a larger radius"},
    "variants": {"methods": ("sgn", "sgn-align", "sgn-learned-start", "sgn-memory",
                              "sgn-nfgsm", "sgn-ramp", "sgn-reuse", "pgd"),
                 "epsilon": None,
                 "about": "variants of the reconstruction against sgn and PGD-AT: time to target"},
}
#: Steps of a study's per-epoch PGD robust estimate (``keras_sgn.experiments.reproduce``).
DEFAULT_VAL_STEPS = 20
