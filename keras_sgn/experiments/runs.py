"""One run of the reproduction: train a method with one seed through
`keras_sgn.training`, record its validation curve, keep its best model, and
evaluate that model on the test split.

A run owns a folder (`run_folder`). Every file is written atomically, so a
rerun trusts what it finds:

- `progress.json`: the curve so far, rewritten after every epoch;
- `best.keras`: the model of the best validation robust accuracy so far;
- `result.json`: written once training finished; a rerun with the same
  settings skips the run (other settings: an error, never a silent mix);
- `eval-<role>.json`: a finished test evaluation of `best.keras`, skipped on a
  rerun with the same suite and examples.

A run killed before `result.json` is trained again from the start.
"""

import dataclasses
import datetime
import glob
import json
import os
import time

import keras

from keras_sgn import data as sgn_data
from keras_sgn import evaluation, io_utils, training
from keras_sgn import methods as sgn_methods
from keras_sgn.attacks import parse_attacks
from keras_sgn.errors import ArgumentError
from keras_sgn.experiments.analysis import best_point

RESULT_FILE = "result.json"
PROGRESS_FILE = "progress.json"
BEST_MODEL_FILE = "best.keras"
EVAL_BATCH_SIZE = 256


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
    """The per-epoch measurement on the validation split: clean accuracy on its
    first `n_examples` (None: all) and a cheap robust estimate, the worst case
    of `attacks` (each on every point), on the same images."""

    attacks: tuple = ("pgd-ce:steps=20",)
    n_examples: int = None
    seed: int = 0

    def settings(self):
        return {"split": "validation", "attacks": list(self.attacks),
                "n_examples": self.n_examples, "seed": self.seed}

    def images(self, dataset=None):
        """`"all 1000"`, `"the first 500"`: the first `n_examples` (or all)
        validation images, counted when `dataset` is given."""
        available = None if dataset is None else sgn_data.info(dataset).num_examples["validation"]
        if self.n_examples is None or (available is not None and self.n_examples >= available):
            return "all" if available is None else f"all {available}"
        return f"the first {self.n_examples}"

    def describe(self, dataset=None):
        images = self.images(dataset)
        return (f"clean accuracy and a cheap robust estimate (worst case of "
                f"{suite_text(self.attacks)}, each attack on every point) on {images} "
                "validation images")

    def dataset(self, config):
        return sgn_data.load(config.dataset, "validation", EVAL_BATCH_SIZE,
                             data_dir=config.data_dir, n_examples=self.n_examples)

    def measure(self, model, dataset, epsilon, norm):
        report = evaluation.evaluate_robustness(
            model, dataset, epsilon, norm, attacks=list(self.attacks), cascade=False,
            run_sanity_checks=False, seed=self.seed, verbose=False)
        return {"clean_accuracy": report["clean_accuracy"],
                "robust_accuracy": report["robust_accuracy"],
                "per_attack": report["per_attack"], "n_examples": report["n_examples"]}


class EpochRecorder(keras.callbacks.Callback):
    """After each epoch: the cumulative training wall time (this callback's
    validation and anything after it excluded), the validation point, the
    progress file; `logs["val_robust_accuracy"]` for the best-model checkpoint
    placed after it. `on_epoch(point)` is called with each new point."""

    def __init__(self, validation, dataset, epsilon, norm, progress_path=None, on_epoch=None):
        super().__init__()
        self.validation, self.dataset = validation, dataset
        self.epsilon, self.norm = epsilon, norm
        self.progress_path, self.on_epoch = progress_path, on_epoch
        self.curve = []
        self.train_seconds = 0.0
        self._start = None

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.train_seconds += time.perf_counter() - self._start
        started = time.perf_counter()
        point = {"epoch": epoch + 1, "train_seconds": round(self.train_seconds, 3),
                 **self.validation.measure(self.model, self.dataset, self.epsilon, self.norm)}
        point["val_seconds"] = round(time.perf_counter() - started, 3)
        self.curve.append(point)
        if logs is not None:
            logs["val_robust_accuracy"] = point["robust_accuracy"]
        if self.progress_path:
            io_utils.atomic_write_json(self.progress_path, {"curve": self.curve})
        if self.on_epoch is not None:
            self.on_epoch(point)


def run_folder(output_dir, method, seed):
    """The folder of the run of `method` with `seed` under `output_dir`."""
    return os.path.join(output_dir, "runs", f"{method}-seed{seed}")


