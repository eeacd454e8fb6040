"""Auto-PGD: exact ground truth on a linear model, strength against PGD, constraints, checks."""

import importlib

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_sgn import attacks
from keras_sgn.attacks.apgd import apgd_checkpoints, apgd_run, step_size_halved
from tests.helpers import accuracy, assert_in_ball, exact_linf_worst_case

# The package's `apgd` is the function; the core module holds the compiled-attack cache.
core = importlib.import_module("keras_sgn.attacks.core")

LINEAR_EPSILON = 0.1


def _fooled(model, x_adv, y):
    return np.argmax(model(x_adv, training=False), -1) != y


@pytest.fixture(scope="module")
def linear(digits_linear):
    """The linear digits classifier and its exact L-inf worst case."""
    model, x_test, y_test = digits_linear
    weights, bias = [np.asarray(v, np.float64) for v in model.layers[-1].weights]
    margin, vertex = exact_linf_worst_case(weights, bias, x_test, y_test, LINEAR_EPSILON)
    return dict(model=model, x=x_test, y=y_test, weights=weights, bias=bias,
                margin=margin, vertex=vertex)


def test_linear_ground_truth_is_a_nontrivial_case(linear):
    exact = np.mean(linear["margin"] > 0)
    assert 0.2 < exact < 0.8
    # The worst vertices are real: in the ball, in [0, 1], and misclassified iff margin <= 0.
    delta = linear["vertex"] - linear["x"].reshape(len(linear["x"]), -1)
    assert np.abs(delta).max() <= LINEAR_EPSILON + 1e-9
    assert linear["vertex"].min() >= 0.0 and linear["vertex"].max() <= 1.0
    vertex_images = linear["vertex"].reshape(linear["x"].shape).astype(np.float32)
    decided = np.abs(linear["margin"]) > 1e-4
    np.testing.assert_array_equal(
        _fooled(linear["model"], vertex_images, linear["y"])[decided],
        (linear["margin"] <= 0)[decided])


@pytest.mark.parametrize("loss,targeted,slack", [
    ("dlr", False, 0.03),
    ("dlr", True, 0.01),
    ("ce", True, 0.01),
    # Cross-entropy's maximiser in the ball is not always misclassified (checked below),
    # so APGD-CE may stop short of the truth by more than the DLR attacks.
    ("ce", False, 0.05),
])
def test_apgd_reaches_the_exact_worst_case_of_a_linear_model(linear, loss, targeted, slack):
    model, x, y, margin = linear["model"], linear["x"], linear["y"], linear["margin"]
    x_adv = attacks.apgd(model, x, y, epsilon=LINEAR_EPSILON, loss=loss, targeted=targeted,
                         steps=100).numpy()
    fooled = _fooled(model, x_adv, y)
    exact = float(np.mean(margin > 0))
    robust = 1.0 - float(np.mean(fooled))
    # Never better than the truth: every fooled example is truly non-robust (a projection
    # or box bug would fool robust ones) ...
    assert np.all(margin[fooled] <= 1e-5)
    assert robust >= exact - 1e-9
    # ... and it gets there.
    assert robust <= exact + slack
    if loss == "ce" and not targeted:
        # Where APGD-CE misses a non-robust example, it found a point of higher
        # cross-entropy than the misclassified worst-margin vertex: the search is fine,
        # the loss is what stops it.
        missed = ~fooled & (margin <= 0)
        flat = x_adv.reshape(len(x_adv), -1).astype(np.float64)

        def ce(points):
            logits = points @ linear["weights"] + linear["bias"]
            top = logits.max(1, keepdims=True)
            return (np.log(np.exp(logits - top).sum(1)) + top[:, 0]
                    - logits[np.arange(len(logits)), y])

        assert np.all(ce(flat)[missed] >= ce(linear["vertex"])[missed] - 1e-4)


def test_apgd_is_at_least_as_strong_as_pgd_with_the_same_budget(digits_mlp):
    model, x, y = digits_mlp
    epsilon = 0.1
    pgd = accuracy(model, attacks.pgd(model, x, y, epsilon=epsilon, steps=20), y)
    apgd_ce = accuracy(model, attacks.apgd(model, x, y, epsilon=epsilon, steps=20), y)
    apgd_dlr = accuracy(model, attacks.apgd(model, x, y, epsilon=epsilon, steps=20,
                                             loss="dlr"), y)
    assert accuracy(model, x, y) > 0.9
    assert pgd > 0.1  # not saturated: there is room to be stronger
    assert apgd_ce <= pgd + 0.01
    assert apgd_dlr <= pgd + 0.02


