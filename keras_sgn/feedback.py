"""The self-gradient pass and the feedback it produces (docs/guide.md, "The
self-gradient mechanism").

`self_gradient_pass` runs a model under `keras_sgn.layers.record_sites()` and
takes ONE backward pass for the input gradient, the gradient at every hidden
site and, if asked, the weight gradients. `feedback_deltas` turns the site
gradients into the deltas `beta_s * N(g_s)` that `inject_sites` adds.

Every delta is a per-example quantity: it does not depend on the batch an
example sits in, its size, or the number of replicas sharing it. `l2_relative`
and `sign` are scale-free per example; `raw` uses each example's own loss
gradient.
"""

import tensorflow as tf

from keras_sgn import attacks
from keras_sgn.errors import ArgumentError
from keras_sgn.layers import NORMALIZATIONS, record_sites


def _per_example_reduce(fn, tensor):
    axes = list(range(1, len(tensor.shape)))
    return fn(tensor, axis=axes, keepdims=True)


def normalize_gradient(gradient, activation, normalization, epsilon=1e-12):
    """The feedback's normalisation `N(g)` (docs/guide.md), computed per example in float32.

    Args:
        gradient: `dL/da` at the site, shape `(batch, ...)`.
        activation: the site's activation `a`, same shape.
        normalization: `"l2_relative"` (`||a||_2 * g / ||g||_2`), `"sign"`
            (`std(a) * sign(g)`) or `"raw"` (`g`).
    """
    gradient = tf.cast(gradient, tf.float32)
    activation = tf.cast(activation, tf.float32)
    if normalization == "l2_relative":
        grad_norm = tf.sqrt(_per_example_reduce(tf.reduce_sum, tf.square(gradient)))
        act_norm = tf.sqrt(_per_example_reduce(tf.reduce_sum, tf.square(activation)))
        return act_norm * gradient / (grad_norm + epsilon)
    if normalization == "sign":
        std = tf.sqrt(
            _per_example_reduce(
                tf.reduce_mean,
                tf.square(activation - _per_example_reduce(tf.reduce_mean, activation)),
            )
        )
        return std * tf.sign(gradient)
    if normalization == "raw":
        return gradient
    raise ArgumentError(
        f"normalization must be one of {NORMALIZATIONS}. Received: "
        f"normalization={normalization!r}."
    )


def self_gradient_pass(forward, x, labels=None, variables=()):
    """The self-gradient pass: ONE backward pass gives dL/dx, dL/da_s at every
    hidden site, and (if `variables` are given) the weight gradients.

    Args:
        forward: callable images -> logits, called under `record_sites()`.
        x: the (possibly randomly started) input images.
        labels: integer labels; None uses the model's own predictions
            (feedback at inference time).
        variables: weights whose gradients of the same loss are also wanted.

    Returns:
        A dict with `logits`, `loss` (batch mean cross-entropy), `input_gradient`,
        `activations` and `site_gradients` (dicts keyed by site name; gradients
        of the batch-mean `loss`) and `variable_gradients` (a list aligned with
        `variables`).
    """
    with tf.GradientTape() as tape:
        tape.watch(x)
        with record_sites() as activations:
            logits = forward(x)
        if labels is None:
            labels = tf.argmax(logits, axis=-1, output_type=tf.int32)
        loss = tf.reduce_mean(attacks.core.cross_entropy_loss(labels, logits))
    names = list(activations)
    variables = list(variables)
    gradients = tape.gradient(loss, [x] + [activations[n] for n in names] + variables)
    return {
        "logits": logits,
        "loss": loss,
        "input_gradient": gradients[0],
        "activations": activations,
        "site_gradients": dict(zip(names, gradients[1:1 + len(names)])),
        "variable_gradients": gradients[1 + len(names):],
    }


def per_example_gradient(mean_gradient):
    """Each example's own loss gradient from the gradient of the batch-MEAN
    loss (which scales every example's by 1/batch), in float32."""
    gradient = tf.cast(mean_gradient, tf.float32)
    return gradient * tf.cast(tf.shape(gradient)[0], tf.float32)


def feedback_deltas(sites, activations, site_gradients, stop_gradient=True):
    """`delta_s = beta_s * N(g_s)` for every hidden site reached by the pass.

    `site_gradients` are those of the batch-mean loss, as `self_gradient_pass`
    returns them. `raw` feedback takes `g_s` per example
    (`per_example_gradient`), so the same example gets the same delta in a batch
    of 1 or 64 and on 1 or 2 replicas; `l2_relative` and `sign` do not depend on
    the gradient's scale.
    """
    deltas = {}
    for site in sites:
        if site.input_site or site.name not in site_gradients or site.beta == 0.0:
            continue
        gradient = site_gradients[site.name]
        if gradient is None:
            continue
        if site.normalization == "raw":
            gradient = per_example_gradient(gradient)
        delta = site.beta * normalize_gradient(
            gradient, activations[site.name], site.normalization
        )
        deltas[site.name] = tf.stop_gradient(delta) if stop_gradient else delta
    return deltas
