"""The self-gradient mechanism, checked against independent computations."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_sgn import attacks
from keras_sgn import layers as sgn_layers
from keras_sgn.layers import SelfGradient
from keras_sgn.models import SGNModel


def _tiny(beta1=0.3, beta2=0.05, normalization="l2_relative", input_site=True):
    inputs = keras.Input((6,))
    h = SelfGradient(input_site=True, name="site_input")(inputs) if input_site else inputs
    d1 = keras.layers.Dense(5, activation="tanh", name="d1")
    d2 = keras.layers.Dense(4, activation="tanh", name="d2")
    d3 = keras.layers.Dense(3, name="d3")
    h = SelfGradient(beta=beta1, normalization=normalization, name="site_stage1")(d1(h))
    h = SelfGradient(beta=beta2, normalization=normalization, name="site_stage2")(d2(h))
    return SGNModel(inputs, d3(h)), (d1, d2, d3)


def test_injection_adds_each_delta_where_its_site_is():
    model, (d1, d2, d3) = _tiny()
    x = tf.random.uniform((7, 6))
    deltas = {"site_stage1": tf.random.normal((7, 5)), "site_stage2": tf.random.normal((7, 4))}
    with sgn_layers.inject_sites(deltas):
        injected = model(x)
    # a1 + delta1 flows into d2, a2 + delta2 into d3.
    expected = d3(d2(d1(x) + deltas["site_stage1"]) + deltas["site_stage2"])
    np.testing.assert_allclose(injected, expected, rtol=1e-5, atol=1e-6)
    assert np.abs(injected - model(x)).max() > 1e-3


def test_sites_are_identity_outside_a_step():
    model, dense = _tiny()
    x = tf.random.uniform((3, 6))
    d1, d2, d3 = dense
    np.testing.assert_allclose(model(x), d3(d2(d1(x))), rtol=1e-6)
    with sgn_layers.inject_sites({"site_stage1": tf.ones((3, 5))}):
        pass
    np.testing.assert_allclose(model(x), d3(d2(d1(x))), rtol=1e-6)


def test_bad_site_arguments_name_the_parameter():
    with pytest.raises(ValueError, match="beta"):
        SelfGradient(beta=-1.0)
    with pytest.raises(ValueError, match="normalization"):
        SelfGradient(normalization="l1")


def test_layer_round_trips_config():
    layer = SelfGradient(beta=0.25, normalization="sign", name="site_stage3")
    clone = SelfGradient.from_config(layer.get_config())
    assert (clone.beta, clone.normalization, clone.input_site, clone.name) == (
        0.25, "sign", False, "site_stage3")
    assert keras.saving.deserialize_keras_object(
        keras.saving.serialize_keras_object(layer)).beta == 0.25


@pytest.mark.parametrize("kwargs", [
    dict(beta=0.25, normalization="sign", name="site_stage3"),
    dict(beta=0.0, normalization="raw", input_site=True, name="site_input"),
])
def test_self_gradient_passes_the_shared_serialization_test(kwargs):
    """The library's own layer through the harness every layer and model passes:
    get_config holds every constructor argument; from_config and a saved .keras
    file give the same layer and outputs."""
    from tests.testing import random_images, run_serialization_test

    loaded = run_serialization_test(SelfGradient, kwargs, random_images((4, 4, 2)))
    assert (loaded.beta, loaded.normalization, loaded.input_site) == (
        kwargs["beta"], kwargs["normalization"], kwargs.get("input_site", False))


def test_feedback_at_inference_is_attacked_through_the_feedback():
    model, _ = _tiny()
    feedback = SGNModel.from_config({**model.get_config(), "feedback_at_inference": True})
    feedback.set_weights(model.get_weights())
    x = tf.random.uniform((4, 6))
    plain_logits = model(x)
    feedback_logits = feedback(x)
    # The feedback changes the function...
    assert np.abs(plain_logits - feedback_logits).max() > 1e-4
    # ...and the input gradient goes through it (nested tapes, second order).
    y = tf.constant([0, 1, 2, 0])
    grads = []
    for m in (model, feedback):
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(attacks.core.cross_entropy_loss(y, m(x)))
        grads.append(tape.gradient(loss, x).numpy())
    assert np.all(np.isfinite(grads[1]))
    assert np.abs(grads[0] - grads[1]).max() > 1e-6
    # Training passes see the plain network.
    with sgn_layers.plain_sites():
        np.testing.assert_allclose(feedback(x), plain_logits, rtol=1e-6)


def test_inject_and_record_adds_each_delta_and_records_what_flows_on():
    model, (d1, d2, d3) = _tiny()
    x = tf.random.uniform((7, 6))
    delta = tf.random.normal((7, 5))
    with sgn_layers.inject_and_record_sites({"site_stage1": delta}) as recorded:
        assert sgn_layers.active_site_mode() == "inject_record"
        out = model(x)
    assert sgn_layers.active_site_mode() is None
    assert sorted(recorded) == ["site_stage1", "site_stage2"]
    np.testing.assert_allclose(recorded["site_stage1"], d1(x) + delta, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(recorded["site_stage2"], d2(d1(x) + delta), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out, d3(recorded["site_stage2"]), rtol=1e-5, atol=1e-6)
    # The recorded tensors are what the rest of the network consumes: their
    # gradients are dL/da_s.
    with tf.GradientTape() as tape:
        with sgn_layers.inject_and_record_sites({}) as recorded:
            loss = tf.reduce_sum(model(x))
    gradient = tape.gradient(loss, recorded["site_stage2"])
    np.testing.assert_allclose(gradient, tf.tile(tf.reduce_sum(d3.kernel, 1)[None], [7, 1]),
                               rtol=1e-5)
