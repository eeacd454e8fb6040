"""Where this replica's examples sit in the global batch, and draws that do not
depend on the number of replicas.

Every replica's gradient is taken of its per-replica mean loss times
`local_batch / global_batch` (`global_weight`), because `tf.distribute` sums
gradients across replicas: that is the mean over the global batch, as one
replica would compute it, even when the last batch splits unevenly. Random
starts are drawn for the *global* batch from a seed that does not depend on the
replica, and each replica takes its own rows: replicas draw distinct starts,
and N replicas see exactly the starts one replica would see.
"""

import tensorflow as tf

from keras_sgn import attacks


def replica_count():
    return tf.distribute.get_strategy().num_replicas_in_sync


def replica_share(x):
    """`(offset, local, total)`: where this replica's examples sit in the global
    batch. `x` is this replica's batch (rows are examples).

    Outside a multi-replica strategy this is `(0, n, n)`. With a static batch
    dimension (drop_remainder, TPU) the shares are equal and no communication
    is needed; otherwise the replicas' sizes are all-gathered, so an uneven last
    batch (e.g. 41 examples over 2 replicas) is placed exactly. Replicas hold
    consecutive rows of the global batch in replica-id order, which is how
    `tf.distribute` splits a batched dataset.
    """
    n = tf.shape(x)[0]
    context = tf.distribute.get_replica_context()
    replicas = replica_count()
    if context is None or replicas == 1:
        return tf.constant(0, tf.int32), n, n
    replica = tf.cast(context.replica_id_in_sync_group, tf.int32)
    if x.shape[0] is not None:
        return replica * n, n, n * replicas
    sizes = context.all_gather(tf.reshape(n, [1]), axis=0)
    return tf.reduce_sum(sizes[:replica]), n, tf.reduce_sum(sizes)


def global_weight(x, dtype=tf.float32):
    """This replica's share of the global batch, `local / global`: gradients of
    `share * local mean`, summed over replicas, are those of the global mean."""
    _, n, total = replica_share(x)
    return tf.math.divide_no_nan(tf.cast(n, dtype), tf.cast(total, dtype))


def _global_rows(x, draw):
    """`draw(x_global)` evaluated on the global batch and sliced back to this
    replica's rows; `x_global` holds `x` at this replica's rows (zeros elsewhere).
    `draw` must treat examples independently (random starts do)."""
    offset, n, total = replica_share(x)
    rank = len(x.shape)
    padded = tf.pad(x, [[offset, total - offset - n]] + [[0, 0]] * (rank - 1))
    begin = tf.pad(tf.reshape(offset, [1]), [[0, rank - 1]])
    return tf.slice(draw(padded), begin, tf.shape(x))


def replica_random_start(x, epsilon, norm, seed):
    """`attacks.random_start` for this replica's rows of the global batch.

    `seed` must be the same on every replica (`SGNModel._step_seed()`): the
    start is drawn for the whole global batch and each replica keeps its rows,
    so replicas get distinct starts and the result does not depend on the
    number of replicas. With one replica it is exactly `attacks.random_start`.
    """
    return _global_rows(x, lambda images: attacks.core.random_start(images, epsilon, norm, seed))


def replica_normal(x, seed):
    """Standard normal noise shaped like `x`, drawn for the global batch (see
    `replica_random_start`)."""
    return _global_rows(x, lambda images: tf.random.stateless_normal(
        tf.shape(images), seed, dtype=images.dtype))
