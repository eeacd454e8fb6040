"""Shared test harness, in the spirit of keras-hub's `TestCase`: one call runs
the checks every layer, model or builder of the house must pass.

* `run_serialization_test(cls_or_fn, init_kwargs, input_data)`: `get_config`
  round trip and `.keras` save/load give the same object and identical outputs;
  for a layer, `get_config()` holds the constructor arguments.
* `run_backbone_test(builder, init_kwargs, input_shape, expected_output_shape,
  expected_params=None)`: the backbone conventions (logits out, float32,
  BatchNorm momentum, input site then normalisation, sites are the identity).
* `run_bad_argument_test(fn, kwargs, param_name)`: the error names the
  parameter and says what it received.

Example:

```python
from tests.testing import run_backbone_test

def test_small_cnn():
    run_backbone_test(keras_sgn.models.sgn_small_cnn, {"width": 8}, (8, 8, 1), (2, 10))
```
"""

import json
import os
import re
import tempfile

import keras
import numpy as np
import pytest

from keras_sgn.layers import SelfGradient
from keras_sgn.models import SGNModel
from keras_sgn.models.blocks import BN_MOMENTUM


def random_images(input_shape, batch_size=2, seed=0):
    """float32 images in [0, 1] of shape `(batch_size,) + input_shape`."""
    return np.random.default_rng(seed).random((batch_size,) + tuple(input_shape),
                                              dtype=np.float32)


def site_summary(model):
    """`[(site_name, beta or None for the input site), ...]` in network order."""
    return [(layer.name, None if layer.input_site else layer.beta)
            for layer in model.layers if isinstance(layer, SelfGradient)]


def layers_of_type(model, layer_class):
    return [layer for layer in model.layers if isinstance(layer, layer_class)]


def trainable_count(model):
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


def _call(obj, input_data):
    if isinstance(obj, keras.Model):
        return np.asarray(obj(input_data, training=False))
    return np.asarray(obj(input_data))


def _assert_same_config(actual, expected):
    # Compared as JSON, as in a saved file: a tuple and the list it reloads as are equal.
    assert json.dumps(actual, sort_keys=True, default=repr) == json.dumps(
        expected, sort_keys=True, default=repr)


def _assert_same_outputs(actual, expected):
    # Same weights, same graph, same device: the outputs must agree to float32 noise.
    np.testing.assert_allclose(actual, expected, rtol=1e-6, atol=1e-6)


def _check_layer_config(layer, init_kwargs):
    config = layer.get_config()
    for key, value in init_kwargs.items():
        assert key in config, f"get_config() of {type(layer).__name__} lacks {key!r}"
        assert config[key] == value, f"get_config()[{key!r}] = {config[key]!r}, not {value!r}"


def run_serialization_test(cls_or_fn, init_kwargs, input_data):
    """Round trips of the object `cls_or_fn(**init_kwargs)`; returns the reloaded one.

    Checks that `type(obj).from_config(obj.get_config())` (weights copied over)
    and `keras.saving.load_model` of a saved `.keras` file are of the same type,
    with the same config and parameter count, and give identical outputs on
    `input_data`. For a layer (not a model), `get_config()` must also hold
    every constructor argument with its value.
    """
    obj = cls_or_fn(**init_kwargs)
    is_model = isinstance(obj, keras.Model)
    expected = _call(obj, input_data)
    if not is_model:
        _check_layer_config(obj, init_kwargs)
    clone = type(obj).from_config(obj.get_config())
    if not clone.built:
        _call(clone, input_data)
    clone.set_weights(obj.get_weights())
    assert type(clone) is type(obj)
    _assert_same_config(clone.get_config(), obj.get_config())
    assert clone.count_params() == obj.count_params()
    _assert_same_outputs(_call(clone, input_data), expected)

    # A layer is saved inside a one-layer model, the smallest thing `.keras` holds.
    holder = obj if is_model else keras.Sequential([keras.Input(input_data.shape[1:]), obj])
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "round_trip.keras")
        holder.save(path)
        loaded = keras.saving.load_model(path)
    if not is_model:
        loaded = loaded.layers[-1]
    assert type(loaded) is type(obj)
    _assert_same_config(loaded.get_config(), obj.get_config())
    assert loaded.count_params() == obj.count_params()
    _assert_same_outputs(_call(loaded, input_data), expected)
    return loaded


def run_backbone_test(builder, init_kwargs, input_shape, expected_output_shape,
                      expected_params=None, check_plain=True):
    """The conventions every backbone keeps; returns the model built.

    * `builder(**init_kwargs)` is an `SGNModel`; on images of `input_shape` (a
      batch of 2) it gives finite float32 logits of `expected_output_shape`
      that are not probabilities;
    * every `BatchNormalization` has momentum `BN_MOMENTUM`;
    * the input site (when selected) reads the raw image and the
      `input_normalization` reads the site; without it, the image;
    * with `check_plain`, the same network with `sites=()` has no site, the
      same parameters and, with the same weights, the same logits;
    * with `expected_params`, the trainable parameter count is exactly that.
    """
    model = builder(**init_kwargs)
    assert isinstance(model, SGNModel)
    x = random_images(input_shape)
    logits = _call(model, x)
    assert logits.shape == tuple(expected_output_shape)
    assert logits.dtype == np.float32 and np.all(np.isfinite(logits))
    assert model.get_layer("logits").dtype_policy.compute_dtype == "float32"
    assert not np.allclose(logits.sum(axis=-1), 1.0)  # logits, not probabilities
    batch_norms = layers_of_type(model, keras.layers.BatchNormalization)
    assert all(bn.momentum == BN_MOMENTUM for bn in batch_norms), model.name
    normalization = model.get_layer("input_normalization")
    names = [layer.name for layer in model.layers]
    if "site_input" in names:
        assert model.get_layer("site_input").input is model.inputs[0]
        assert normalization.input is model.get_layer("site_input").output
    else:
        assert normalization.input is model.inputs[0]
    if expected_params is not None:
        assert trainable_count(model) == expected_params
    if check_plain:
        plain = builder(**{**init_kwargs, "sites": ()})
        assert site_summary(plain) == []
        assert plain.count_params() == model.count_params()
        assert len(plain.layers) == len(model.layers) - len(site_summary(model))
        plain.set_weights(model.get_weights())
        _assert_same_outputs(_call(plain, x), logits)
    return model


def run_bad_argument_test(fn, kwargs, param_name, match=None, error=ValueError,
                          require_received=True):
    """`fn(**kwargs)` raises `error` whose message names `param_name`.

    With `require_received` (the house style) the message must also say what
    it received (`"Received"`); `match` is an extra regular expression the
    message must contain. Returns the message.
    """
    with pytest.raises(error) as info:
        fn(**kwargs)
    message = str(info.value)
    assert param_name in message, f"the error does not name {param_name!r}: {message}"
    if require_received:
        assert "Received" in message, f"the error does not say what it received: {message}"
    if match is not None:
        assert re.search(match, message), f"{match!r} not in: {message}"
    return message
