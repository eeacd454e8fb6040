"""Reproduce the SGN claims: every method, several seeds, one budget.

The seed paper claims that self-gradient networks reach a robust solution at
least 10x faster than adversarial training and gain about 10 points of robust
accuracy. `reproduce()` measures both:

1. each method x seed is a `tools/train.py` run (`keras_sgn.training.train`)
   of the same budget (`keras_sgn.methods.registry.budget_epochs`: Free-AT
   trains epochs / replays), whose per-epoch validation on the VALIDATION
   split (clean accuracy and a PGD robust estimate, with the cumulative
   training wall time, evaluation excluded) is the study's curve; the best
   model by validation robust accuracy is kept;
2. time to target and collapse come from those validation curves
   (`keras_sgn.experiments.analysis`, whose `RULES` are written in the outputs);
3. the final numbers are test-split evaluations of every run's best model
   (the run's own final test: `quick`, `test_steps` iterations if given) and
   of each method's best seed (`best_attacks`, `standard` by default), their
   protocol beside them.

Resumable across sessions: runs resume like any training run (a killed run
continues from its last backup) and evaluations write their files atomically
when done (`keras_sgn.experiments.runs`), so rerunning the same call skips
what is finished. Results are rewritten after each
method: `results.json`, `results.md`, `robust_vs_time.png`, `robust_vs_epochs.png`.

Studies (`STUDIES`): `claims` (every method at the dataset's radius) and
`collapse` (fast, sgn and PGD-AT at eps = 0.2: catastrophic overfitting).
"""

import os

import keras

from keras_sgn import io_utils, names, provenance, training
from keras_sgn import methods as sgn_methods
from keras_sgn.attacks import parse_attacks
from keras_sgn.errors import ArgumentError
from keras_sgn.experiments import analysis, plots, runs
from keras_sgn.experiments.analysis import (
    REFERENCE,
    analyse,
    catastrophic_overfitting,
    time_to_target,
)
from keras_sgn.experiments.plots import plot
from keras_sgn.experiments.progress import Progress
from keras_sgn.experiments.runs import Validation, run_folder
from keras_sgn.experiments.tables import markdown

ALL_METHODS = tuple(sgn_methods.list_methods(variants=False))
# Adversarial methods (more than one pass per step) whose attack takes one step.
SINGLE_STEP = tuple(m for m in ALL_METHODS if not sgn_methods.registry.method_class(m).multi_step
                    and sgn_methods.registry.expected_cost(m) > 1)
# The methods of the claims study (docs/reproduce/fashion_mnist-claims): the baselines,
# PGD-AT and the reconstruction.
CLAIMS_METHODS = ("standard", "fast", "pgd", "trades", "free", "sgn", "sgn-pgd")
# The variants of the reconstruction aimed at faster convergence
# (docs/reproduce/fashion_mnist-variants).
VARIANT_METHODS = ("sgn",) + tuple(m for m in sgn_methods.list_methods()
                                   if sgn_methods.registry.method_class(m).variant)
STUDIES = {
    "claims": {"methods": CLAIMS_METHODS, "epsilon": None,
               "about": "every method at the dataset's threat radius: speed and robustness"},
    "collapse": {"methods": ("fast", "sgn", REFERENCE), "epsilon": 0.2,
                 "about": "catastrophic overfitting of single-step training at a larger radius"},
    "variants": {"methods": VARIANT_METHODS + (REFERENCE,), "epsilon": None,
                 "about": "variants of the reconstruction against sgn and PGD-AT: time to target"},
}
# Seeds per method when none are given: the cheap methods get one more.
DEFAULT_SEEDS = {"single_step": (0, 1, 2), "multi_step": (0, 1)}
DEFAULT_VAL_STEPS = names.DEFAULT_VAL_STEPS

