"""Training runs: recipes, strategies, schedules, safe checkpoints, `train()`.

`tools/train.py` is a thin flag parser around `train(TrainConfig(...))`, so
everything a run does is also available from Python.
"""

import dataclasses
import glob
import json
import math
import os
import shutil
import signal
import socket
import tempfile
import threading
import time
import urllib.parse

import keras
import tensorflow as tf

from keras_sgn import data as sgn_data
from keras_sgn.io_utils import atomic_save_model, atomic_write_json, atomic_write_text
from keras_sgn import evaluation
from keras_sgn import methods as sgn_methods
from keras_sgn import models as sgn_models

STRATEGIES = ("auto", "default", "one_device", "mirrored", "multi_worker", "tpu")
SCHEDULES = ("constant", "piecewise", "cyclic", "cosine")
OPTIMIZERS = ("sgd", "adam")

# Defaults that follow the dataset unless given explicitly. The CIFAR-like
# recipes follow "Fast is better than free" (Wong et al. 2020) for the
# single-step methods: SGD, cyclic learning rate, 8/255.
DATASET_RECIPES = {
    "cifar10": dict(model="sgn_resnet18", epsilon=8 / 255, epochs=30, batch_size=128,
                    learning_rate=0.2, lr_schedule="cyclic", optimizer="sgd",
                    weight_decay=5e-4),
    "cifar100": dict(model="sgn_resnet18", epsilon=8 / 255, epochs=30, batch_size=128,
                     learning_rate=0.2, lr_schedule="cyclic", optimizer="sgd",
                     weight_decay=5e-4),
    "svhn_cropped": dict(model="sgn_resnet18", epsilon=8 / 255, epochs=15, batch_size=128,
                         learning_rate=0.05, lr_schedule="cyclic", optimizer="sgd",
                         weight_decay=5e-4),
    "mnist": dict(model="sgn_small_cnn", epsilon=0.3, epochs=10, batch_size=128,
                  learning_rate=1e-3, lr_schedule="cosine", optimizer="adam",
                  weight_decay=0.0),
    "fashion_mnist": dict(model="sgn_small_cnn", epsilon=0.1, epochs=10, batch_size=128,
                          learning_rate=1e-3, lr_schedule="cosine", optimizer="adam",
                          weight_decay=0.0),
    "digits": dict(model="sgn_small_cnn", epsilon=0.1, epochs=30, batch_size=64,
                   learning_rate=2e-3, lr_schedule="cosine", optimizer="adam",
                   weight_decay=0.0),
}
RECIPE_KEYS = ("model", "epsilon", "epochs", "batch_size", "learning_rate", "lr_schedule",
               "optimizer", "weight_decay")


