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


def _independent_site_gradients(dense, x, y):
    """dL/da at both sites by separate tapes, without any site machinery."""
    d1, d2, d3 = dense
    a1 = d1(x)
    with tf.GradientTape() as tape:
        tape.watch(a1)
        loss = tf.reduce_mean(attacks.cross_entropy_loss(y, d3(d2(a1))))
    g1 = tape.gradient(loss, a1)
    a2 = d2(a1)
    with tf.GradientTape() as tape:
        tape.watch(a2)
        loss = tf.reduce_mean(attacks.cross_entropy_loss(y, d3(a2)))
    return (a1, g1), (a2, tape.gradient(loss, a2))


def _expected_delta(beta, a, g, normalization):
    a, g = a.numpy(), g.numpy()
    if normalization == "l2_relative":
        return beta * np.linalg.norm(a, axis=1, keepdims=True) * g / np.linalg.norm(
            g, axis=1, keepdims=True)
    if normalization == "sign":
        return beta * a.std(axis=1, keepdims=True) * np.sign(g)
    return beta * g


@pytest.mark.parametrize("normalization", ["l2_relative", "sign", "raw"])
def test_injected_delta_is_beta_times_normalised_gradient(normalization):
    model, dense = _tiny(normalization=normalization)
    x = tf.random.uniform((7, 6))
    y = tf.constant([0, 1, 2, 0, 1, 2, 0])
    first = sgn_layers.self_gradient_pass(lambda z: model(z, training=False), x, y)
    deltas = sgn_layers.feedback_deltas(sgn_layers.sites_of(model), first["activations"],
                                        first["site_gradients"])
    (a1, g1), (a2, g2) = _independent_site_gradients(dense, x, y)
    assert sorted(deltas) == ["site_stage1", "site_stage2"]
    np.testing.assert_allclose(deltas["site_stage1"], _expected_delta(0.3, a1, g1, normalization),
                               rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(deltas["site_stage2"], _expected_delta(0.05, a2, g2, normalization),
                               rtol=1e-4, atol=1e-6)
    # The input gradient came out of the same single backward pass.
    with tf.GradientTape() as tape:
        tape.watch(x)
        loss = tf.reduce_mean(attacks.cross_entropy_loss(y, model(x)))
    np.testing.assert_allclose(first["input_gradient"], tape.gradient(loss, x), rtol=1e-4,
                               atol=1e-7)

    # Injection adds the delta where the site is: a1 + delta1 flows into d2.
    d1, d2, d3 = dense
    with sgn_layers.inject_sites(deltas):
        injected = model(x)
    b1 = d1(x) + deltas["site_stage1"]
    expected = d3(d2(b1) + deltas["site_stage2"])
    np.testing.assert_allclose(injected, expected, rtol=1e-5, atol=1e-6)


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
            loss = tf.reduce_sum(attacks.cross_entropy_loss(y, m(x)))
        grads.append(tape.gradient(loss, x).numpy())
    assert np.all(np.isfinite(grads[1]))
    assert np.abs(grads[0] - grads[1]).max() > 1e-6
    # Training passes see the plain network.
    with sgn_layers.plain_sites():
        np.testing.assert_allclose(feedback(x), plain_logits, rtol=1e-6)
