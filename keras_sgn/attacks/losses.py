"""Per-example losses the attacks maximise, all on logits (cast to float32).

`LOSSES` maps the short names the attacks accept (`"ce"`, `"cw"`, `"kl"`,
`"dlr"`) to the functions.
"""

import tensorflow as tf

_TINY = 1e-12


def cross_entropy_loss(labels, logits):
    """Per-example softmax cross-entropy for integer `labels`."""
    labels = tf.cast(tf.reshape(labels, [-1]), tf.int32)
    return tf.nn.sparse_softmax_cross_entropy_with_logits(
        labels=labels, logits=tf.cast(logits, tf.float32)
    )


def margin_loss(labels, logits):
    """Per-example Carlini-Wagner margin `max_{j != y} z_j - z_y` (to maximise)."""
    labels = tf.cast(tf.reshape(labels, [-1]), tf.int32)
    logits = tf.cast(logits, tf.float32)
    one_hot = tf.one_hot(labels, tf.shape(logits)[-1], dtype=logits.dtype)
    true_logit = tf.reduce_sum(one_hot * logits, axis=-1)
    other_logit = tf.reduce_max(logits - 1e9 * one_hot, axis=-1)
    return other_logit - true_logit


def kl_loss(target_probabilities, logits):
    """Per-example `KL(p || softmax(logits))`, the TRADES inner objective."""
    p = tf.cast(target_probabilities, tf.float32)
    log_q = tf.nn.log_softmax(tf.cast(logits, tf.float32), axis=-1)
    return tf.reduce_sum(p * (tf.math.log(p + _TINY) - log_q), axis=-1)


def dlr_loss(labels, logits):
    """Per-example Difference of Logits Ratio (Croce & Hein 2020), to maximise.

    `-(z_y - max_{i != y} z_i) / (z_pi1 - z_pi3 + 1e-12)` with `pi` sorting the
    logits in decreasing order: the margin, made invariant to shifting and
    scaling the logits. Needs at least 3 classes.
    """
    labels = tf.cast(tf.reshape(labels, [-1]), tf.int32)
    logits = tf.cast(logits, tf.float32)
    is_true = tf.one_hot(labels, tf.shape(logits)[-1], on_value=True, off_value=False)
    true_logit = tf.gather(logits, labels, axis=1, batch_dims=1)
    other_logit = tf.reduce_max(tf.where(is_true, logits.dtype.min, logits), axis=-1)
    top = tf.math.top_k(logits, 3).values
    return -(true_logit - other_logit) / (top[:, 0] - top[:, 2] + _TINY)


def targeted_dlr_loss(labels, logits, target_labels):
    """Per-example targeted DLR (Croce & Hein 2020), to maximise towards `target_labels`.

    `-(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2 + 1e-12)`. Needs at least 4 classes.
    """
    labels = tf.cast(tf.reshape(labels, [-1]), tf.int32)
    target_labels = tf.cast(tf.reshape(target_labels, [-1]), tf.int32)
    logits = tf.cast(logits, tf.float32)
    true_logit = tf.gather(logits, labels, axis=1, batch_dims=1)
    target_logit = tf.gather(logits, target_labels, axis=1, batch_dims=1)
    top = tf.math.top_k(logits, 4).values
    return -(true_logit - target_logit) / (top[:, 0] - 0.5 * (top[:, 2] + top[:, 3]) + _TINY)


LOSSES = {"ce": cross_entropy_loss, "cw": margin_loss, "kl": kl_loss, "dlr": dlr_loss}