@dataclasses.dataclass
class TrainConfig:
    """Everything a training run needs. `None` fields follow the dataset recipe
    (`DATASET_RECIPES`) or the method's own default (`step_size`, `attack_steps`).
    The defaults are the CIFAR10 SGN ResNet-18 recipe."""

    dataset: str = "cifar10"
    data_dir: str = None
    model: str = None
    method: str = "sgn"
    epochs: int = None
    batch_size: int = None
    learning_rate: float = None
    lr_schedule: str = None
    optimizer: str = None
    weight_decay: float = None
    epsilon: float = None
    norm: str = "linf"
    step_size: float = None
    attack_steps: int = None
    # Feedback hyperparameters (DESIGN section 2).
    sites: str = "default"
    beta: str = "0.01"
    normalization: str = "l2_relative"
    clean_weight: float = 0.0
    second_order: bool = False
    feedback_at_inference: bool = False
    free_replays: int = 8
    trades_beta: float = 6.0
    # Validation and final evaluation.
    eval_steps: int = 10
    test_steps: int = 20
    test_restarts: int = 1
    n_train: int = None
    n_eval: int = None
    # Execution.
    strategy: str = "default"
    tpu: str = None
    seed: int = 0
    jit_compile: bool = False
    sync_batch_norm: bool = True
    mixed_precision: bool = False
    output_dir: str = "runs/sgn"
    backup_every_steps: int = 0
    verbose: int = 1

    def resolved(self):
        """A copy with dataset-dependent defaults filled in, validated."""
        if self.dataset not in DATASET_RECIPES:
            sgn_data.info(self.dataset)  # raises the clear unknown-dataset error
        recipe = DATASET_RECIPES[self.dataset]
        values = dataclasses.asdict(self)
        for key in RECIPE_KEYS:
            if values[key] is None:
                values[key] = recipe[key]
        config = TrainConfig(**values)
        config.validate()
        return config

    def validate(self):
        if self.method not in sgn_methods.METHODS:
            sgn_methods.get(self.method)  # raises with close matches
        if self.model not in sgn_models.list_models():
            sgn_models.get(self.model)
        if self.strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {STRATEGIES}, got {self.strategy!r}.")
        if self.strategy == "tpu" and not self.tpu:
            raise ValueError("strategy 'tpu' needs --tpu: the TPU name, 'local' on a TPU VM, "
                             "or grpc://host:8470.")
        if int(self.backup_every_steps) != self.backup_every_steps or self.backup_every_steps < 0:
            raise ValueError("backup_every_steps must be an integer >= 0 (0: at epoch ends "
                             f"only), got {self.backup_every_steps}.")
        if self.lr_schedule not in SCHEDULES:
            raise ValueError(f"lr_schedule must be one of {SCHEDULES}, got {self.lr_schedule!r}.")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}.")
        for name in ("epochs", "batch_size", "eval_steps", "test_steps", "test_restarts"):
            value = getattr(self, name)
            if int(value) != value or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value}.")
        if self.attack_steps is not None and (int(self.attack_steps) != self.attack_steps
                                              or self.attack_steps < 1):
            raise ValueError(f"attack_steps must be an integer >= 1, got {self.attack_steps}.")
        if not self.epsilon >= 0:
            raise ValueError(f"epsilon must be >= 0 (pixel units), got {self.epsilon}.")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate}.")
        if not self.weight_decay >= 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay}.")
        for name in ("n_train", "n_eval"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1 (or unset for all), got {value}.")
        self.method_options()  # validates method arguments early
        parse_sites(self.sites)
        parse_beta(self.beta)

    def method_options(self):
        options = dict(epsilon=self.epsilon, norm=self.norm, step_size=self.step_size,
                       attack_steps=self.attack_steps)
        if self.method in ("sgn", "sgn-pgd"):
            options.update(clean_weight=self.clean_weight, second_order=self.second_order)
        if self.method == "free":
            options["replays"] = self.free_replays
        if self.method == "trades":
            options["trades_beta"] = self.trades_beta
        if self.method == "standard":
            options.pop("attack_steps")
        sgn_methods.get(self.method, **options)
        return options


def parse_sites(sites):
    """`"default"`, `"none"` or a comma list such as `"input,stage1,stage3"`."""
    if isinstance(sites, (list, tuple)):
        return tuple(sites)
    if sites in (None, "", "none"):
        return ()
    if sites == "default":
        return "default"
    return tuple(s.strip() for s in sites.split(",") if s.strip())


def parse_beta(beta):
    """A float (`"0.1"`) or per-site values (`"stage1=0.05,stage2=0.1"`)."""
    if isinstance(beta, (int, float, dict)):
        return beta
    try:
        if "=" not in beta:
            return float(beta)
        return {k.strip(): float(v) for k, v in (item.split("=") for item in beta.split(","))}
    except ValueError:
        raise ValueError(
            f"beta must be a number or 'site=value,...' (e.g. 'stage1=0.05'), got {beta!r}."
        ) from None


class StrategyError(RuntimeError):
    """A distribution strategy could not be set up (no TPU reachable, ...)."""


def _tf_config_tasks():
    """Number of tasks in the `TF_CONFIG` cluster (0 without `TF_CONFIG`)."""
    try:
        cluster = json.loads(os.environ.get("TF_CONFIG") or "{}").get("cluster", {})
    except ValueError:
        return 0
    return sum(len(tasks) for tasks in cluster.values())


def resolve_strategy_name(name, tpu=None, num_gpus=None, tf_config_tasks=None):
    """The concrete strategy `name` stands for; `auto` picks the best local choice:
    `tpu` if a TPU address is given, else `multi_worker` if `TF_CONFIG` describes
    a cluster of several tasks, else `mirrored` with several GPUs, `one_device`
    with one GPU, `default` (the CPU) without."""
    if name not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}, got {name!r}.")
    if name != "auto":
        return name
    if tpu:
        return "tpu"
    if tf_config_tasks is None:
        tf_config_tasks = _tf_config_tasks()
    if tf_config_tasks > 1:
        return "multi_worker"
    if num_gpus is None:
        num_gpus = len(tf.config.list_physical_devices("GPU"))
    return "mirrored" if num_gpus > 1 else "one_device" if num_gpus == 1 else "default"


def _check_tpu_reachable(tpu, timeout=10.0):
    """Fail fast on a `grpc://host:port` TPU address nobody answers at
    (TensorFlow would wait for it indefinitely)."""
    if not tpu.startswith("grpc://"):
        return
    address = urllib.parse.urlparse(tpu)
    try:
        socket.create_connection((address.hostname, address.port or 8470), timeout).close()
    except OSError as error:
        raise StrategyError(
            f"--tpu={tpu}: no TPU answers at {address.hostname}:{address.port or 8470} "
            f"({error}). Give --tpu the TPU's name, 'local' on a TPU VM, or its "
            "grpc://host:8470 address.") from None


def _tpu_strategy(tpu):
    _check_tpu_reachable(tpu)
    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu)
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        strategy = tf.distribute.TPUStrategy(resolver)
    except Exception as error:  # resolver, network and runtime errors alike
        raise StrategyError(
            f"--tpu={tpu}: could not connect to the TPU ({type(error).__name__}: "
            f"{str(error).splitlines()[0][:300]}). Give --tpu the TPU's name, 'local' on "
            "a TPU VM, or its grpc://host:8470 address.") from error
    return strategy


_PROGRAM_STRATEGIES = {}  # multi_worker and tpu: one per program


