"""The variants of the reconstruction (docs/reproduce/fashion_mnist-variants) against
independent plain `tf.GradientTape` implementations, as tests/test_method_equivalence.py does
for the other methods: `sgn-reuse`, `sgn-ramp`, `sgn-align`, `sgn-nfgsm`."""

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
    project,
    reference_sgn,
    tiny_batch,
    uniform_start,
)


def _max_difference(a, b):
    return max(float(np.abs(u - v).max()) for u, v in zip(a, b))


def _reference_replays(tiny, x, y, replays, lr, feedback):
    """Free-AT's loop written out; with `feedback`, replay r adds at each hidden
    site `beta * N(g)` from replay r-1's backward pass, `g` the gradient at the
    tensor the site passed on. Returns the inputs trained on."""
    variables = tiny.model.trainable_variables
    x_adv, deltas, inputs = uniform_start(x), (0.0, 0.0), []
    for _ in range(replays):
        inputs.append(x_adv)
        with tf.GradientTape() as tape:
            tape.watch(x_adv)
            h1 = tiny.d1(x_adv) + deltas[0]
            h2 = tiny.d2(tiny.bn(h1, training=True)) + deltas[1]
            loss = tf.reduce_mean(ce(y, tiny.d3(h2)))
        *grads, input_grad, g1, g2 = tape.gradient(loss, variables + [x_adv, h1, h2])
        for variable, grad in zip(variables, grads):
            variable.assign_sub(lr * grad)
        x_adv = project(x_adv + EPS * tf.sign(input_grad), x)
        if feedback:
            n = float(x.shape[0])  # each example's own gradient is n times the mean's
            deltas = tiny.deltas([h1, h2], [g1, g2], [n * g1, n * g2])
    return inputs


@pytest.mark.parametrize("normalization", ["l2_relative", "raw"])
def test_sgn_reuse_matches_an_independent_replay_loop(normalization):
    replays, lr = 3, 0.5
    tiny = Tiny(normalization=normalization, betas=(0.5, 0.3))
    tiny.model.compile(keras.optimizers.SGD(lr), method="sgn-reuse", epsilon=EPS,
                       replays=replays)
    assert tiny.model.method.cost == replays and tiny.model.method.step_size == EPS
    x, y = tiny_batch()
    initial = tiny.model.get_weights()
    tiny.recorder.seen.clear()
    tiny.model.method.step(tiny.model, x, y, SEED)
    got_weights, got_inputs = tiny.model.get_weights(), list(tiny.recorder.seen)

    results = {}
    for feedback in (True, False):
        tiny.model.set_weights(initial)
        inputs = _reference_replays(tiny, x, y, replays, lr, feedback)
        results[feedback] = (tiny.model.get_weights(), inputs)
    want_weights, want_inputs = results[True]
    assert len(got_inputs) == replays
    for got, want in zip(got_inputs, want_inputs):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    for got, want in zip(got_weights, want_weights):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)
    # The hidden-site feedback changed the update: this is not plain Free-AT.
    assert _max_difference(want_weights, results[False][0]) > 1e-3


@pytest.mark.parametrize("ramp,step,scale", [("up", 3, 0.75), ("down", 3, 0.25),
                                             ("up", 9, 1.0), ("down", 9, 0.0)])
def test_sgn_ramp_scales_the_hidden_deltas_by_its_schedule(ramp, step, scale):
    tiny = Tiny()
    tiny.model.compile(keras.optimizers.SGD(0.1), method="sgn-ramp", epsilon=EPS, ramp=ramp,
                       ramp_steps=4, clean_weight=0.2)
    tiny.model.optimizer.iterations.assign(step)
    assert float(tiny.model.method.strength(step)) == pytest.approx(scale)
    compare_gradients(tiny, tiny.model.method, lambda x, y: reference_sgn(
        tiny, x, y, step_size=1.25 * EPS, input_steps=0, clean_weight=0.2,
        second_order=False, delta_scale=scale))


def test_sgn_ramp_without_an_optimizer_says_compile():
    tiny = Tiny()
    x, y = tiny_batch()
    with pytest.raises(ValueError, match="compile"):
        methods.get("sgn-ramp", epsilon=EPS).gradients(tiny.model, x, y, SEED)


@pytest.mark.parametrize("clean_weight", [0.0, 0.3])
def test_sgn_align_adds_gradalign_through_pass_one(clean_weight):
    tiny = Tiny()
    method = methods.get("sgn-align", epsilon=EPS, align_weight=0.5, clean_weight=clean_weight)
    assert method.step_size == pytest.approx(1.25 * EPS)
    grads = compare_gradients(tiny, method, lambda x, y: reference_sgn(
        tiny, x, y, step_size=1.25 * EPS, input_steps=0, clean_weight=clean_weight,
        second_order=False, align_weight=0.5))
    # The alignment term moves the gradient well above the tolerance.
    x, y = tiny_batch()
    _, plain = reference_sgn(tiny, x, y, step_size=1.25 * EPS, input_steps=0,
                             clean_weight=clean_weight, second_order=False)
    assert _max_difference(grads, plain) > 1e-3


def test_sgn_align_needs_an_input_site():
    inputs = keras.Input((6,))
    model = keras.Model(inputs, keras.layers.Dense(3)(inputs))
    x, y = tiny_batch()
    with pytest.raises(ValueError, match="input site"):
        methods.get("sgn-align", epsilon=EPS).gradients(model, x, y, SEED)


def test_sgn_nfgsm_trains_on_unprojected_noisy_steps():
    tiny = Tiny()
    method = methods.get("sgn-nfgsm", epsilon=EPS)
    assert (method.step_size, method.noise_scale) == (pytest.approx(EPS), 2.0)
    tiny.recorder.seen.clear()
    compare_gradients(tiny, method, lambda x, y: reference_sgn(
        tiny, x, y, step_size=EPS, input_steps=0, clean_weight=0.0, second_order=False,
        noise=2 * EPS, project_feedback=False))
    # The image trained on lies beyond the epsilon-ball (up to 3 epsilon away).
    x, _ = tiny_batch()
    assert float(tf.reduce_max(tf.abs(tiny.recorder.seen[0] - x))) > 1.5 * EPS


def test_variants_are_registered_apart_from_the_design_methods():
    design = ["fast", "free", "pgd", "sgn", "sgn-pgd", "standard", "trades"]
    variants = ["sgn-align", "sgn-learned-start", "sgn-memory", "sgn-nfgsm", "sgn-ramp",
                "sgn-reuse"]
    assert methods.list_methods(variants=False) == design
    assert methods.list_methods() == sorted(design + variants)
    for name in variants:
        cls = methods.registry.method_class(name)
        assert cls.variant and cls.description and cls.__doc__.count("Expected cost") == 1
