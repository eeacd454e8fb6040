"""Every training method's step against an independent plain-`tf.GradientTape`
implementation written here, without the attack core or the site machinery.

The tiny model has a BatchNormalization layer, so the references also pin the
protocol: attacks and the self-gradient pass run in inference mode, the weight
update in training mode. Random starts are reproduced from the stateless seed.
A method that trains on the wrong input, drops a loss term, or never moves its
perturbation fails here on loss, gradients or weights.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_sgn import methods
from tests.sgn_reference import (
    EPS,
    SEED,
    Tiny,
    ce,
    compare_gradients,
    kl,
    project,
    reference_clean_step,
    reference_pgd,
    reference_sgn,
    tiny_batch,
    uniform_start,
)


def _eval(tiny):
    return lambda z: tiny.logits(z, training=False)


@pytest.mark.parametrize("random_start", [True, False])
def test_pgd_step_trains_on_independent_pgd_examples(random_start):
    tiny = Tiny()
    method = methods.get("pgd", epsilon=EPS, attack_steps=3, random_start=random_start)

    def reference(x, y):
        start = uniform_start(x) if random_start else x
        x_adv = reference_pgd(_eval(tiny), x, y, start, EPS / 4, 3)
        assert np.abs(x_adv - x).max() > 0.5 * EPS  # the attack moved
        return reference_clean_step(tiny, x_adv, y)

    compare_gradients(tiny, method, reference)


def test_fast_step_trains_on_an_independent_fgsm_rs_example():
    tiny = Tiny()
    method = methods.get("fast", epsilon=EPS)
    assert method.step_size == pytest.approx(1.25 * EPS) and method.attack_steps == 1

    def reference(x, y):
        x_adv = reference_pgd(_eval(tiny), x, y, uniform_start(x), 1.25 * EPS, 1)
        return reference_clean_step(tiny, x_adv, y)

    compare_gradients(tiny, method, reference)


def test_trades_step_matches_ce_plus_beta_kl():
    tiny = Tiny()
    method = methods.get("trades", epsilon=EPS, attack_steps=3, trades_beta=6.0)

    def reference(x, y):
        p_clean = tf.nn.softmax(tiny.logits(x, training=False))
        start = tf.clip_by_value(
            x + 0.001 * tf.random.stateless_normal(x.shape, SEED), 0.0, 1.0)
        x_adv = reference_pgd(_eval(tiny), x, p_clean, start, EPS / 4, 3, loss=kl)
        with tf.GradientTape() as tape:
            logits = tiny.logits(x, training=True)
            robust = tf.reduce_mean(kl(tf.nn.softmax(logits), tiny.logits(x_adv, True)))
            loss = tf.reduce_mean(ce(y, logits)) + 6.0 * robust
        # The KL term matters at this scale (else the test could not see it go).
        assert 6.0 * robust > 1e-3 * loss
        return loss, tape.gradient(loss, tiny.model.trainable_variables)

    compare_gradients(tiny, method, reference)


def test_free_replays_match_an_independent_loop():
    """Weights after one Free step (3 replays, SGD) and the perturbation each
    replay trains on, against the loop written out."""
    replays, lr = 3, 0.5
    tiny = Tiny()
    tiny.model.compile(keras.optimizers.SGD(lr), method="free", epsilon=EPS, replays=replays)
    x, y = tiny_batch()
    initial = tiny.model.get_weights()
    tiny.recorder.seen.clear()
    tiny.model.method.step(tiny.model, x, y, SEED)
    got_weights, got_inputs = tiny.model.get_weights(), list(tiny.recorder.seen)
    tiny.model.set_weights(initial)

    variables = tiny.model.trainable_variables
    x_adv, want_inputs = uniform_start(x), []
    for _ in range(replays):
        want_inputs.append(x_adv)
        with tf.GradientTape() as tape:
            tape.watch(x_adv)
            loss = tf.reduce_mean(ce(y, tiny.logits(x_adv, training=True)))
        *grads, input_grad = tape.gradient(loss, variables + [x_adv])
        for variable, grad in zip(variables, grads):
            variable.assign_sub(lr * grad)
        x_adv = project(x_adv + EPS * tf.sign(input_grad), x)

    assert len(got_inputs) == replays
    for got, want in zip(got_inputs, want_inputs):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert np.abs(want_inputs[1] - want_inputs[0]).max() > 0.5 * EPS  # it did move
    for got, want in zip(got_weights, tiny.model.get_weights()):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)
    assert max(np.abs(a - b).max() for a, b in zip(got_weights, initial)) > 1e-3


@pytest.mark.parametrize("name,clean_weight,normalization", [
    ("sgn", 0.0, "l2_relative"), ("sgn", 0.3, "l2_relative"), ("sgn-pgd", 0.0, "l2_relative"),
    ("sgn-pgd", 0.2, "l2_relative"), ("sgn", 0.3, "sign"), ("sgn", 0.0, "raw")])
def test_first_order_sgn_step_matches_an_independent_implementation(name, clean_weight,
                                                                     normalization):
    tiny = Tiny(normalization=normalization)
    method = methods.get(name, epsilon=EPS, attack_steps=3, clean_weight=clean_weight)
    step, input_steps = (1.25 * EPS, 0) if name == "sgn" else (EPS / 4, 2)
    assert method.step_size == pytest.approx(step)
    compare_gradients(tiny, method, lambda x, y: reference_sgn(
        tiny, x, y, step_size=step, input_steps=input_steps, clean_weight=clean_weight,
        second_order=False))


@pytest.mark.parametrize("clean_weight,normalization", [
    (0.0, "l2_relative"), (0.3, "l2_relative"), (0.3, "raw")])
def test_second_order_sgn_matches_an_independent_double_backprop(clean_weight, normalization):
    tiny = Tiny(normalization=normalization)
    method = methods.get("sgn", epsilon=EPS, clean_weight=clean_weight, second_order=True)
    grads = compare_gradients(tiny, method, lambda x, y: reference_sgn(
        tiny, x, y, step_size=1.25 * EPS, input_steps=0, clean_weight=clean_weight,
        second_order=True))
    # The second-order term is far above the tolerance, so a wrong one is seen.
    x, y = tiny_batch()
    _, first = reference_sgn(tiny, x, y, step_size=1.25 * EPS, input_steps=0,
                             clean_weight=clean_weight, second_order=False)
    difference = max(float(np.abs(a - b).max() / (np.abs(b).max() + 1e-12))
                     for a, b in zip(grads, first))
    assert difference > 1e-2, difference