def identity(config, validation):
    """What makes a run's result: the recipe of its (resolved) config and the validation."""
    return {"config": config.recipe(), "validation": validation.settings()}


def load_result(folder, expected_identity):
    """The finished result in `folder`, or None; refuses one made with other settings."""
    path = os.path.join(folder, RESULT_FILE)
    if not os.path.exists(path):
        return None
    result = _read_json(path)
    if result.get("identity") != expected_identity:
        old, new = result.get("identity", {}), expected_identity
        changed = sorted(k for part in ("config", "validation")
                         for k in set(old.get(part, {})) | set(new[part])
                         if old.get(part, {}).get(k) != new[part].get(k))
        raise ArgumentError(
            f"{folder} holds a finished run made with other settings (changed: "
            f"{', '.join(changed) or 'format'}). Use another output_dir, or delete that "
            "folder to train it again.")
    return result


def _read_json(path):
    with open(path) as f:
        return json.load(f)


def train_run(config, folder, validation, on_epoch=None, verbose=0):
    """Train the run of `config` (a `TrainConfig`) for its method's budget of
    `config.epochs` epochs (`keras_sgn.methods.registry.budget_epochs`), with the
    per-epoch `validation`; keep `best.keras`; write and return `result.json`'s dict."""
    config = config.resolved()
    os.makedirs(folder, exist_ok=True)
    for stale in glob.glob(os.path.join(folder, "eval-*.json")):
        os.remove(stale)  # evaluations of an earlier model of this run
    keras.utils.set_random_seed(config.seed)
    epochs = sgn_methods.registry.budget_epochs(config.method, config.epochs,
                                                **config.method_options())
    train_ds = sgn_data.load(config.dataset, "train", config.batch_size,
                             data_dir=config.data_dir, seed=config.seed,
                             n_examples=config.n_train, drop_remainder=True,
                             with_index=sgn_methods.registry.method_class(config.method).keyed_by_example)
    steps_per_epoch = int(train_ds.cardinality())
    if steps_per_epoch < 1:
        raise ArgumentError(f"Fewer training examples than one batch (batch_size="
                            f"{config.batch_size}, n_train={config.n_train}): raise n_train.")
    model = training.optimization.compile_for_training(
        training.optimization.build_model(config, sgn_data.info(config.dataset)), config,
        steps_per_epoch, epochs=epochs)
    training.run.build_method_state(config, [model.method])
    recorder = EpochRecorder(validation, validation.dataset(config), config.epsilon,
                             config.norm, os.path.join(folder, PROGRESS_FILE), on_epoch)
    checkpoint = training.callbacks.SafeCheckpoint(os.path.join(folder, BEST_MODEL_FILE))
    model.fit(train_ds, epochs=epochs, callbacks=[recorder, checkpoint], verbose=verbose,
              shuffle=False)  # keras_sgn.data shuffles the training split
    best = best_point(recorder.curve)
    result = {
        "method": config.method, "seed": config.seed, "epochs": epochs,
        "budget_epochs": config.epochs, "model": config.model, "dataset": config.dataset,
        "epsilon": config.epsilon, "norm": config.norm, "curve": recorder.curve,
        "best_epoch": best["epoch"], "best_val_robust_accuracy": best["robust_accuracy"],
        "train_seconds": recorder.curve[-1]["train_seconds"],
        "validation": validation.describe(), "identity": identity(config, validation),
        "config": config.to_dict(),
        "finished_at": datetime.datetime.now(datetime.timezone.utc).isoformat(
            timespec="seconds")}
    io_utils.atomic_write_json(os.path.join(folder, RESULT_FILE), result)
    return result


def evaluation_settings(result, attacks, n_test=None, sanity_checks=False):
    """What makes a test evaluation of a run's best model (stored beside it)."""
    return {"split": "test", "attacks": attacks if isinstance(attacks, str) else list(attacks),
            "n_examples": n_test, "sanity_checks": bool(sanity_checks),
            "run_finished_at": result["finished_at"]}


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
    """Evaluate the run's `best.keras` on the first `n_test` test images (None:
    all) with `attacks` (a preset name or a list), and store the report as
    `eval-<role>.json` with its settings and protocol label."""
    settings = evaluation_settings(result, attacks, n_test, sanity_checks)
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
