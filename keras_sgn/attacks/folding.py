"""The attacks' forward pass with BatchNorm folded into the layer before it.

In inference mode a BatchNormalization that directly follows a `Conv2D` or `Dense`
is an affine map per channel, so the pair is one convolution (or matmul) with the
kernel scaled by `s = gamma / sqrt(moving_variance + epsilon)` and the bias
`(bias - moving_mean) * s + beta`. Run as Keras builds it, the BatchNorm costs two
element-wise passes over the activation and keeps the convolution, its bias and
the ReLU from being fused: folded, a forward pass of the zoo's small CNN costs 14-18%
less on one CPU thread, and the `standard` suite on it 9-10% less CPU time (measured
alternating folded and unfolded in one process).

It is the same function (the logits agree to float rounding), so the attacks are
unchanged; the evaluation still takes its verdict (the predicted class of each
adversarial image) from the model itself. The folded weights are computed from
the variables inside every call, so a model still being trained (validation
attacks) is attacked with its current weights.

A model is folded only when it is a plain functional graph (`keras.Model` built
from inputs and outputs, or a built `Sequential`) whose pairs are unambiguous: the
layer is used once, has no activation, feeds only the BatchNorm, channels last,
float32, not quantised; and only when the folded logits match the model's own on a
probe batch. Anything else (a subclassed model, inference-time feedback, mixed
precision) runs through `model(images, training=False)` as before.
"""

import weakref

import keras
import numpy as np
import tensorflow as tf
from keras.src.models import functional

# The probe: folded logits must match the model's within this (relative to the
# logits' scale) or the model is attacked unfolded.
_PROBE_TOLERANCE = 1e-4
_PROBE_IMAGES = 4

_PLANS = weakref.WeakKeyDictionary()


def _graph_of(model):
    """The functional graph `model` runs in inference mode, or None."""
    graph = getattr(model, "_functional", None) if isinstance(model, keras.Sequential) else model
    if not isinstance(graph, functional.Functional):
        return None
    if len(graph.inputs) != 1 or len(graph.outputs) != 1:
        return None  # the attacks' models take images and return logits
    # A subclass's own `call` runs something other than the graph, except the project's
    # `SGNModel` without inference-time feedback, whose call is the graph's.
    if (type(graph).call is not functional.Functional.call
            and getattr(graph, "feedback_at_inference", None) is not False):
        return None
    return graph


def _foldable(layer, batch_norm):
    """True when `batch_norm` (in inference mode) folds into `layer` exactly."""
    if type(layer) not in (keras.layers.Conv2D, keras.layers.Dense):
        return False
    if type(batch_norm) is not keras.layers.BatchNormalization:
        return False
    if getattr(layer, "quantization_mode", None) or getattr(layer, "lora_enabled", False):
        return False
    if keras.activations.serialize(layer.activation) != "linear":
        return False
    if getattr(layer, "data_format", "channels_last") != "channels_last":
        return False
    if any(item.dtype_policy.compute_dtype != "float32" for item in (layer, batch_norm)):
        return False
    # Each used once, the layer's only consumer the BatchNorm, normalising channels.
    if len(layer._inbound_nodes) != 1 or len(batch_norm._inbound_nodes) != 1:
        return False
    outbound = layer._outbound_nodes
    if len(outbound) != 1 or outbound[0].operation is not batch_norm:
        return False
    rank = len(layer._inbound_nodes[0].outputs[0].shape)
    return batch_norm.axis in (-1, rank - 1)


def _folded_call(layer, batch_norm):
    """The pair's inference output in one convolution (or matmul) and one bias."""
    def call(inputs, *args, **kwargs):
        inverse = tf.math.rsqrt(tf.convert_to_tensor(batch_norm.moving_variance)
                                + batch_norm.epsilon)
        scale = inverse * tf.convert_to_tensor(batch_norm.gamma) if batch_norm.scale else inverse
        shift = -tf.convert_to_tensor(batch_norm.moving_mean) * scale
        if layer.use_bias:
            shift = shift + tf.convert_to_tensor(layer.bias) * scale
        if batch_norm.center:
            shift = shift + tf.convert_to_tensor(batch_norm.beta)
        kernel = tf.convert_to_tensor(layer.kernel) * scale
        inputs = tf.cast(inputs, tf.float32)
        if isinstance(layer, keras.layers.Conv2D):
            outputs = layer.convolution_op(inputs, kernel)
        else:
            outputs = tf.matmul(inputs, kernel) if inputs.shape.rank == 2 else \
                tf.tensordot(inputs, kernel, [[inputs.shape.rank - 1], [0]])
        return outputs + shift

    return call


def _identity(inputs, *args, **kwargs):
    return inputs


def _plan(graph):
    """`{id(operation): replacement call}` for every foldable pair of `graph`."""
    replacements = {}
    for operation in graph.operations:
        outbound = getattr(operation, "_outbound_nodes", [])
        if len(outbound) == 1 and _foldable(operation, outbound[0].operation):
            replacements[id(operation)] = _folded_call(operation, outbound[0].operation)
            replacements[id(outbound[0].operation)] = _identity
    return replacements


def _run_folded(graph, replacements, images):
    def operation_fn(operation):
        return replacements.get(id(operation)) or functional.operation_fn(operation,
                                                                          training=False)

    inputs = graph._standardize_inputs(images)
    outputs = graph._run_through_graph(inputs, operation_fn=operation_fn)
    return functional.unpack_singleton(outputs)


def _matches(model, graph, replacements):
    """The probe: the folded logits equal the model's own on a few random images."""
    shape = [_PROBE_IMAGES, *model.inputs[0].shape[1:]]
    if any(size is None for size in shape):
        return False
    images = tf.constant(np.random.default_rng(0).uniform(size=shape), tf.float32)
    expected = np.asarray(model(images, training=False))
    folded = np.asarray(_run_folded(graph, replacements, images))
    if folded.shape != expected.shape:
        return False
    scale = max(1.0, float(np.max(np.abs(expected))))
    return float(np.max(np.abs(folded - expected))) <= _PROBE_TOLERANCE * scale


def folded_forward(model):
    """`images -> logits` of `model` in inference mode with its BatchNorms folded, or
    None when there is nothing to fold or the model is not one this can fold (see the
    module docstring). Holds only a weak reference to `model`. The first call per
    model checks the folding on a probe batch (eagerly; inside a `tf.function` trace
    nothing is folded)."""
    if model not in _PLANS:
        if not tf.executing_eagerly():
            return None
        try:
            graph = _graph_of(model)
            replacements = _plan(graph) if graph is not None else {}
            if replacements and not _matches(model, graph, replacements):
                replacements = {}
        except (AttributeError, TypeError, ValueError):  # a graph this does not know
            graph, replacements = None, {}
        _PLANS[model] = (weakref.ref(graph) if replacements else None, replacements)
    graph_ref, replacements = _PLANS[model]
    if not replacements:
        return None

    def forward(images):
        return _run_folded(graph_ref(), replacements, images)

    return forward


def is_folded(model):
    """True when the attacks run `model` with its BatchNorms folded."""
    return folded_forward(model) is not None
