"""What a run optimises with: the model of a config, learning-rate schedules,
optimizers, and the one compile step every training run goes through."""

import keras
import tensorflow as tf

from keras_sgn import layers as sgn_layers
from keras_sgn import models as sgn_models
from keras_sgn.config import (
    OPTIMIZERS,
    SCHEDULES,
    ConfigError,
    check_feedback_sites,
    parse_decay_fractions,
)
from keras_sgn.errors import ArgumentError
from keras_sgn.models.sites import parse_beta, parse_sites
from keras_sgn.training import distribute


# Registered as "keras_sgn>TriangularSchedule": saved optimizers refer to that name.
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


def learning_rate_schedule(name, learning_rate, total_steps, decay_at=(0.5, 0.75)):
    """`constant`, `piecewise` (x0.1 at each fraction of the run in `decay_at`),
    `cyclic` or `cosine`."""
    if name == "constant":
        return learning_rate
    if name == "piecewise":
        return keras.optimizers.schedules.PiecewiseConstantDecay(
            [int(total_steps * fraction) for fraction in decay_at],
            [learning_rate * 0.1 ** i for i in range(len(decay_at) + 1)])
    if name == "cyclic":
        return TriangularSchedule(learning_rate, total_steps)
    if name == "cosine":
        return keras.optimizers.schedules.CosineDecay(learning_rate, max(1, total_steps))
    raise ArgumentError(f"lr_schedule must be one of {SCHEDULES}. Received: {name!r}.")


def make_optimizer(name, schedule, weight_decay):
    """`sgd` (momentum 0.9, Nesterov) or `adam` with learning rate `schedule`."""
    if name == "sgd":
        return keras.optimizers.SGD(schedule, momentum=0.9, nesterov=True,
                                    weight_decay=weight_decay or None)
    if name == "adam":
        return keras.optimizers.Adam(schedule, weight_decay=weight_decay or None)
    raise ArgumentError(f"optimizer must be one of {OPTIMIZERS}. Received: {name!r}.")


def build_model(config, info, **model_kwargs):
    """The model of `config` for dataset `info`; `model_kwargs` reach the
    builder (e.g. `width=8` of `sgn_small_cnn`)."""
    return sgn_models.get(
        config.model, input_shape=info.image_shape, num_classes=info.num_classes,
        mean=info.mean, std=info.std, sites=parse_sites(config.sites),
        beta=parse_beta(config.beta), normalization=config.normalization,
        feedback_at_inference=config.feedback_at_inference, **model_kwargs)


def check_model_fits(model, config, info):
    """Refuse, before any data is read, a model that does not fit dataset `info`
    (a registered builder may ignore `input_shape`/`num_classes`), and a
    self-gradient method on a model without feedback sites."""
    expected, classes = tuple(info.image_shape), int(info.num_classes)
    shape = tuple(model.input_shape[1:])
    if len(shape) != len(expected) or any(s not in (None, e) for s, e in zip(shape, expected)):
        raise ConfigError("model", (
            f"model {config.model!r} takes images of shape {shape}, but {info.name!r} images "
            f"have shape {expected} (height, width, channels). Received: model="
            f"{config.model!r}, dataset={info.name!r}. Pick a model built for this dataset, or "
            "make the builder honour its input_shape argument."))
    outputs = model.output_shape[-1]
    if outputs != classes:
        raise ConfigError("model", (
            f"model {config.model!r} outputs {outputs} logits, but {info.name!r} has {classes} "
            f"classes. Received: model={config.model!r}, dataset={info.name!r}. Pick a model "
            "built for this dataset, or make the builder honour its num_classes argument."))
    try:
        check_feedback_sites(config.method, tuple(s.name for s in sgn_layers.sites_of(model)))
    except ValueError as error:
        raise ConfigError("sites", str(error).replace("sites=none", f"model {config.model!r} "
                          f"with sites={config.sites!r}")) from error


def compile_for_training(model, config, steps_per_epoch, strategy=None, epochs=None):
    """Compile `model` as every run of `config` does (learning-rate schedule
    over the whole run, optimizer, method and attack options), then apply the
    `tf.distribute` fixes. Call it under the strategy's scope."""
    strategy = strategy or tf.distribute.get_strategy()
    epochs = config.epochs if epochs is None else epochs
    schedule = learning_rate_schedule(config.lr_schedule, config.learning_rate,
                                      steps_per_epoch * epochs,
                                      parse_decay_fractions(config.lr_decay_at))
    model.compile(optimizer=make_optimizer(config.optimizer, schedule, config.weight_decay),
                  method=config.method, seed=config.seed, eval_steps=config.eval_steps,
                  jit_compile_attack=config.jit_compile, **config.method_options())
    distribute.prepare_distributed_fit(model, strategy)
    if config.sync_batch_norm and strategy.num_replicas_in_sync > 1:
        distribute.synchronize_batch_norm(model)
    return model