def test_restarts_never_weaken_the_attack(digits_mlp):
    model, x, y = digits_mlp
    kwargs = dict(epsilon=0.03, steps=5, seed=5)
    one = ~_fooled(model, attacks.apgd(model, x, y, **kwargs), y)
    three = ~_fooled(model, attacks.apgd(model, x, y, restarts=3, **kwargs), y)
    # Restart 0 is the single run; the worst case keeps every point it fooled.
    assert not np.any(three & ~one)
    assert three.mean() <= one.mean()
    assert 0.1 < one.mean() < 0.95


@pytest.mark.parametrize("norm,epsilon,loss,targeted", [
    ("linf", 0.1, "dlr", False),
    ("linf", 0.1, "ce", True),
    ("l2", 0.5, "ce", False),
    ("l2", 0.5, "dlr", True),
])
def test_adversarial_examples_stay_in_the_ball_and_in_range(digits_mlp, norm, epsilon, loss,
                                                            targeted):
    model, x, y = digits_mlp
    x, y = x[:128], y[:128]
    x_adv = attacks.apgd(model, x, y, epsilon=epsilon, norm=norm, loss=loss, targeted=targeted,
                         n_target_classes=3, steps=10, restarts=2).numpy()
    assert_in_ball(x_adv, x, epsilon, norm)
    assert accuracy(model, x_adv, y) < accuracy(model, x, y) - 0.2


def test_jit_compiled_attack_runs_and_stays_in_the_ball(digits_mlp):
    model, x, y = digits_mlp
    x, y = x[:32], y[:32]
    x_adv = attacks.apgd(model, x, y, epsilon=0.1, steps=3, loss="dlr", jit_compile=True).numpy()
    assert np.abs(x_adv - x).max() <= 0.1 + 1e-6
    assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0
    assert accuracy(model, x_adv, y) < accuracy(model, x, y)


def test_zero_epsilon_returns_the_clean_images(digits_mlp):
    model, x, y = digits_mlp
    np.testing.assert_allclose(attacks.apgd(model, x[:8], y[:8], epsilon=0.0, steps=3), x[:8])


def test_one_trace_per_configuration(digits_mlp):
    model, x, y = digits_mlp
    attacks.apgd(model, x[:16], y[:16], epsilon=0.05, steps=4)
    compiled = core._COMPILED[model]
    n_functions = len(compiled)
    function = compiled[(("apgd", "linf", "ce", 4, 1, False, 1), (8, 8, 1), False)]
    assert function.experimental_get_tracing_count() == 1
    # Another epsilon, seed, rho, momentum or batch size reuses the same graph.
    attacks.apgd(model, x[:7], y[:7], epsilon=0.02, steps=4, seed=3, rho=0.5, momentum=0.9)
    assert len(compiled) == n_functions
    assert function.experimental_get_tracing_count() == 1


def _reference_checkpoints(steps):
    """The reference's checkpoint counter (fra31/auto-attack, APGDAttack), transcribed."""
    k = max(int(0.22 * steps), 1)
    shortest, shortening = max(int(0.06 * steps), 1), max(int(0.03 * steps), 1)
    points, counter = [], 0
    for i in range(steps):
        counter += 1
        if counter == k:
            points.append(i + 1)
            k, counter = max(k - shortening, shortest), 0
    return tuple(points)


def test_step_size_checkpoints_are_the_reference_ones():
    assert apgd_checkpoints(100) == (22, 41, 57, 70, 80, 87, 93, 99)
    assert apgd_checkpoints(50) == (11, 21, 30, 38, 45)
    assert apgd_checkpoints(10) == (2, 3, 4, 5, 6, 7, 8, 9, 10)
    assert apgd_checkpoints(1) == (1,)
    for steps in range(1, 301):
        assert apgd_checkpoints(steps) == _reference_checkpoints(steps), steps