def get_strategy(name="default", tpu=None):
    """A `tf.distribute` strategy by name:

    - `default`: no distribution;
    - `one_device`: the first GPU, else the CPU;
    - `mirrored`: all local GPUs (all logical CPUs when there is no GPU);
    - `multi_worker`: `MultiWorkerMirroredStrategy`, the cluster read from
      `TF_CONFIG`. Create it at program start, before any other TensorFlow
      work (collective ops are configured once per program);
    - `tpu`: `TPUStrategy` on the TPU `tpu` (a name, `"local"` on a TPU VM, or
      `grpc://host:8470`); fails fast with a `StrategyError` if unreachable;
    - `auto`: see `resolve_strategy_name`.

    `multi_worker` and `tpu` strategies are created once per program and reused.
    """
    name = resolve_strategy_name(name, tpu)
    if name in _PROGRAM_STRATEGIES:
        return _PROGRAM_STRATEGIES[name]
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "tpu":
        if not tpu:
            raise StrategyError("strategy 'tpu' needs --tpu: the TPU's name, 'local' on a "
                                "TPU VM, or grpc://host:8470.")
        strategy = _PROGRAM_STRATEGIES[name] = _tpu_strategy(tpu)
        return strategy
    if name == "multi_worker":
        strategy = _PROGRAM_STRATEGIES[name] = tf.distribute.MultiWorkerMirroredStrategy()
        return strategy
    gpus = tf.config.list_logical_devices("GPU")
    if name == "one_device":
        return tf.distribute.OneDeviceStrategy(gpus[0].name if gpus else "/cpu:0")
    devices = [d.name for d in gpus] or [d.name for d in tf.config.list_logical_devices("CPU")]
    return tf.distribute.MirroredStrategy(devices)


def worker_info(strategy):
    """`(task_type, task_id, num_workers, is_chief)` of this process.

    The chief is the `chief` task if the cluster has one, else `worker` 0; a
    process outside a cluster (no `TF_CONFIG`) is its own chief. Only the chief
    writes a run's files; the other workers write to a temporary folder.
    """
    resolver = getattr(strategy, "cluster_resolver", None)
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) or resolver is None:
        return None, 0, 1, True
    task_type, task_id = resolver.task_type, resolver.task_id or 0
    cluster = resolver.cluster_spec().as_dict()
    num_workers = sum(len(tasks) for job, tasks in cluster.items()
                      if job in ("chief", "worker")) or 1
    if task_type is None:
        chief = True
    elif "chief" in cluster:
        chief = task_type == "chief"
    else:
        chief = task_type == "worker" and task_id == 0
    return task_type, task_id, num_workers, chief


def describe_strategy(strategy, name, global_batch_size):
    """One line for the log: strategy, replicas, workers, devices, batch split."""
    task_type, task_id, num_workers, chief = worker_info(strategy)
    replicas = strategy.num_replicas_in_sync
    try:
        devices = ", ".join(strategy.extended.worker_devices)
    except (RuntimeError, AttributeError):  # the default strategy has no device list
        gpus = tf.config.list_logical_devices("GPU")
        devices = (gpus[0].name if gpus else "/device:CPU:0") + " (TensorFlow's placement)"
    where = ""
    if num_workers > 1 or task_type:
        where = (f" over {num_workers} worker(s); this is {task_type or 'worker'} {task_id}"
                 f"{' (chief)' if chief else ''}")
    return (f"strategy={name} ({type(strategy).__name__}): {replicas} replica(s){where}; "
            f"devices: {devices}; global batch {global_batch_size} "
            f"({global_batch_size // replicas} per replica)")


def _patch_keras_multi_worker_reduction():
    """Keras 3.15's `fit`/`evaluate` reduce every step output under
    `MultiWorkerMirroredStrategy` with `strategy.reduce("MEAN", v, axis=0)`,
    which fails on scalar metrics ("Invalid reduction dimension 0",
    keras-team/keras#20585). Reduce with `axis=None` instead: the elementwise
    mean over replicas, what Keras does on every other strategy. Only the
    multi-worker case is touched; idempotent."""
    from keras.src.backend.tensorflow import trainer as tf_trainer

    original = getattr(tf_trainer, "reduce_per_replica", None)
    is_multi_worker = getattr(tf_trainer, "_collective_all_reduce_multi_worker", None)
    if original is None or is_multi_worker is None or getattr(original, "_keras_sgn", False):
        return

    def reduce_per_replica(values, strategy, reduction):
        if reduction in ("auto", "mean") and is_multi_worker(strategy):
            return tf.nest.map_structure(
                lambda v: strategy.reduce("MEAN", v, axis=None), values)
        return original(values, strategy, reduction)

    reduce_per_replica._keras_sgn = True
    tf_trainer.reduce_per_replica = reduce_per_replica


def _fully_built(model):
    compiled = [getattr(model, "_compile_metrics", None), getattr(model, "_compile_loss", None)]
    return (model.built and all(layer.built for layer in model._flatten_layers())
            and all(c is None or c.built for c in compiled))


def prepare_distributed_fit(model, strategy):
    """Workarounds for Keras 3.15's `fit`/`evaluate` under `tf.distribute`
    (a no-op for a model created outside a strategy scope):

    - before the first epoch, Keras draws a batch from a fresh training
      iterator to build the model symbolically, then starts over: with a
      shuffled dataset every epoch then sees the order of the next epoch of a
      single-device run. A fully built model (ours are) needs no batch: only
      the optimizer is built, and epoch k sees the same order on any strategy;
    - under `MultiWorkerMirroredStrategy` that symbolic build reduces the whole
      batch across workers, and step outputs are reduced with `axis=0`; both
      fail (keras-team/keras#20585, tensorflow/tensorflow#72388). A model not
      yet built is built from this worker's first local batch, and outputs are
      reduced with `axis=None`.
    """
    if getattr(model, "_distribute_strategy", None) is None:
        return
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        _patch_keras_multi_worker_reduction()

    def maybe_symbolic_build(iterator=None, data_batch=None):
        if data_batch is None and iterator is not None and not _fully_built(model):
            for _, _, batches in iterator:
                data_batch = tf.nest.map_structure(
                    lambda v: (strategy.experimental_local_results(v)[0]
                               if isinstance(v, tf.distribute.DistributedValues) else v),
                    next(batches))
                break
        with strategy.scope():
            model._symbolic_build(data_batch=data_batch)

    model._maybe_symbolic_build = maybe_symbolic_build