__all__ = ["ALL_METHODS", "CLAIMS_METHODS", "DEFAULT_SEEDS", "DEFAULT_VAL_STEPS", "REFERENCE",
           "SINGLE_STEP", "STUDIES", "VARIANT_METHODS", "Validation", "analyse",
           "catastrophic_overfitting", "default_output_dir", "default_seeds", "markdown", "plan",
           "plot", "reproduce", "run_method", "time_to_target", "write_outputs"]


def default_seeds(method):
    """3 seeds for methods whose cost does not grow with attack steps, 2 for the others."""
    multi = sgn_methods.registry.method_class(method).multi_step
    return DEFAULT_SEEDS["multi_step" if multi else "single_step"]


def _seeds_of(method, seeds):
    """`seeds`: None (the defaults), a count, a list for every method, or {method: list}."""
    if seeds is None:
        return default_seeds(method)
    if isinstance(seeds, int):
        return tuple(range(seeds))
    if isinstance(seeds, dict):
        return tuple(seeds.get(method, default_seeds(method)))
    return tuple(int(s) for s in seeds)


def plan(dataset, methods, seeds=None, **fields):
    """The resolved `TrainConfig` of every run, method after method (every
    config is checked before any training). `fields`: other `TrainConfig`
    fields; None values follow the dataset recipe."""
    given = {k: v for k, v in fields.items() if v is not None}
    return [training.TrainConfig(dataset=dataset, method=method, seed=seed, verbose=0,
                                 **given).resolved()
            for method in methods for seed in _seeds_of(method, seeds)]


def _describe(configs, study, validation, best_attacks, n_test, sanity):
    """The settings block of the outputs: what was run and measured, in words too."""
    first = configs[0]
    budgets = sorted({(c.method, _budget(c)) for c in configs if _budget(c) != first.epochs})
    versions = provenance.provenance()
    commit = versions["git_commit"] or "no git checkout"
    dirty = " with uncommitted changes" if versions["git_dirty"] else ""
    val_name = f"PGD-{validation.steps}"
    final = training.outputs.final_test_attacks(first)
    val_images = validation.images(first.dataset)
    return {
        "study": study, "dataset": first.dataset, "model": first.model,
        "epsilon": first.epsilon, "norm": first.norm,
        "methods": list(dict.fromkeys(c.method for c in configs)),
        "seeds": {m: [c.seed for c in configs if c.method == m]
                  for m in dict.fromkeys(c.method for c in configs)},
        "n_test": n_test, "validation_settings": validation.settings(),
        "validation": validation.describe(first.dataset),
        "final_suite": "quick" + (f" ({first.test_steps} steps)" if first.test_steps else ""),
        "final_suite_text": "; ".join(spec.label for spec in final),
        "best_suite": runs.suite_name(best_attacks),
        "best_suite_text": runs.suite_text(best_attacks)
        + (", with the sanity checks" if sanity else ""),
        "test_examples": ("all test images" if n_test is None
                          else f"the first {n_test} test images"),
        "budget": (f"{first.epochs} epochs of {first.optimizer} (lr {first.learning_rate}, "
                   f"{first.lr_schedule}), batch {first.batch_size}, "
                   f"{'all' if first.n_train is None else first.n_train} training images"
                   + "".join(f"; {m} trains {e} epochs (same budget)" for m, e in budgets)),
        "title": (f"{study}: {first.dataset}, {first.model}, {first.norm} epsilon = "
                  f"{first.epsilon:g}"),
        "plot_title": (f"{first.dataset} · {first.model} · {first.norm} ε = {first.epsilon:g} "
                       f"({study})\nvalidation robust accuracy, {val_name} on {val_images} "
                       "val images; line: mean over seeds, band: min-max"),
        "provenance": f"keras_sgn {versions['keras_sgn']}, commit {commit}{dirty}",
        "versions": versions, "config": first.to_dict(),
    }


_budget = runs.budget_epochs