def test_step_size_rule_is_the_reference_one():
    rule = step_size_halved
    # Oscillation: the loss increased in at most rho of the interval (<=, not <).
    assert bool(rule(15.0, 20.0, 0.75, True, 1.0, 0.0))
    assert not bool(rule(16.0, 20.0, 0.75, True, 1.0, 0.0))
    # Stall: only when the step size was kept at the previous checkpoint.
    assert bool(rule(20.0, 20.0, 0.75, False, 1.0, 1.0))
    assert not bool(rule(20.0, 20.0, 0.75, True, 1.0, 1.0))
    assert not bool(rule(20.0, 20.0, 0.75, False, 1.5, 1.0))


def _reference_apgd(forward, x, labels, loss_fn, epsilon, norm, steps, seed, rho=0.75):
    """One APGD run as the reference's `attack_single_run` does it, transcribed: its
    loss history (zero-filled, indexed like torch so index -1 wraps), checkpoint
    counter, step-size rule and restarts. The geometry (start, steps, projection)
    comes from the core, tested on its own. Returns the first misclassified
    iterate, else the iterate of highest loss."""
    x = tf.constant(x)
    x_adv = core.sphere_start(x, epsilon, norm, seed)

    def evaluate(point):
        gradient, logits = core.input_gradient(forward, point, labels, loss_fn)
        gradient = tf.where(tf.math.is_finite(gradient), gradient, tf.zeros_like(gradient))
        fooled = np.argmax(logits.numpy(), -1) != labels.numpy()
        return gradient, loss_fn(labels, logits).numpy(), fooled

    def rows(mask):
        return tf.reshape(tf.constant(mask), [-1, 1, 1, 1])

    grad, loss_best, fooled = evaluate(x_adv)
    x_best, grad_best, x_fooled = x_adv, grad, x_adv
    step_size = np.full(len(loss_best), 2.0 * epsilon, np.float32)
    loss_steps = np.zeros((steps, len(loss_best)), np.float32)
    loss_best_last, reduced_last = loss_best.copy(), np.ones(len(loss_best), bool)
    k, counter = max(int(0.22 * steps), 1), 0
    x_old = x_adv
    for i in range(steps):
        a = 0.75 if i > 0 else 1.0
        eta = tf.reshape(tf.constant(step_size), [-1, 1, 1, 1])
        x_1 = core.project(core.ascent_step(x_adv, grad, eta, norm), x, epsilon, norm)
        x_1 = core.project(x_adv + a * (x_1 - x_adv) + (1.0 - a) * (x_adv - x_old), x, epsilon,
                           norm)
        x_old, x_adv = x_adv, x_1
        grad, loss, now_fooled = evaluate(x_adv)
        x_fooled = tf.where(rows(now_fooled & ~fooled), x_adv, x_fooled)
        fooled |= now_fooled
        loss_steps[i] = loss
        improved = loss > loss_best
        x_best, grad_best = tf.where(rows(improved), x_adv, x_best), tf.where(
            rows(improved), grad, grad_best)
        loss_best = np.where(improved, loss, loss_best)
        counter += 1
        if counter == k:
            increases = sum((loss_steps[i - c] > loss_steps[i - c - 1]).astype(np.float32)
                            for c in range(k))
            reduce = (increases <= k * rho) | (~reduced_last & (loss_best_last >= loss_best))
            reduced_last, loss_best_last = reduce, loss_best.copy()
            step_size = np.where(reduce, step_size / 2.0, step_size)
            x_adv = tf.where(rows(reduce), x_best, x_adv)
            grad = tf.where(rows(reduce), grad_best, grad)
            k, counter = max(k - max(int(0.03 * steps), 1), max(int(0.06 * steps), 1)), 0
    return tf.where(rows(fooled), x_fooled, x_best).numpy()


@pytest.mark.parametrize("norm,epsilon,loss", [("linf", 0.05, "dlr"), ("linf", 0.05, "ce"),
                                               ("l2", 0.4, "dlr")])
