"""Training runs: recipes, strategies, schedules, safe checkpoints, `train()`.

`tools/train.py` is a thin flag parser around `train(TrainConfig(...))`, so
everything a run does is also available from Python.
"""

import dataclasses
import math
import os
import time

import keras
import tensorflow as tf

from keras_sgn import data as sgn_data
from keras_sgn.io_utils import atomic_save_model, atomic_write_json  # noqa: F401
from keras_sgn import evaluation
from keras_sgn import methods as sgn_methods
from keras_sgn import models as sgn_models

STRATEGIES = ("default", "one_device", "mirrored")
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
    seed: int = 0
    jit_compile: bool = False
    mixed_precision: bool = False
    output_dir: str = "runs/sgn"
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


def get_strategy(name="default"):
    """A `tf.distribute` strategy by name: `default` (no distribution),
    `one_device` (the first GPU, else the CPU) or `mirrored` (all local GPUs, or
    all logical CPUs when there is no GPU)."""
    if name not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}, got {name!r}.")
    gpus = tf.config.list_logical_devices("GPU")
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "one_device":
        return tf.distribute.OneDeviceStrategy(gpus[0].name if gpus else "/cpu:0")
    devices = [d.name for d in gpus] or [d.name for d in tf.config.list_logical_devices("CPU")]
    return tf.distribute.MirroredStrategy(devices)


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


def build_model(config, info):
    return sgn_models.get(
        config.model, input_shape=info.image_shape, num_classes=info.num_classes,
        mean=info.mean, std=info.std, sites=parse_sites(config.sites),
        beta=parse_beta(config.beta), normalization=config.normalization,
        feedback_at_inference=config.feedback_at_inference)


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


def train(config):
    """Train, keep the best model by validation robust accuracy, evaluate it on
    the test split, and write `output_dir/{model.keras, summary.json, ...}`.

    Returns the summary dict (`clean_accuracy`, `robust_accuracy`, `epochs`,
    `method`, `train_seconds`, ...).
    """
    config = config.resolved()
    info = sgn_data.info(config.dataset)
    keras.utils.set_random_seed(config.seed)
    if config.mixed_precision:
        policy = "mixed_float16" if tf.config.list_logical_devices("GPU") else "mixed_bfloat16"
        keras.mixed_precision.set_global_policy(policy)
    strategy = get_strategy(config.strategy)
    check_global_batch_size(config.batch_size, strategy)
    if config.verbose:
        print(f"strategy={config.strategy}: {strategy.num_replicas_in_sync} replica(s), "
              f"global batch {config.batch_size} "
              f"({config.batch_size // strategy.num_replicas_in_sync} per replica)")

    train_ds = sgn_data.load(config.dataset, "train", config.batch_size,
                             data_dir=config.data_dir, seed=config.seed,
                             n_examples=config.n_train)
    val_ds = sgn_data.load(config.dataset, "validation", config.batch_size,
                           data_dir=config.data_dir, n_examples=config.n_eval)
    test_ds = sgn_data.load(config.dataset, "test", config.batch_size,
                            data_dir=config.data_dir, n_examples=config.n_eval)
    steps_per_epoch = int(train_ds.cardinality())
    if steps_per_epoch < 1:
        steps_per_epoch = sum(1 for _ in train_ds)

    os.makedirs(config.output_dir, exist_ok=True)
    atomic_write_json(os.path.join(config.output_dir, "config.json"),
                      dataclasses.asdict(config))
    with strategy.scope():
        model = build_model(config, info)
        schedule = learning_rate_schedule(config.lr_schedule, config.learning_rate,
                                          steps_per_epoch * config.epochs)
        model.compile(optimizer=make_optimizer(config.optimizer, schedule,
                                               config.weight_decay),
                      method=config.method, seed=config.seed, eval_steps=config.eval_steps,
                      jit_compile_attack=config.jit_compile, **config.method_options())
    best_path = os.path.join(config.output_dir, "model.keras")
    checkpoint = SafeCheckpoint(best_path,
                                os.path.join(config.output_dir, "checkpoints",
                                             "last.weights.h5"))
    callbacks = [
        keras.callbacks.BackupAndRestore(os.path.join(config.output_dir, "backup")),
        checkpoint,
        keras.callbacks.TensorBoard(os.path.join(config.output_dir, "logs")),
    ]
    start = time.time()
    history = model.fit(train_ds, epochs=config.epochs, validation_data=val_ds,
                        callbacks=callbacks, verbose=config.verbose,
                        shuffle=False)  # keras_sgn.data already shuffles the training split
    train_seconds = time.time() - start
    atomic_write_json(os.path.join(config.output_dir, "history.json"), history.history)
    _plot_history(history.history, os.path.join(config.output_dir, "training_curves.png"))

    best = keras.saving.load_model(best_path)
    report = evaluation.evaluate(best, test_ds, epsilon=config.epsilon, norm=config.norm,
                                 steps=config.test_steps, restarts=config.test_restarts,
                                 seed=config.seed, verbose=bool(config.verbose))
    summary = {
        "clean_accuracy": report["clean_accuracy"],
        "robust_accuracy": report["robust_accuracy"],
        "per_attack": report["per_attack"],
        "protocol": {**report["protocol"], "split": "test"},
        "n_test_examples": report["n_examples"],
        "epochs": config.epochs,
        "best_epoch": checkpoint.best_epoch,
        "best_val_robust_accuracy": checkpoint.best,
        "method": config.method,
        "model": config.model,
        "dataset": config.dataset,
        "epsilon": config.epsilon,
        "train_seconds": round(train_seconds, 2),
        "replicas": strategy.num_replicas_in_sync,
        "parameters": int(best.count_params()),
    }
    atomic_write_json(os.path.join(config.output_dir, "summary.json"), summary)
    return summary
