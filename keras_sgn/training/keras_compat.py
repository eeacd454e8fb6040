"""Every place keras_sgn reaches into Keras internals, in one module.

Each function names the Keras version it was written against (3.15, with
TensorFlow 2.21) and why it is needed; re-check them when Keras is upgraded
(the tests of tests/test_distributed.py, test_multiworker.py and
test_preemption.py exercise every one).
"""

import tensorflow as tf

# Keras 3.15: `fit` on a dataset of known length creates two dataset iterators
# per epoch (keras/src/trainers/epoch_iterator.py: one as the epoch starts, one
# as it ends). The exact resume of `train()` replays them
# (tests/test_preemption.py::test_keras_makes_two_iterators_per_epoch checks it).
KERAS_ITERATORS_PER_EPOCH = 2


def patch_multi_worker_reduction():
    """Keras 3.15: `fit`/`evaluate` reduce every step output under
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


def created_under_strategy(model):
    """Whether `model` was created under a `tf.distribute` strategy scope
    (Keras 3.15 keeps it in the private `_distribute_strategy`)."""
    return getattr(model, "_distribute_strategy", None) is not None


def fully_built(model):
    """Whether the model, each of its layers and its compiled loss and metrics
    are built (Keras 3.15 private attributes), so `fit` needs no batch to build."""
    compiled = [getattr(model, "_compile_metrics", None), getattr(model, "_compile_loss", None)]
    return (model.built and all(layer.built for layer in model._flatten_layers())
            and all(c is None or c.built for c in compiled))


def build_without_a_batch(model, strategy):
    """Keras 3.15: before the first epoch, `fit` draws a batch from a fresh
    training iterator to build the model symbolically
    (`Trainer._maybe_symbolic_build`), then starts over.

    - With a shuffled dataset every epoch then sees the order of the next epoch
      of a single-device run. A fully built model (ours are) needs no batch:
      only the optimizer is built, and epoch k sees the same order on any strategy.
    - Under `MultiWorkerMirroredStrategy` the batch it draws is reduced across
      workers, which fails (keras-team/keras#20585, tensorflow/tensorflow#72388).
      A model not yet built is built from this worker's first local batch.

    Replaces the model's `_maybe_symbolic_build` by one that does that."""

    def maybe_symbolic_build(iterator=None, data_batch=None):
        if data_batch is None and iterator is not None and not fully_built(model):
            for _, _, batches in iterator:
                data_batch = tf.nest.map_structure(
                    lambda v: (strategy.experimental_local_results(v)[0]
                               if isinstance(v, tf.distribute.DistributedValues) else v),
                    next(batches))
                break
        with strategy.scope():
            model._symbolic_build(data_batch=data_batch)

    model._maybe_symbolic_build = maybe_symbolic_build


def set_initial_epoch(model, epoch):
    """Make the next `fit` of `model` start at `epoch`, as Keras 3.15's
    `BackupAndRestore` does (through the private `model._initial_epoch`;
    `None` clears it so a later `fit` is not affected)."""
    model._initial_epoch = epoch


def initial_epoch(model):
    """The epoch set by `set_initial_epoch` (None if none is pending)."""
    return getattr(model, "_initial_epoch", None)
