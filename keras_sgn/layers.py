"""Self-gradient feedback sites.

A `SelfGradient` layer marks a point of the network where the training step may
read the loss gradient and inject a perturbation built from it (docs/guide.md, "The
self-gradient mechanism").
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
replica's step in its own thread. The passes themselves (`self_gradient_pass`,
`feedback_deltas`) live in `keras_sgn.feedback`.
"""

import contextlib
import threading

import keras
import tensorflow as tf

from keras_sgn.errors import ArgumentError

NORMALIZATIONS = ("l2_relative", "sign", "raw")

_STATE = threading.local()


def _current():
    return getattr(_STATE, "value", None)


def active_site_mode():
    """`"record"`, `"inject"`, `"inject_record"` or `"plain"` inside a site
    context, else None."""
    state = _current()
    return None if state is None else state[0]


@contextlib.contextmanager
def _site_mode(mode, payload, yields=None):
    previous = _current()
    _STATE.value = (mode, payload)
    try:
        yield payload if yields is None else yields
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


def inject_and_record_sites(deltas):
    """Context in which each hidden site adds its delta from `deltas` (if any)
    and records the tensor it then passes on, `a_s + delta_s`.

    Yields the dict of recorded tensors, as `record_sites()` does. One backward
    pass of the weight update then also yields the gradient at every site,
    which the next feedback can reuse (`sgn-reuse`).
    """
    recorded = {}
    return _site_mode("inject_record", (dict(deltas), recorded), yields=recorded)


def plain_sites():
    """Context in which every site is the identity, even in a model with
    `feedback_at_inference=True`. Training methods run their own passes in it."""
    return _site_mode("plain", None)


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


@keras.saving.register_keras_serializable(package="keras_sgn")
class SelfGradient(keras.layers.Layer):
    """A self-gradient feedback site: identity except inside a training step.

    In a plain call the layer returns its input. Under `record_sites()` it
    records the tensor it passes on, so one backward pass yields the loss
    gradient at every site; under `inject_sites(deltas)` it adds
    `deltas[self.name]`, which the training step builds as
    `beta * N(dL/da)` (see `keras_sgn.feedback`).

    The input site (`input_site=True`, placed on the raw image before input
    normalisation) is a marker: its perturbation is the attack step
    `alpha * sign(g)` projected to the threat model, which the training method
    applies to the image itself so that it honours the epsilon-ball and [0, 1].

    Args:
        beta: strength of the feedback at this hidden site, a fraction of the
            activation's size for `"l2_relative"`. Must be >= 0.
        normalization: `"l2_relative"` (default), `"sign"` or `"raw"` (each
            example's own loss gradient, whatever the batch it sits in).
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
            raise ArgumentError(f"beta must be >= 0 (a feedback strength). Received: beta={beta}.")
        if normalization not in NORMALIZATIONS:
            raise ArgumentError(
                f"normalization must be one of {NORMALIZATIONS}. Received: "
                f"normalization={normalization!r}."
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
        deltas, recorded = {
            "record": ({}, payload), "inject": (payload, None), "inject_record": payload}[mode]
        outputs = inputs
        delta = deltas.get(self.name)
        if delta is not None:
            outputs = inputs + tf.cast(delta, inputs.dtype)
        if recorded is not None:
            # Record the tensor that downstream layers consume, so its gradient
            # is exactly dL/da_s.
            outputs = tf.identity(outputs)
            recorded[self.name] = outputs
        return outputs

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            beta=self.beta, normalization=self.normalization, input_site=self.input_site
        )
        return config