def synchronize_batch_norm(model):
    """Compute BatchNorm's training-mode statistics over the global batch
    (`synchronized=True`: an all-reduce per layer), so N replicas train like one
    replica at the same global batch. Returns the number of layers changed."""
    changed = 0
    for layer in getattr(model, "layers", ()):
        if isinstance(layer, keras.layers.BatchNormalization) and not layer.synchronized:
            layer.synchronized = True
            changed += 1
        changed += synchronize_batch_norm(layer)  # nested models
    return changed


def use_logical_cpus(count):
    """Split the first CPU into `count` logical devices, to try `mirrored`
    without GPUs. Must run before TensorFlow initialises its devices."""
    if count > 1:
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * count)


def check_global_batch_size(batch_size, strategy):
    replicas = strategy.num_replicas_in_sync
    if batch_size % replicas:
        raise ValueError(
            f"batch_size ({batch_size}, global) must be divisible by the number of "
            f"replicas ({replicas}); use e.g. --batch_size={replicas * max(1, batch_size // replicas)}.")


@keras.saving.register_keras_serializable(package="keras_sgn")
class TriangularSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """Cyclic (one-cycle triangular) learning rate: 0 -> `peak_lr` at
    `peak_fraction` of training -> 0, as in "Fast is better than free".

    Args:
        peak_lr: the maximum learning rate.
        total_steps: steps of the whole run.
        peak_fraction: where the peak sits, as a fraction of the run.
    """

    def __init__(self, peak_lr, total_steps, peak_fraction=0.4):
        self.peak_lr = float(peak_lr)
        self.total_steps = int(total_steps)
        self.peak_fraction = float(peak_fraction)

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        peak = max(1.0, self.peak_fraction * self.total_steps)
        rest = max(1.0, self.total_steps - peak)
        up = step / peak
        down = (self.total_steps - step) / rest
        return self.peak_lr * tf.clip_by_value(tf.minimum(up, down), 0.0, 1.0)

    def get_config(self):
        return {"peak_lr": self.peak_lr, "total_steps": self.total_steps,
                "peak_fraction": self.peak_fraction}


def learning_rate_schedule(name, learning_rate, total_steps):
    """`constant`, `piecewise` (x0.1 at 50% and 75%), `cyclic` or `cosine`."""
    if name == "constant":
        return learning_rate
    if name == "piecewise":
        return keras.optimizers.schedules.PiecewiseConstantDecay(
            [int(total_steps * 0.5), int(total_steps * 0.75)],
            [learning_rate, learning_rate * 0.1, learning_rate * 0.01])
    if name == "cyclic":
        return TriangularSchedule(learning_rate, total_steps)
    if name == "cosine":
        return keras.optimizers.schedules.CosineDecay(learning_rate, max(1, total_steps))
    raise ValueError(f"lr_schedule must be one of {SCHEDULES}, got {name!r}.")


def make_optimizer(name, schedule, weight_decay):
    if name == "sgd":
        return keras.optimizers.SGD(schedule, momentum=0.9, nesterov=True,
                                    weight_decay=weight_decay or None)
    return keras.optimizers.Adam(schedule, weight_decay=weight_decay or None)


class SafeCheckpoint(keras.callbacks.Callback):
    """Keeps `last.weights.h5` every epoch and the best model by `monitor`,
    both replaced atomically. Robust overfitting is real: the best epoch by
    validation robust accuracy is often not the last one.

    Args:
        best_path: where the best full model (`.keras`) goes.
        last_path: where the latest weights go (None: not kept).
        monitor: a log key, `val_robust_accuracy` by default.
    """

    def __init__(self, best_path, last_path=None, monitor="val_robust_accuracy"):
        super().__init__()
        self.best_path = best_path
        self.last_path = last_path
        self.monitor = monitor
        self.best = -math.inf
        self.best_epoch = None

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if self.last_path:
            atomic_save_model(self.model, self.last_path)
        value = logs.get(self.monitor)
        if value is None:
            raise KeyError(f"SafeCheckpoint monitors {self.monitor!r} but the logs only have "
                           f"{sorted(logs)}; pass validation data to fit().")
        if value > self.best:
            self.best, self.best_epoch = float(value), epoch + 1
            atomic_save_model(self.model, self.best_path)

    def get_state(self):
        """What a resumed run needs to keep replacing the best model only on
        improvement (kept in `PreemptionCheckpoint` backups)."""
        return {"best": None if self.best == -math.inf else self.best,
                "best_epoch": self.best_epoch}

    def set_state(self, state):
        self.best = -math.inf if state.get("best") is None else float(state["best"])
        self.best_epoch = state.get("best_epoch")


class TrainingPreempted(Exception):
    """Raised out of `fit` (and `train`) by `PreemptionCheckpoint` after a
    termination signal, once the backup is saved: rerunning the same command
    resumes from it."""

    #: Exit code of `tools/train.py` after a preemption (as TensorFlow's
    #: `PreemptionCheckpointHandler`); schedulers restart the job on it.
    exit_code = 42