def write_outputs(output_dir, finished_runs, settings):
    """`results.json`, `results.md` and the two plots of the runs so far, in
    `output_dir`; returns the analysis."""
    os.makedirs(output_dir, exist_ok=True)
    result = analyse(finished_runs)
    io_utils.atomic_write_json(os.path.join(output_dir, "results.json"),
                               {"settings": settings, "analysis": result,
                                "runs": finished_runs})
    io_utils.atomic_write_text(os.path.join(output_dir, "results.md"),
                               markdown(result, settings))
    plots.plot(finished_runs, os.path.join(output_dir, ""), result["target_robust_accuracy"],
               settings["plot_title"], reference=result["reference"])
    return result


class _Session:
    """One call of `reproduce`: trains (or resumes, or reads back) runs,
    evaluates their best models, and reports progress."""

    def __init__(self, output_dir, configs, validation, suites, options, verbose):
        self.output_dir, self.configs, self.validation = output_dir, configs, validation
        self.suites, self.options = suites, options  # suites: {role: (attacks, sanity)}
        # Finished runs are read (and every folder's settings checked) before any training.
        self.done = [self._read(config) for config in configs]
        methods = list(dict.fromkeys(c.method for c in configs))
        self.progress = Progress(
            [(c.method, c.seed, _budget(c), sgn_methods.registry.expected_cost(
                c.method, **c.method_options())) for c in configs],
            {"best_model": len(methods)}, enabled=bool(verbose),
            finished={i for i, result in enumerate(self.done) if result is not None})

    def _folder(self, config):
        return run_folder(self.output_dir, config.method, config.seed)

    def _read(self, config):
        folder = self._folder(config)
        result = runs.read_run(folder, runs.run_config(config, folder, self.validation,
                                                       self.options["n_test"]))
        if result is not None:
            result["budget_epochs"] = config.epochs
        return result

    def train_or_load(self, index):
        """The finished result of run `index`, training (or resuming) it unless
        done earlier. `keras_sgn.training.train` locks the run's folder: two
        runners sharing an output_dir never train the same run at once."""
        config = self.configs[index]
        folder = self._folder(config)
        result = self.done[index] or self._read(config)
        self.progress.start_run(index, folder, skipped_result=result)
        if result is None:
            epochs = _budget(config)
            result = runs.train_run(config, folder, self.validation,
                                    on_epoch=lambda point: self.progress.epoch(point, epochs),
                                    n_test=self.options["n_test"])
            self.progress.run_finished(result["final"])
            keras.backend.clear_session()  # the next run starts from a clean graph
        return result

    def evaluate(self, result, role):
        """The stored test evaluation `role` of the run's best model, or a new one."""
        attacks, sanity = self.suites[role]
        folder = run_folder(self.output_dir, result["method"], result["seed"])
        tag = (role, result["method"], result["seed"])
        with training.run_folder.RunLock(folder):  # another runner may be at work on this run
            settings = runs.evaluation_settings(folder, attacks, self.options["n_test"], sanity)
            report = runs.stored_evaluation(folder, role, settings)
            if report is not None:
                self.progress.evaluation_finished(tag[0], report, *tag[1:], skipped=True)
                return report
            self.progress.evaluation_started(role, runs.suite_name(attacks),
                                             self.options["n_test"], *tag[1:])
            report = runs.evaluate_best(result, folder, role, attacks, sanity_checks=sanity,
                                        **self.options)
        self.progress.evaluation_finished(role, report, *tag[1:])
        return report

    def method(self, method):
        """Every run of `method` (with its own final test), and the
        `best_model` evaluation on its best seed."""
        method_runs = [self.train_or_load(index) for index, config in enumerate(self.configs)
                       if config.method == method]
        best = analysis.best_run(method_runs)
        best["best_model_test"] = self.evaluate(best, "best_model")
        return [_without_raw_files(run) for run in method_runs]


