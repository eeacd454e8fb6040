"""The self-gradient pass and its deltas against independent computations.

The deltas do not depend on the batch an example sits in: `raw` feedback is
each example's own loss gradient, so batch size, batch
mates and replica count change nothing.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_sgn import attacks, feedback
from keras_sgn import layers as sgn_layers
from keras_sgn.layers import SelfGradient
from keras_sgn.models import SGNModel
from tests.sgn_reference import Tiny


def _deltas(model, x, labels=None):
    first = feedback.self_gradient_pass(lambda z: model(z, training=False), x, labels)
    return feedback.feedback_deltas(sgn_layers.sites_of(model), first["activations"],
                                    first["site_gradients"])


def _tiny(normalization):
    inputs = keras.Input((6,))
    h = SelfGradient(input_site=True, name="site_input")(inputs)
    d1 = keras.layers.Dense(5, activation="tanh", name="d1")
    d2 = keras.layers.Dense(4, activation="tanh", name="d2")
    d3 = keras.layers.Dense(3, name="d3")
    h = SelfGradient(beta=0.3, normalization=normalization, name="site_stage1")(d1(h))
    h = SelfGradient(beta=0.05, normalization=normalization, name="site_stage2")(d2(h))
    return SGNModel(inputs, d3(h)), (d1, d2, d3)


def _independent_site_gradients(dense, x, y, reduce):
    """dL/da at both sites by separate tapes, without any site machinery, for
    the loss `reduce(per-example cross-entropy)`."""
    d1, d2, d3 = dense
    a1 = d1(x)
    with tf.GradientTape() as tape:
        tape.watch(a1)
        loss = reduce(attacks.core.cross_entropy_loss(y, d3(d2(a1))))
    g1 = tape.gradient(loss, a1)
    a2 = d2(a1)
    with tf.GradientTape() as tape:
        tape.watch(a2)
        loss = reduce(attacks.core.cross_entropy_loss(y, d3(a2)))
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
def test_delta_is_beta_times_normalised_gradient(normalization):
    model, dense = _tiny(normalization)
    x = tf.random.uniform((7, 6))
    y = tf.constant([0, 1, 2, 0, 1, 2, 0])
    first = feedback.self_gradient_pass(lambda z: model(z, training=False), x, y)
    deltas = feedback.feedback_deltas(sgn_layers.sites_of(model), first["activations"],
                                      first["site_gradients"])
    # raw is each example's own loss gradient: that of the sum, not the mean.
    reduce = tf.reduce_sum if normalization == "raw" else tf.reduce_mean
    (a1, g1), (a2, g2) = _independent_site_gradients(dense, x, y, reduce)
    assert sorted(deltas) == ["site_stage1", "site_stage2"]
    np.testing.assert_allclose(deltas["site_stage1"], _expected_delta(0.3, a1, g1, normalization),
                               rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(deltas["site_stage2"], _expected_delta(0.05, a2, g2, normalization),
                               rtol=1e-4, atol=1e-6)
    # The input gradient came out of the same single backward pass.
    with tf.GradientTape() as tape:
        tape.watch(x)
        loss = tf.reduce_mean(attacks.core.cross_entropy_loss(y, model(x)))
    np.testing.assert_allclose(first["input_gradient"], tape.gradient(loss, x), rtol=1e-4,
                               atol=1e-7)
    # ...and the deltas, injected, feed the next stages.
    d1, d2, d3 = dense
    with sgn_layers.inject_sites(deltas):
        injected = model(x)
    expected = d3(d2(d1(x) + deltas["site_stage1"]) + deltas["site_stage2"])
    np.testing.assert_allclose(injected, expected, rtol=1e-5, atol=1e-6)


def test_bad_normalization_names_the_parameter():
    with pytest.raises(ValueError, match="normalization.*Received: normalization='l1'"):
        feedback.normalize_gradient(tf.ones((2, 3)), tf.ones((2, 3)), "l1")


def _images(n):
    return tf.random.stateless_uniform((n, 6), [1, 2])


@pytest.mark.parametrize("normalization", ["raw", "l2_relative", "sign"])
def test_an_examples_delta_does_not_depend_on_the_batch_size(normalization):
    model = Tiny(normalization=normalization).model
    x = _images(64)
    y = tf.constant(np.arange(64) % 3, tf.int32)
    per_batch = [_deltas(model, x[:n], y[:n]) for n in (1, 8, 64)]
    for site in ("site_stage1", "site_stage2"):
        alone = per_batch[0][site][0]
        assert np.abs(alone).max() > 1e-3
        for deltas in per_batch[1:]:
            np.testing.assert_allclose(deltas[site][0], alone, rtol=1e-5, atol=1e-7)


def test_raw_deltas_of_two_half_batches_are_those_of_the_whole():
    """What two replicas compute on their halves is what one computes on all."""
    model = Tiny(normalization="raw").model
    x, y = _images(8), tf.constant([0, 1, 2, 0, 1, 2, 0, 1])
    whole = _deltas(model, x, y)
    halves = [_deltas(model, x[i:i + 4], y[i:i + 4]) for i in (0, 4)]
    for site, delta in whole.items():
        np.testing.assert_allclose(tf.concat([h[site] for h in halves], 0), delta,
                                   rtol=1e-5, atol=1e-7)


def test_raw_feedback_at_inference_does_not_depend_on_the_batch_size():
    tiny = Tiny(normalization="raw", betas=(1.0, 1.0))
    feedback = tiny.twin(feedback_at_inference=True)
    x = _images(64)
    alone = np.concatenate([feedback(x[i:i + 1]) for i in range(8)])
    # The feedback matters for these examples...
    assert np.abs(alone - tiny.model(x[:8])).max() > 1e-2
    # ...and is the same whatever batch they are predicted in.
    np.testing.assert_allclose(feedback(x[:8]), alone, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(feedback(x)[:8], alone, rtol=1e-5, atol=1e-6)