class PreemptionCheckpoint(keras.callbacks.Callback):
    """Backs up the training state so that a run killed at any moment (SIGKILL
    included) and restarted with the same command resumes where it was; on
    SIGTERM it saves at the end of the current batch and stops.

    Like `keras.callbacks.BackupAndRestore` (which it replaces in `train`), plus:

    - **atomic**: the weights go to a new file (temporary file, fsync, rename),
      then `state.json` (temporary file, fsync, rename) is switched to point
      at it; `state.json` is the single commit point, so a crash leaves the
      previous backup or the new one, never a mix or a half-written file;
    - **complete**: model and optimizer variables (moments, step counter,
      hence the learning-rate schedule and the attacks' seeds), the epoch
      and step within the epoch, the logs of every epoch so far, and the
      state of `stateful` callbacks (e.g. `SafeCheckpoint`'s best score);
    - **SIGTERM** (`signals`): the handler only sets a flag; at the end of the
      current batch the state is saved and `TrainingPreempted` is raised out of
      `fit` (no validation of the partial epoch, which could outlast a
      preemption notice). With several workers the flag is agreed on (an
      all-reduce after every batch), so all workers stop at the same step;
    - **multi-worker**: every worker saves (reads of synchronised variables
      may be collective), only the chief into `backup_dir`; the others pass a
      temporary `save_dir`. All workers restore from `backup_dir`, which must
      then be on storage every worker sees (GCS, NFS), and check that they
      restored the same epoch and step.

    Resuming: `restore()` (called by `on_train_begin` if not called before)
    loads the state; a standalone `fit` then starts at the restored epoch via
    `model._initial_epoch`, as `BackupAndRestore` does, replaying a
    partially done epoch from its start. `keras_sgn.training.train` instead
    finishes the partial epoch on the remaining steps only.

    Args:
        backup_dir: folder of the backup (used by nothing else).
        save_dir: where this process writes its backups (default `backup_dir`;
            a temporary folder on non-chief workers).
        save_every_steps: also back up every N training steps (0: at epoch ends only).
        stateful: `{name: callback}` of objects with `get_state()` / `set_state()`.
        delete_on_completion: remove the backup once all planned epochs are done
            (`train` removes it itself, after writing its final files).
        signals: signals that request a save-and-stop (default SIGTERM).
    """

    STATE_FILE = "state.json"

    def __init__(self, backup_dir, save_dir=None, save_every_steps=0, stateful=None,
                 delete_on_completion=True, signals=(signal.SIGTERM,)):
        super().__init__()
        if not backup_dir:
            raise ValueError("PreemptionCheckpoint needs a backup_dir.")
        self.backup_dir = backup_dir
        self.save_dir = save_dir or backup_dir
        self.save_every_steps = int(save_every_steps or 0)
        self.stateful = dict(stateful or {})
        self.delete_on_completion = delete_on_completion
        self.signals = tuple(signals)
        self.epoch = 0          # completed epochs
        self.step = 0           # steps done in epoch `self.epoch`
        self.history = {}       # logs of every completed epoch, resumed runs included
        self.restored = None    # the state restored, if any
        self._restore_done = False
        self._step_offset = 0
        self._first_epoch = True
        self._termination_requested = False
        self._previous_handlers = {}
        self._reduce = None
        self._workers = None

    # -- backup files ----------------------------------------------------------
    def _state_path(self, directory=None):
        return os.path.join(directory or self.backup_dir, self.STATE_FILE)

    def read_state(self):
        """The committed state of `backup_dir`, or None if there is none."""
        path = self._state_path()
        if not os.path.exists(path):
            return None
        with open(path) as f:
            return json.load(f)

    def save(self):
        """Commit a backup of the current state into `save_dir` (atomic)."""
        os.makedirs(self.save_dir, exist_ok=True)
        for leftover in glob.glob(os.path.join(self.save_dir, ".tmp-*")):
            os.remove(leftover)  # from a process killed while saving; never referenced
        name = f"weights-epoch{self.epoch:05d}-step{self.step:07d}.weights.h5"
        atomic_save_model(self.model, os.path.join(self.save_dir, name))
        state = {
            "epoch": self.epoch,
            "step": self.step,
            "weights": name,
            "history": self.history,
            "callbacks": {key: cb.get_state() for key, cb in self.stateful.items()},
            "saved_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
        }
        atomic_write_text(self._state_path(self.save_dir), json.dumps(state, indent=1) + "\n")
        for old in glob.glob(os.path.join(self.save_dir, "weights-*.weights.h5")):
            if os.path.basename(old) != name:
                os.remove(old)

    def restore(self):
        """Load the committed backup of `backup_dir` into the model (weights
        and optimizer state) and this callback; returns the state or None."""
        self._restore_done = True
        state = self.read_state()
        if state is not None:
            weights = os.path.join(self.backup_dir, state["weights"])
            if not self.model.built:
                raise ValueError("PreemptionCheckpoint: build the model (call it on a batch) "
                                 "before fit() so the backup can be restored.")
            if self.model.optimizer is not None and not self.model.optimizer.built:
                self.model.optimizer.build(self.model.trainable_variables)
            try:
                self.model.load_weights(weights)
            except Exception as error:
                raise RuntimeError(
                    f"The backup in {self.backup_dir} does not fit this model ({error}). "
                    "Was the command changed? Delete that folder to start over.") from error
            self.epoch, self.step = int(state["epoch"]), int(state["step"])
            self.history = {k: list(v) for k, v in state.get("history", {}).items()}
            for key, values in state.get("callbacks", {}).items():
                if key in self.stateful:
                    self.stateful[key].set_state(values)
        self._check_workers_agree()
        self.restored = state
        return state

    def delete(self):
        """Remove the backup (this process's `save_dir`)."""
        shutil.rmtree(self.save_dir, ignore_errors=True)

    # -- multi-worker agreement -------------------------------------------------
    def _num_workers(self):
        if self._workers is None:
            self._workers = worker_info(self.model.distribute_strategy)[2]
        return self._workers

    def _sum_over_replicas(self, values):
        """Sum of a float vector over all replicas of all workers (collective)."""
        strategy = self.model.distribute_strategy
        if self._reduce is None:
            @tf.function
            def reduce(values):
                per_replica = strategy.run(lambda: tf.identity(values))
                return strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)

            self._reduce = reduce
        return self._reduce(tf.constant(values, tf.float32)).numpy()

    def _check_workers_agree(self):
        if self._num_workers() <= 1:
            return
        replicas = self.model.distribute_strategy.num_replicas_in_sync
        e, s = float(self.epoch), float(self.step)
        total = self._sum_over_replicas([e, s, e * e, s * s])
        # All equal iff the sums of squares equal (sum)^2 / replicas.
        if (abs(total[2] * replicas - total[0] ** 2) > 0.5
                or abs(total[3] * replicas - total[1] ** 2) > 0.5):
            raise RuntimeError(
                f"Workers restored different backups (this one: epoch {self.epoch}, step "
                f"{self.step}; mean over workers: epoch {total[0] / replicas:.2f}). The "
                f"backup folder {self.backup_dir} must be on storage every worker sees "
                "(GCS, NFS).")

    def _termination_agreed(self):
        flag = 1.0 if self._termination_requested else 0.0
        if self._num_workers() > 1:
            flag = float(self._sum_over_replicas([flag])[0])
        return flag > 0

    # -- signals -----------------------------------------------------------------
    def _on_signal(self, signum, frame):
        self._termination_requested = True

    def _install_handlers(self):
        if threading.current_thread() is not threading.main_thread():
            return  # signal handlers can only be set from the main thread
        for signum in self.signals:
            self._previous_handlers[signum] = signal.signal(signum, self._on_signal)

    def _uninstall_handlers(self):
        for signum, handler in self._previous_handlers.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
        self._previous_handlers = {}

    def _stop_if_requested(self, saved):
        if self._termination_agreed():
            if not saved:
                self.save()
            self._uninstall_handlers()
            raise TrainingPreempted(
                f"Termination requested: state saved at epoch {self.epoch + 1}, step "
                f"{self.step} ({self.epoch} epoch(s) complete) in {self.backup_dir}. "
                "Rerun the same command to resume.")

    # -- callback hooks -------------------------------------------------------------
    def on_train_begin(self, logs=None):
        if not self._restore_done:
            self.restore()
            if self.epoch or self.step:
                self.model._initial_epoch = self.epoch  # as BackupAndRestore does
            self.step = 0  # a standalone fit replays a partial epoch from its start
        self._first_epoch = True
        self._install_handlers()

    def on_epoch_begin(self, epoch, logs=None):
        # The first epoch of a fit that resumes a partial epoch continues its
        # step count (train() feeds it only the remaining steps).
        if self._first_epoch and epoch == self.epoch:
            self._step_offset = self.step
        else:
            self._step_offset = 0
            self.step = 0
        self._first_epoch = False
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        self.step = self._step_offset + batch + 1
        saved = bool(self.save_every_steps) and self.step % self.save_every_steps == 0
        if saved:
            self.save()
        self._stop_if_requested(saved)

    def on_epoch_end(self, epoch, logs=None):
        self.epoch, self.step = epoch + 1, 0
        for key, value in (logs or {}).items():
            self.history.setdefault(key, []).append(float(value))
        self.save()
        self._stop_if_requested(saved=True)

    def on_train_end(self, logs=None):
        self._uninstall_handlers()
        if getattr(self.model, "_initial_epoch", None) is not None:
            self.model._initial_epoch = None
        if self.delete_on_completion and self.epoch >= self.params.get("epochs", 0):
            self.delete()