def _without_raw_files(result):
    """A run's result as `results.json` keeps it (its folder holds the raw files)."""
    return {k: v for k, v in result.items() if k not in ("summary", "history")}


def default_output_dir(dataset, study="claims"):
    """`runs/reproduce/<dataset>-<study>`."""
    return os.path.join("runs", "reproduce", f"{dataset}-{study}")


def reproduce(dataset="fashion_mnist", methods=None, seeds=None, epochs=None, epsilon=None,
              output_dir=None, study="claims", data_dir=None, model=None, n_train=None,
              results_dir=None, n_val=None, n_test=None, val_steps=DEFAULT_VAL_STEPS,
              test_steps=None, best_attacks="standard", best_sanity_checks=True,
              attack_steps=None, verbose=True):
    """Train every method with every seed, evaluate, and write the results.

    Args:
        dataset: a dataset with a recipe (`keras_sgn.recipes`).
        methods, epsilon: default: those of `study` (`STUDIES`; epsilon None:
            the dataset recipe's).
        seeds: None (`default_seeds`: 3 for single-step methods, 2 for
            multi-step ones), a count, a list for every method, or {method: list}.
        epochs: the budget in epochs (default: the recipe's).
        output_dir: where the runs go (`runs/<method>-seed<k>/`: training run
            folders plus the evaluations); default `runs/reproduce/<dataset>-<study>`.
        results_dir: where `results.json`, `results.md` and the plots go
            (default: `output_dir`), e.g. a folder of `docs/` that should not
            hold the models.
        model, n_train, attack_steps, data_dir: `TrainConfig` fields.
        n_val, val_steps: the per-epoch validation (`Validation`: PGD-`val_steps`
            on the first `n_val` validation images).
        n_test: test images of the final evaluations (None: all).
        test_steps: iterations of each attack of every run's final test (the
            `quick` suite; None: its own 100).
        best_attacks (with the sanity checks if `best_sanity_checks`): the
            suite run on each method's best seed.
        verbose: progress lines (one per epoch, run and evaluation).

    Returns the analysis (`keras_sgn.experiments.analysis.analyse`).
    """
    if study not in STUDIES:
        raise ArgumentError(f"study must be one of {tuple(STUDIES)}. Received: {study!r}.")
    methods = tuple(methods or STUDIES[study]["methods"])
    epsilon = STUDIES[study]["epsilon"] if epsilon is None else epsilon
    output_dir = output_dir or default_output_dir(dataset, study)
    validation = Validation(val_steps, n_val)
    configs = plan(dataset, methods, seeds, epochs=epochs, epsilon=epsilon, model=model,
                   n_train=n_train, attack_steps=attack_steps, data_dir=data_dir,
                   test_steps=test_steps)
    parse_attacks(best_attacks)  # a misspelled attack fails before any training
    settings = _describe(configs, study, validation, best_attacks, n_test, best_sanity_checks)
    os.makedirs(output_dir, exist_ok=True)
    session = _Session(output_dir, configs, validation,
                       {"best_model": (best_attacks, best_sanity_checks)},
                       {"n_test": n_test, "data_dir": data_dir, "verbose": bool(verbose)},
                       verbose)
    finished = []
    for method in methods:
        finished += session.method(method)
        # Partial results, kept current after every method.
        outcome = write_outputs(results_dir or output_dir, finished, settings)
    if verbose:
        print(f"Wrote {os.path.join(results_dir or output_dir, 'results.json')}, results.md, "
              "robust_vs_time.png and robust_vs_epochs.png", flush=True)
    return outcome


def run_method(config, folder=None, validation=None, n_test=None):
    """Train one run of `config` (see `keras_sgn.experiments.runs.train_run`)
    into `folder` (default: a new temporary folder); returns its result."""
    import tempfile

    folder = folder or tempfile.mkdtemp(prefix=f"keras_sgn-{config.method}-")
    return runs.train_run(config, folder, validation or Validation(), n_test=n_test)
