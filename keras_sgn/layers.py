"""Self-gradient feedback sites.

A `SelfGradient` layer marks a point of the network where the training step may
read the loss gradient and inject a perturbation built from it (DESIGN section 2).
In a plain call it is the identity, so a trained SGN is an ordinary network at
inference time.

The two passes of a self-gradient step are driven from outside the model by two
context managers, so one functional graph serves plain inference, the
self-gradient pass and the feedback pass:

```python
with keras_sgn.layers.record_sites() as activations:
    logits = model(x, training=False)        # activations[name] = a_s
with keras_sgn.layers.inject_sites({name: delta}):
    logits = model(x, training=True)         # a_s + delta at each site
```

The context is thread-local because `tf.distribute.MirroredStrategy` runs each
replica's step in its own thread.
"""

import contextlib
import threading

import keras
import tensorflow as tf

NORMALIZATIONS = ("l2_relative", "sign", "raw")

_STATE = threading.local()


def _current():
    return getattr(_STATE, "value", None)


@contextlib.contextmanager
def _site_mode(mode, payload):
    previous = _current()
    _STATE.value = (mode, payload)
    try:
        yield payload
    finally:
        _STATE.value = previous


def record_sites():
    """Context in which every hidden site records the tensor it passes on.

    Yields a dict `{site_name: activation}` that fills as the model runs. Take
    gradients with respect to these tensors to get `dL/da_s` at every site from
    one backward pass.
    """
    return _site_mode("record", {})


def inject_sites(deltas):
    """Context in which each hidden site named in `deltas` adds its delta."""
    return _site_mode("inject", dict(deltas))


def sites_of(model):
    """All `SelfGradient` layers of `model`, nested models included, in order."""
    found = []
    for layer in model.layers:
        if isinstance(layer, SelfGradient):
            found.append(layer)
        elif isinstance(layer, keras.Model):
            found.extend(sites_of(layer))
    return found


def hidden_sites_of(model):
    return [site for site in sites_of(model) if not site.input_site]


def has_input_site(model):
    return any(site.input_site for site in sites_of(model))


def _per_example_reduce(fn, tensor):
    axes = list(range(1, len(tensor.shape)))
    return fn(tensor, axis=axes, keepdims=True)


def normalize_gradient(gradient, activation, normalization, epsilon=1e-12):
    """`N(g)` of DESIGN section 2, computed per example in float32.

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
    raise ValueError(
        f"normalization must be one of {NORMALIZATIONS}, got {normalization!r}."
    )


@keras.saving.register_keras_serializable(package="keras_sgn")
class SelfGradient(keras.layers.Layer):
    """A self-gradient feedback site: identity except inside a training step.

    In a plain call the layer returns its input. Under `record_sites()` it
    records the tensor it passes on, so one backward pass yields the loss
    gradient at every site; under `inject_sites(deltas)` it adds
    `deltas[self.name]`, which the training step builds as
    `beta * N(dL/da)` (see `normalize_gradient`).

    The input site (`input_site=True`, placed on the raw image before input
    normalisation) is a marker: its perturbation is the attack step
    `alpha * sign(g)` projected to the threat model, which the training method
    applies to the image itself so that it honours the epsilon-ball and [0, 1].

    Args:
        beta: strength of the feedback at this hidden site, a fraction of the
            activation's size for `"l2_relative"`. Must be >= 0.
        normalization: `"l2_relative"` (default), `"sign"` or `"raw"`.
        input_site: whether this site is the input image (site 0).
        **kwargs: standard `keras.layers.Layer` arguments (`name`, `dtype`...).

    Example:

    ```python
    inputs = keras.Input((8, 8, 1))
    x = keras_sgn.layers.SelfGradient(input_site=True, name="site_input")(inputs)
    x = keras.layers.Conv2D(16, 3, activation="relu")(x)
    x = keras_sgn.layers.SelfGradient(beta=0.1, name="site_stage1")(x)
    ```

    Reference:
        Aboutalebi, Shafiee, Wong. "Self-Gradient Networks", arXiv 2011.09364
        (abstract only; the mechanism is this project's reconstruction).
    """

    def __init__(self, beta=0.01, normalization="l2_relative", input_site=False, **kwargs):
        super().__init__(**kwargs)
        beta = float(beta)
        if not beta >= 0.0:
            raise ValueError(f"beta must be >= 0 (a feedback strength), got {beta}.")
        if normalization not in NORMALIZATIONS:
            raise ValueError(
                f"normalization must be one of {NORMALIZATIONS}, got {normalization!r}."
            )
        self.beta = beta
        self.normalization = normalization
        self.input_site = bool(input_site)
        self.supports_masking = True

    def call(self, inputs):
        state = _current()
        if state is None or self.input_site:
            return inputs
        mode, payload = state
        if mode == "plain":
            return inputs
        if mode == "record":
            # Record the tensor that downstream layers consume, so its gradient
            # is exactly dL/da_s.
            outputs = tf.identity(inputs)
            payload[self.name] = outputs
            return outputs
        delta = payload.get(self.name)
        if delta is None:
            return inputs
        return inputs + tf.cast(delta, inputs.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            beta=self.beta, normalization=self.normalization, input_site=self.input_site
        )
        return config


def plain_sites():
    """Context in which every site is the identity, even in a model with
    `feedback_at_inference=True`. Training methods run their own passes in it."""
    return _site_mode("plain", None)


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
        `activations` and `site_gradients` (dicts keyed by site name) and
        `variable_gradients` (a list aligned with `variables`).
    """
    from keras_sgn import attacks  # same level of the house; import here to keep layers light

    with tf.GradientTape() as tape:
        tape.watch(x)
        with record_sites() as activations:
            logits = forward(x)
        if labels is None:
            labels = tf.argmax(logits, axis=-1, output_type=tf.int32)
        loss = tf.reduce_mean(attacks.cross_entropy_loss(labels, logits))
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


def feedback_deltas(sites, activations, site_gradients, stop_gradient=True):
    """`delta_s = beta_s * N(g_s)` for every hidden site reached by the pass."""
    deltas = {}
    for site in sites:
        if site.input_site or site.name not in site_gradients or site.beta == 0.0:
            continue
        gradient = site_gradients[site.name]
        if gradient is None:
            continue
        delta = site.beta * normalize_gradient(
            gradient, activations[site.name], site.normalization
        )
        deltas[site.name] = tf.stop_gradient(delta) if stop_gradient else delta
    return deltas