def build_model(config, info, **model_kwargs):
    """The model of `config` for dataset `info`; `model_kwargs` reach the
    builder (e.g. `width=8` of `sgn_small_cnn`)."""
    return sgn_models.get(
        config.model, input_shape=info.image_shape, num_classes=info.num_classes,
        mean=info.mean, std=info.std, sites=parse_sites(config.sites),
        beta=parse_beta(config.beta), normalization=config.normalization,
        feedback_at_inference=config.feedback_at_inference, **model_kwargs)


def compile_for_training(model, config, steps_per_epoch, strategy=None, epochs=None):
    """Compile `model` as every run of `config` does (learning-rate schedule
    over the whole run, optimizer, method and attack options), then apply the
    `tf.distribute` fixes. Call it under the strategy's scope."""
    strategy = strategy or tf.distribute.get_strategy()
    epochs = config.epochs if epochs is None else epochs
    schedule = learning_rate_schedule(config.lr_schedule, config.learning_rate,
                                      steps_per_epoch * epochs)
    model.compile(optimizer=make_optimizer(config.optimizer, schedule, config.weight_decay),
                  method=config.method, seed=config.seed, eval_steps=config.eval_steps,
                  jit_compile_attack=config.jit_compile, **config.method_options())
    prepare_distributed_fit(model, strategy)
    if config.sync_batch_norm and strategy.num_replicas_in_sync > 1:
        synchronize_batch_norm(model)
    return model