def test_apgd_run_follows_the_reference_loop(linear, norm, epsilon, loss):
    model = linear["model"]
    x, labels = linear["x"][:48], tf.constant(linear["y"][:48].astype(np.int32))
    forward = lambda images: model(images, training=False)  # noqa: E731
    seed = tf.constant([3, 1], tf.int32)
    ours, _ = apgd_run(forward, tf.constant(x), labels, attacks.core.LOSSES[loss],
                                    epsilon=epsilon, norm=norm, steps=30, seed=seed)
    reference = _reference_apgd(forward, x, labels, attacks.core.LOSSES[loss], epsilon, norm, 30,
                                seed)
    np.testing.assert_allclose(ours.numpy(), reference, atol=1e-6)


@pytest.mark.parametrize("norm,epsilon", [("linf", 0.1), ("l2", 0.5)])
def test_apgd_starts_on_the_surface_of_the_ball(norm, epsilon):
    # A constant model: no gradient, no progress, so APGD returns its start.
    model = keras.Sequential([keras.Input((4, 4, 1)), keras.layers.Flatten(),
                              keras.layers.Dense(3, kernel_initializer="zeros")])
    x = np.full((16, 4, 4, 1), 0.5, np.float32)
    y = np.zeros(16, np.int32)  # logits all 0: class 0 is predicted, nothing is fooled
    delta = (attacks.apgd(model, x, y, epsilon=epsilon, norm=norm, steps=3).numpy() - x)
    delta = delta.reshape(16, -1)
    size = np.abs(delta).max(1) if norm == "linf" else np.linalg.norm(delta, axis=1)
    np.testing.assert_allclose(size, epsilon, rtol=1e-5)
    assert len(np.unique(delta.round(6), axis=0)) == 16  # a different direction per example


def test_dlr_losses_on_handcrafted_logits():
    logits = tf.constant([[3.0, 1.0, 0.5, 0.0], [0.0, 2.0, 5.0, 1.0]])
    labels = tf.constant([0, 1])
    # Correct example: -(3 - 1) / (3 - 0.5); fooled one: -(2 - 5) / (5 - 1).
    np.testing.assert_allclose(attacks.core.dlr_loss(labels, logits), [-0.8, 0.75], rtol=1e-6)
    np.testing.assert_allclose(
        attacks.core.targeted_dlr_loss(labels, logits, tf.constant([2, 3])),
        [-(3.0 - 0.5) / (3.0 - 0.25), -(2.0 - 1.0) / (5.0 - 0.5)], rtol=1e-6)
    # DLR is invariant to shifting and positive scaling of the logits.
    np.testing.assert_allclose(attacks.core.dlr_loss(labels, 7.0 * logits - 2.0),
                               attacks.core.dlr_loss(labels, logits), rtol=1e-5)
    assert attacks.core.LOSSES["dlr"] is attacks.core.dlr_loss


@pytest.mark.parametrize("kwargs,parameter", [
    (dict(epsilon=-0.1), "epsilon"),
    (dict(steps=0), "steps"),
    (dict(norm="l1"), "norm"),
    (dict(loss="cw"), "loss"),
    (dict(restarts=0), "restarts"),
    (dict(targeted=True, n_target_classes=0), "n_target_classes"),
    (dict(rho=1.5), "rho"),
    (dict(momentum=-0.1), "momentum"),
])
def test_bad_attack_arguments_name_the_parameter(digits_mlp, kwargs, parameter):
    model, x, y = digits_mlp
    with pytest.raises(ValueError, match=parameter):
        attacks.apgd(model, x[:2], y[:2], **kwargs)


def test_dlr_needs_enough_classes():
    x = np.full((2, 4), 0.5, np.float32)
    y = np.array([0, 1])
    three = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    with pytest.raises(ValueError, match="loss='dlr' with targeted=True"):
        attacks.apgd(three, x, y, loss="dlr", targeted=True, steps=2)
    two = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    with pytest.raises(ValueError, match="loss='dlr'"):
        attacks.apgd(two, x, y, loss="dlr", steps=2)
    # Untargeted DLR with 3 classes and targeted CE with 2 classes are fine.
    assert attacks.apgd(three, x, y, loss="dlr", steps=2).shape == x.shape
    assert attacks.apgd(two, x, y, loss="ce", targeted=True, steps=2).shape == x.shape


def test_images_outside_unit_range_are_refused(digits_mlp):
    model, x, y = digits_mlp
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        attacks.apgd(model, x[:4] * 255.0, y[:4])
