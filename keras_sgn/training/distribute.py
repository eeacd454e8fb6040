"""Distribution strategies for training runs: choosing, creating and describing
them, the global-batch rules, and what a model needs before `fit` under one."""

import json
import os
import socket
import urllib.parse

import keras
import tensorflow as tf

from keras_sgn.config import STRATEGIES, ConfigError
from keras_sgn.errors import ArgumentError, UserError
from keras_sgn.training import keras_compat

_TPU_HINT = "Give --tpu the TPU's name, 'local' on a TPU VM, or its grpc://host:8470 address."


class StrategyError(UserError, RuntimeError):
    """A distribution strategy could not be set up (no TPU reachable, ...)."""


def tf_config_task_count():
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
        raise ArgumentError(f"strategy must be one of {STRATEGIES}. Received: {name!r}.")
    if name != "auto":
        return name
    if tpu:
        return "tpu"
    if tf_config_tasks is None:
        tf_config_tasks = tf_config_task_count()
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
            f"({error}). {_TPU_HINT}") from None


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
            f"{str(error).splitlines()[0][:300]}). {_TPU_HINT}") from error
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


def replica_sum(strategy):
    """A function `values -> numpy array`: the sum of a float vector over all
    replicas of every worker. Collective under a multi-worker strategy: every
    worker must call it at the same point of the program."""
    @tf.function
    def reduce(values):
        per_replica = strategy.run(lambda: tf.identity(values))
        return strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)

    return lambda values: reduce(tf.constant(values, tf.float32)).numpy()


def agree_with_chief(strategy, codes):
    """The chief's decision, known to every worker: `codes` is a sequence of
    0/1 flags the chief sets (the others pass zeros); returns the flags as the
    chief set them. A no-op with one worker; collective with several."""
    if worker_info(strategy)[2] <= 1:
        return [bool(c) for c in codes]
    return [bool(total > 0) for total in replica_sum(strategy)([float(c) for c in codes])]


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


def check_global_batch_size(batch_size, strategy):
    """Refuse a global batch the replicas cannot share equally."""
    replicas = strategy.num_replicas_in_sync
    if batch_size % replicas:
        raise ConfigError(
            "batch_size",
            f"batch_size ({batch_size}, global) must be divisible by the number of "
            f"replicas ({replicas}); use e.g. "
            f"--batch_size={replicas * max(1, batch_size // replicas)}.")


def shard_by_example(dataset):
    """Shard by example: in-memory and tfds pipelines alike give every worker
    its part of each global batch (file sharding needs >= 1 file per worker)."""
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = (
        tf.data.experimental.AutoShardPolicy.DATA)
    return dataset.with_options(options)


def prepare_distributed_fit(model, strategy):
    """Make `fit`/`evaluate` under `tf.distribute` train like one replica (a
    no-op for a model created outside a strategy scope): the model is built
    without drawing a batch, and under `MultiWorkerMirroredStrategy` step
    outputs are reduced so that scalars work. The Keras workarounds this takes
    are `keras_compat.build_without_a_batch` and
    `keras_compat.patch_multi_worker_reduction`."""
    if not keras_compat.created_under_strategy(model):
        return
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        keras_compat.patch_multi_worker_reduction()
    keras_compat.build_without_a_batch(model, strategy)


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