def _plot_history(history, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    epochs = range(1, len(history.get("loss", [])) + 1)
    for key in ("loss", "val_loss"):
        if key in history:
            ax_loss.plot(epochs, history[key], label=key)
    for key in ("accuracy", "val_accuracy", "val_robust_accuracy"):
        if key in history:
            ax_acc.plot(epochs, history[key], label=key)
    ax_loss.set_xlabel("epoch"), ax_acc.set_xlabel("epoch")
    ax_loss.legend(), ax_acc.legend()
    ax_acc.set_ylim(0, 1)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# Config fields a resumed run may change without invalidating its backup.
_RESUME_MAY_CHANGE = ("verbose", "test_steps", "test_restarts", "backup_every_steps",
                      "jit_compile", "strategy", "tpu", "data_dir", "output_dir")


def _check_resumable(saved_config, config):
    if saved_config is None:
        return
    current = dataclasses.asdict(config)
    changed = sorted(k for k, v in saved_config.items()
                     if k not in _RESUME_MAY_CHANGE and k in current and current[k] != v)
    if changed:
        raise ValueError(
            f"{config.output_dir} holds a backup of an unfinished run with other settings "
            f"({', '.join(f'{k}: {saved_config[k]!r} -> {current[k]!r}' for k in changed)}). "
            "Rerun the same command to resume it, or use another --output_dir.")


# Dataset iterators Keras' fit creates per epoch of a dataset of known length
# (keras/src/trainers/epoch_iterator.py: one as the epoch starts, one as it ends).
_KERAS_ITERATORS_PER_EPOCH = 2


def _for_distribution(dataset):
    """Shard by example: in-memory and tfds pipelines alike give every worker
    its part of each global batch (file sharding needs >= 1 file per worker)."""
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = (
        tf.data.experimental.AutoShardPolicy.DATA)
    return dataset.with_options(options)


def train(config, strategy=None):
    """Train, keep the best model by validation robust accuracy, evaluate it on
    the test split, and write `output_dir/{model.keras, summary.json, ...}`.

    `config.batch_size` is the global batch, split across replicas (and
    workers). Training batches are all full (`drop_remainder`): every step has
    the same global batch on every strategy, TPUs get static shapes and no
    replica gets an empty batch.

    Preemption-safe: the state is backed up atomically in
    `output_dir/backup` at every epoch end (and every `backup_every_steps`
    steps); rerunning the same command after a crash or a kill resumes from
    it, finishing a partial epoch on its remaining steps. On SIGTERM the state
    is saved at the end of the current batch and `TrainingPreempted` is
    raised. The backup is removed once `summary.json` is written.

    Multi-worker (`strategy="multi_worker"`): every worker runs the same
    command with its own `TF_CONFIG`; only the chief writes into
    `output_dir` (the others use a temporary folder, removed at the end), and
    only the chief runs the final test and returns the summary (other workers
    return `{"chief": False, ...}`). `output_dir` must be on storage all
    workers see for resuming.

    Args:
        config: a `TrainConfig`.
        strategy: a `tf.distribute.Strategy` to use instead of creating one
            from `config.strategy` (create `multi_worker` ones at program start).

    Returns the summary dict (`clean_accuracy`, `robust_accuracy`, `epochs`,
    `method`, `train_seconds`, ...).
    """
    config = config.resolved()
    strategy_name = resolve_strategy_name(config.strategy, config.tpu)
    if strategy is None:
        strategy = get_strategy(strategy_name, tpu=config.tpu)  # first TF work of the run
    info = sgn_data.info(config.dataset)
    keras.utils.set_random_seed(config.seed)
    if config.mixed_precision:
        policy = "mixed_float16" if tf.config.list_logical_devices("GPU") else "mixed_bfloat16"
        keras.mixed_precision.set_global_policy(policy)
    check_global_batch_size(config.batch_size, strategy)
    task_type, task_id, num_workers, chief = worker_info(strategy)
    if config.verbose:
        print(describe_strategy(strategy, strategy_name, config.batch_size), flush=True)

    on_tpu = isinstance(strategy, tf.distribute.TPUStrategy)
    train_ds = sgn_data.load(config.dataset, "train", config.batch_size,
                             data_dir=config.data_dir, seed=config.seed,
                             n_examples=config.n_train, drop_remainder=True)
    val_ds = sgn_data.load(config.dataset, "validation", config.batch_size,
                           data_dir=config.data_dir, n_examples=config.n_eval,
                           drop_remainder=on_tpu)
    test_ds = sgn_data.load(config.dataset, "test", config.batch_size,
                            data_dir=config.data_dir, n_examples=config.n_eval)
    steps_per_epoch = int(train_ds.cardinality())
    if steps_per_epoch < 0:
        steps_per_epoch = sum(1 for _ in train_ds)
    if steps_per_epoch < 1:
        raise ValueError(f"Fewer training examples than one global batch "
                         f"(batch_size={config.batch_size}, n_train={config.n_train}): "
                         "lower --batch_size or raise --n_train.")
    train_ds, val_ds = _for_distribution(train_ds), _for_distribution(val_ds)

    # Only the chief writes into output_dir; other workers write the same files
    # (saving may involve collective reads) into a temporary folder.
    write_dir = config.output_dir if chief else tempfile.mkdtemp(
        prefix=f"keras_sgn-{task_type or 'worker'}{task_id}-")
    backup = None
    try:
        os.makedirs(write_dir, exist_ok=True)
        with strategy.scope():
            model = compile_for_training(build_model(config, info), config, steps_per_epoch,
                                         strategy)
        checkpoint = SafeCheckpoint(os.path.join(write_dir, "model.keras"),
                                    os.path.join(write_dir, "checkpoints", "last.weights.h5"))
        backup = PreemptionCheckpoint(
            os.path.join(config.output_dir, "backup"),
            save_dir=os.path.join(write_dir, "backup"),
            save_every_steps=config.backup_every_steps,
            stateful={"safe_checkpoint": checkpoint}, delete_on_completion=False)
        backup.set_model(model)
        config_path = os.path.join(config.output_dir, "config.json")
        if backup.read_state() is not None and os.path.exists(config_path):
            with open(config_path) as f:
                _check_resumable(json.load(f), config)
        if chief:
            atomic_write_json(config_path, dataclasses.asdict(config))
        with strategy.scope():  # optimizer variables are built under the strategy
            state = backup.restore()
        if state is not None and config.verbose:
            print(f"Resuming from {backup.backup_dir}: {backup.epoch} of {config.epochs} "
                  f"epoch(s) complete" + (f", epoch {backup.epoch + 1} at step {backup.step}"
                                          f"/{steps_per_epoch}" if backup.step else ""),
                  flush=True)
        callbacks = [checkpoint, backup,  # SafeCheckpoint first: its state goes in the backup
                     keras.callbacks.TensorBoard(os.path.join(write_dir, "logs"))]

        start = time.time()
        epoch = backup.epoch
        # The shuffle and augmentation of keras_sgn.data draw new seeds for each
        # iterator, and Keras 3.15's fit makes two per epoch (one to train on, one
        # made as the epoch ends and dropped): create those of the epochs already
        # done, so a resumed run sees the data of an uninterrupted one.
        for _ in range(_KERAS_ITERATORS_PER_EPOCH * min(epoch, config.epochs)):
            iter(train_ds)
        if backup.step and epoch < config.epochs:
            # Finish the interrupted epoch on its remaining steps only.
            remaining = train_ds.skip(backup.step)
            callback_list = keras.callbacks.CallbackList(
                callbacks, add_history=True, add_progbar=config.verbose != 0,
                verbose=config.verbose, epochs=config.epochs,
                steps=steps_per_epoch - backup.step, model=model)
            model.fit(remaining, epochs=epoch + 1, initial_epoch=epoch,
                      validation_data=val_ds, callbacks=callback_list,
                      verbose=config.verbose, shuffle=False)
            epoch += 1
        if epoch < config.epochs:
            model.fit(train_ds, epochs=config.epochs, initial_epoch=epoch,
                      validation_data=val_ds, callbacks=callbacks, verbose=config.verbose,
                      shuffle=False)  # keras_sgn.data already shuffles the training split
        train_seconds = time.time() - start
        history = backup.history

        if not chief:
            backup.delete()
            _barrier(backup)  # wait for the chief's final files
            return {"chief": False, "task": f"{task_type}:{task_id}",
                    "epochs": backup.epoch, "replicas": strategy.num_replicas_in_sync}

        atomic_write_json(os.path.join(write_dir, "history.json"), history)
        _plot_history(history, os.path.join(write_dir, "training_curves.png"))
        best = keras.saving.load_model(checkpoint.best_path)
        report = evaluation.evaluate(best, test_ds, epsilon=config.epsilon, norm=config.norm,
                                     steps=config.test_steps, restarts=config.test_restarts,
                                     seed=config.seed, verbose=bool(config.verbose))
        summary = {
            "clean_accuracy": report["clean_accuracy"],
            "robust_accuracy": report["robust_accuracy"],
            "per_attack": report["per_attack"],
            "protocol": {**report["protocol"], "split": "test"},
            "n_test_examples": report["n_examples"],
            "epochs": backup.epoch,
            "best_epoch": checkpoint.best_epoch,
            "best_val_robust_accuracy": checkpoint.best,
            "method": config.method,
            "model": config.model,
            "dataset": config.dataset,
            "epsilon": config.epsilon,
            "train_seconds": round(train_seconds, 2),
            "resumed_from_epoch": None if state is None else state["epoch"],
            "strategy": strategy_name,
            "replicas": strategy.num_replicas_in_sync,
            "workers": num_workers,
            "parameters": int(best.count_params()),
        }
        atomic_write_json(os.path.join(write_dir, "summary.json"), summary)
        backup.delete()  # only now: a kill before summary.json resumes after training
        _barrier(backup)
        return summary
    finally:
        if not chief:
            shutil.rmtree(write_dir, ignore_errors=True)


def _barrier(backup):
    """All workers meet here (a no-op with one worker)."""
    if backup._num_workers() > 1:
        backup._sum_over_replicas([1.0])
