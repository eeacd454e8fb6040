"""One run of the reproduction: a `tools/train.py` run (`keras_sgn.training.train`)
of one method and seed, read back as a study's result, and test evaluations of
its best model.

The run folder is the training run folder (`config.json`, `history.json`,
`model.keras`, `summary.json`, a `backup/` while unfinished), so a study run
resumes like any training run: a killed run continues from its last backup (an
epoch end, or the step of a SIGTERM), a finished one is read back, and one of
other settings is refused. Beside the run's files the study writes
`eval-<role>.json`: a test evaluation of `model.keras`, skipped on a rerun with
the same suite, examples and model (its sha256).
"""

import dataclasses
import hashlib
import json
import os
import time

import keras

from keras_sgn import data as sgn_data
from keras_sgn import evaluation, io_utils, training
from keras_sgn import methods as sgn_methods
from keras_sgn.attacks import parse_attacks
from keras_sgn.config import resumable_fields, saved_settings
from keras_sgn.errors import ArgumentError

BEST_MODEL_FILE = "model.keras"
SUMMARY_FILE = "summary.json"
EVAL_BATCH_SIZE = 256
# The final test is part of a study's result: a run tested otherwise is another run
# (a training run would resume with new test settings; a study refuses the folder).
_TEST_FIELDS = ("test_steps", "test_restarts", "n_test", "test_order")


def suite_name(attacks):
    """A short name for an attack list: the preset's name, or the attacks joined."""
    if isinstance(attacks, str):
        return attacks
    return " + ".join(spec.label for spec in parse_attacks(attacks))


def suite_text(attacks):
    """Every attack of the list with its options (presets expanded)."""
    return "; ".join(spec.label for spec in parse_attacks(attacks))


@dataclasses.dataclass(frozen=True)
class Validation:
    """The per-epoch measurement on the validation split, the one of every
    training run (`SGNModel`'s validation attack): clean accuracy and PGD-`steps`
    robust accuracy (cross-entropy, step epsilon/4, random start) on the first
    `n_examples` validation images (None: all)."""

    steps: int = 20
    n_examples: int = None

    def __post_init__(self):
        if isinstance(self.steps, bool) or not isinstance(self.steps, int) or self.steps < 1:
            raise ArgumentError(f"The validation attack needs steps >= 1 (an integer). "
                                f"Received: steps={self.steps!r}.")

    def settings(self):
        return {"split": "validation", "attack": "pgd", "steps": self.steps,
                "step_size": "epsilon/4", "random_start": True, "n_examples": self.n_examples}

    def config_fields(self):
        """The `TrainConfig` fields that make a training run validate this way."""
        return {"eval_steps": self.steps, "n_eval": self.n_examples}

    def images(self, dataset=None):
        """`"all 1000"`, `"the first 500"`: the first `n_examples` (or all)
        validation images, counted when `dataset` is given."""
        available = None if dataset is None else sgn_data.info(dataset).num_examples["validation"]
        if self.n_examples is None or (available is not None and self.n_examples >= available):
            return "all" if available is None else f"all {available}"
        return f"the first {self.n_examples}"

    def describe(self, dataset=None):
        return (f"clean accuracy and a cheap robust estimate (PGD-{self.steps}, cross-entropy, "
                f"step epsilon/4, random start) on {self.images(dataset)} validation images")


class EpochHook(keras.callbacks.Callback):
    """Calls `on_epoch(point)` after each epoch of a training run with the
    study's curve point: `epoch`, `train_seconds` (the run's training wall time
    so far, validation excluded), `val_seconds`, `clean_accuracy` and
    `robust_accuracy` on the validation images. Place it after `TrainingClock`
    (`training.train` does: extra callbacks come after its clock)."""

    def __init__(self, on_epoch):
        super().__init__()
        self.on_epoch = on_epoch
        self._began = None
        self._train_seconds = None

    def on_epoch_begin(self, epoch, logs=None):
        self._began = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        seconds = float(logs.get("train_seconds", 0.0))
        epoch_wall = time.perf_counter() - (self._began or time.perf_counter())
        trained = seconds - (self._train_seconds if self._train_seconds is not None else
                             seconds - epoch_wall)
        self._train_seconds = seconds
        self.on_epoch({"epoch": epoch + 1, "train_seconds": round(seconds, 3),
                       "val_seconds": round(max(0.0, epoch_wall - trained), 3),
                       "clean_accuracy": float(logs.get("val_accuracy", float("nan"))),
                       "robust_accuracy": float(logs.get("val_robust_accuracy", float("nan")))})


def run_folder(output_dir, method, seed):
    """The folder of the run of `method` with `seed` under `output_dir`."""
    return os.path.join(output_dir, "runs", f"{method}-seed{seed}")


def budget_epochs(config):
    """The epochs `config`'s method trains for the study's budget of
    `config.epochs` (Free-AT: epochs / replays)."""
    return sgn_methods.registry.budget_epochs(config.method, config.epochs,
                                              **config.method_options())


def run_config(config, folder, validation, n_test=None):
    """The `TrainConfig` that trains the study's run of `config` (resolved) into
    `folder`: the method's budget in epochs, the study's validation, the final
    test on the first `n_test` test images (None: all)."""
    config = config.resolved()
    if n_test is None:
        n_test = sgn_data.info(config.dataset).num_examples["test"]
    return dataclasses.replace(config, output_dir=folder, epochs=budget_epochs(config),
                               n_test=n_test, verbose=0, **validation.config_fields())


def _read_json(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _check_settings(folder, expected):
    """Refuse a run folder whose `config.json` differs from `expected` (a
    `TrainConfig`) in a field that changes the run's result."""
    path = os.path.join(folder, "config.json")
    if expected is None or not os.path.exists(path):
        return
    ignore = set(resumable_fields()) - set(_TEST_FIELDS)
    # A config.json of an older layout compares as today's (unfinished runs resume).
    changed = training.run_folder.differences(saved_settings(_read_json(path)),
                                              expected.to_dict(), ignore=ignore)
    if changed:
        raise ArgumentError(
            f"{folder} holds a run made with other settings (changed: "
            f"{training.run_folder.describe_differences(changed)}). Use another output_dir, "
            "or delete that folder to train it again.")


def read_run(folder, expected=None):
    """The study's result of the finished training run in `folder` (None if it
    has not finished), its settings checked against `expected` (a `TrainConfig`
    from `run_config`; another run's folder is refused, unfinished or not).

    The result: `method`, `seed`, `epochs`, `budget_epochs`, `curve` (a point per
    epoch: `epoch`, `train_seconds`, `clean_accuracy`, `robust_accuracy` on the
    validation images), `best_epoch`, `best_val_robust_accuracy`, `final` (the
    run's own final test of its best model), `config`, `summary`, `history`."""
    _check_settings(folder, expected)
    if not os.path.exists(os.path.join(folder, SUMMARY_FILE)):
        return None
    summary = _read_json(os.path.join(folder, SUMMARY_FILE))
    history = _read_json(os.path.join(folder, "history.json"))
    config = _read_json(os.path.join(folder, "config.json"))
    curve = [{"epoch": i + 1, "train_seconds": round(float(seconds), 3),
              "clean_accuracy": float(clean), "robust_accuracy": float(robust)}
             for i, (seconds, clean, robust) in enumerate(zip(
                 history["train_seconds"], history["val_accuracy"],
                 history["val_robust_accuracy"]))]
    estimate = summary.get("validation_estimate", {})
    final = {key: summary[key] for key in ("clean_accuracy", "robust_accuracy", "per_attack",
                                           "protocol")}
    final.update(split="test", n_examples=summary["n_test_examples"],
                 suite=summary["protocol"].get("suite", "quick"),
                 protocol_label=(f"{summary['protocol'].get('suite', 'quick')}, "
                                 f"{summary['n_test_examples']} test images, the run's final "
                                 "test of its best-val-epoch model"))
    return {
        "method": summary["method"], "seed": config["seed"], "epochs": summary["epochs"],
        "budget_epochs": config.get("budget_epochs", summary["epochs"]),
        "model": summary["model"], "dataset": summary["dataset"],
        "epsilon": summary["epsilon"], "norm": summary["norm"], "curve": curve,
        "best_epoch": summary["best_epoch"],
        "best_val_robust_accuracy": summary["best_val_robust_accuracy"],
        "train_seconds": curve[-1]["train_seconds"] if curve else summary["train_seconds"],
        "validation": (f"clean accuracy and PGD-{estimate.get('steps')} robust accuracy on "
                       f"{estimate.get('n_examples')} validation images, every epoch"),
        "final": final, "config": config, "summary": summary, "history": history}


def train_run(config, folder, validation, on_epoch=None, n_test=None):
    """Train (or resume) the study's run of `config` into `folder` through
    `keras_sgn.training.train`, calling `on_epoch(point)` after each epoch;
    returns its result (`read_run`)."""
    train_config = run_config(config, folder, validation, n_test)
    callbacks = [EpochHook(on_epoch)] if on_epoch is not None else []
    training.train(train_config, callbacks=callbacks)
    result = read_run(folder, train_config)
    result["budget_epochs"] = config.epochs
    return result


def model_sha256(folder):
    """The sha256 of the run's best model file: what an evaluation measured."""
    digest = hashlib.sha256()
    with open(os.path.join(folder, BEST_MODEL_FILE), "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def evaluation_settings(folder, attacks, n_test=None, sanity_checks=False):
    """What makes a test evaluation of a run's best model (stored beside it)."""
    return {"split": "test", "attacks": attacks if isinstance(attacks, str) else list(attacks),
            "n_examples": n_test, "sanity_checks": bool(sanity_checks),
            "model_sha256": model_sha256(folder)}


def stored_evaluation(folder, role, settings):
    """The evaluation `eval-<role>.json` of `folder` if it was made with
    `settings` (see `evaluation_settings`), else None."""
    path = os.path.join(folder, f"eval-{role}.json")
    if not os.path.exists(path):
        return None
    report = _read_json(path)
    return report if report.get("settings") == settings else None


def evaluate_best(result, folder, role, attacks, n_test=None, data_dir=None,
                  sanity_checks=False, verbose=False):
    """Evaluate the run's best model on the first `n_test` test images (None:
    all) with `attacks` (a preset name or a list), and store the report as
    `eval-<role>.json` with its settings and protocol label."""
    settings = evaluation_settings(folder, attacks, n_test, sanity_checks)
    model = keras.saving.load_model(os.path.join(folder, BEST_MODEL_FILE))
    test_ds = sgn_data.load(result["dataset"], "test", EVAL_BATCH_SIZE, data_dir=data_dir,
                            n_examples=n_test)
    report = evaluation.evaluate_robustness(
        model, test_ds, result["epsilon"], result["norm"], attacks=attacks,
        run_sanity_checks=sanity_checks, seed=0, verbose=verbose,
        num_classes=sgn_data.info(result["dataset"]).num_classes)
    report.update(settings=settings, split="test", suite=suite_name(attacks),
                  model=f"best validation epoch ({result['best_epoch']} of {result['epochs']})",
                  protocol_label=(f"{suite_name(attacks)} ({suite_text(attacks)}), "
                                  f"{report['n_examples']} test images, best-val-epoch model"))
    io_utils.atomic_write_json(os.path.join(folder, f"eval-{role}.json"), report)
    return report
