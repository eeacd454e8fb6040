"""FAB: minimal perturbations against the exact ones of a linear model (L-inf and L2),
robust accuracy against the exact one, the box-constrained projection, constraints."""

import importlib

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_sgn import attacks
from keras_sgn.attacks.fab import project_to_hyperplane
from tests.helpers import accuracy, assert_in_ball, exact_linf_worst_case

core = importlib.import_module("keras_sgn.attacks.core")


def _linear_parts(model):
    return [np.asarray(v, np.float64) for v in model.layers[-1].weights]


def exact_linf_distance(weights, bias, x, y, iterations=60):
    """Smallest L-inf perturbation (the [0, 1] box included) that misclassifies each
    example of a linear model: the worst-case margin of `exact_linf_worst_case` falls
    as epsilon grows, so bisect epsilon per example until it crosses 0."""
    low, high = np.zeros(len(x)), np.ones(len(x))
    for _ in range(iterations):
        middle = (low + high) / 2
        margin, _ = exact_linf_worst_case(weights, bias, x, y, middle[:, None])
        high, low = np.where(margin <= 0, middle, high), np.where(margin <= 0, low, middle)
    margin, _ = exact_linf_worst_case(weights, bias, x, y, 1.0)
    return np.where(margin <= 0, high, np.inf)


def exact_l2_distance(weights, bias, x, y, iterations=200):
    """Smallest L2 perturbation (the [0, 1] box included) that misclassifies each
    example of a linear model. For each wrong class j the margin is linear,
    `m + c.d`; the shortest `d` in the box with `m + c.d <= 0` is
    `clip(-mu c, -x, 1 - x)` for the smallest `mu` that crosses (KKT), found by
    bisection on log(mu)."""
    flat = x.reshape(len(x), -1).astype(np.float64)
    logits = flat @ weights + bias
    best = np.full(len(x), np.inf)
    for j in range(weights.shape[1]):
        c = weights[:, y].T - weights[:, j][None]
        margin = logits[np.arange(len(x)), y] - logits[:, j]

        def step(log_mu, c=c):
            return np.clip(-(10.0 ** log_mu)[:, None] * c, -flat, 1.0 - flat)

        low, high = np.full(len(x), -12.0), np.full(len(x), 12.0)
        for _ in range(iterations):
            middle = (low + high) / 2
            crossed = margin + (c * step(middle)).sum(1) <= 0
            high, low = np.where(crossed, middle, high), np.where(crossed, low, middle)
        d = step(high)
        reachable = (margin + (c * d).sum(1) <= 1e-9) & (y != j)
        best = np.where(reachable, np.minimum(best, np.linalg.norm(d, axis=1)), best)
    return best


def _distances(x_adv, x, norm):
    delta = (np.asarray(x_adv, np.float64) - x).reshape(len(x), -1)
    return np.abs(delta).max(1) if norm == "linf" else np.linalg.norm(delta, axis=1)


def _fooled(model, x_adv, y):
    return np.argmax(model(x_adv, training=False), -1) != y


@pytest.mark.parametrize("norm,exact_distance", [("linf", exact_linf_distance),
                                                 ("l2", exact_l2_distance)])
def test_fab_finds_nearly_the_exact_minimal_perturbation_of_a_linear_model(
        digits_linear, norm, exact_distance):
    model, x, y = digits_linear
    exact = exact_distance(*_linear_parts(model), x, y)
    correct = ~_fooled(model, x, y)
    # A radius nothing fits in: every correct example is fooled, at FAB's smallest distance.
    x_adv = attacks.fab(model, x, y, epsilon=10.0, norm=norm).numpy()
    fooled = _fooled(model, x_adv, y)
    assert np.all(fooled[correct])
    ratio = _distances(x_adv, x, norm)[correct] / exact[correct]
    # Measured (L-inf / L2): min 1.005 / 1.005, median 1.005 / 1.005, 95% 1.058 / 1.015,
    # max 1.16 / 1.09: never below the truth, almost always within 1%.
    assert ratio.min() >= 1.0 - 1e-4
    assert np.median(ratio) <= 1.02
    assert np.mean(ratio <= 1.1) >= 0.9
    assert ratio.max() <= 1.5
    # Misclassified examples come back unchanged.
    np.testing.assert_array_equal(x_adv[~correct], x[~correct])


@pytest.mark.parametrize("norm,epsilon,targeted", [("linf", 0.1, False), ("linf", 0.1, True),
                                                   ("l2", 0.5, False)])
def test_fab_robust_accuracy_matches_the_exact_one(digits_linear, norm, epsilon, targeted):
    model, x, y = digits_linear
    weights, bias = _linear_parts(model)
    exact_distance = exact_linf_distance if norm == "linf" else exact_l2_distance
    exact_robust = int(np.sum(exact_distance(weights, bias, x, y) > epsilon))
    x_adv = attacks.fab(model, x, y, epsilon=epsilon, norm=norm, targeted=targeted).numpy()
    assert_in_ball(x_adv, x, epsilon, norm)
    robust = int(np.sum(~_fooled(model, x_adv, y)))
    # Measured: 182 vs 180 (L-inf, FAB and FAB-T), 205 vs 203 (L2) of 360.
    assert 0.2 * len(x) < exact_robust < 0.8 * len(x)
    assert exact_robust <= robust <= exact_robust + 2
    if norm == "linf":  # the shared ground truth agrees with the distances
        margin, _ = exact_linf_worst_case(weights, bias, x, y, epsilon)
        assert abs(int(np.sum(margin > 0)) - exact_robust) <= 1


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_boundary_projection_is_the_shortest_step_in_the_box(norm):
    rng = np.random.default_rng(0)
    n, size = 64, 20
    point = rng.uniform(size=(n, size))
    point[:, :4] = rng.integers(0, 2, size=(n, 4))  # coordinates already at the box's faces
    w = rng.normal(size=(n, size))
    w[:, 4] = 0.0  # a coordinate the hyperplane ignores
    c = rng.normal(size=n) * 0.5
    d = project_to_hyperplane(
        tf.constant(point, tf.float32), tf.constant(w, tf.float32), tf.constant(c, tf.float32),
        norm).numpy().astype(np.float64)
    assert np.all(point + d >= -1e-6) and np.all(point + d <= 1.0 + 1e-6)
    assert np.all(d[:, 4] == 0.0)
    # The exact answer: the same problem as a one-class linear model, solved independently.
    reach = np.where(-np.sign(c)[:, None] * np.sign(w) > 0, 1.0 - point, point)
    feasible = np.sum(np.abs(w) * reach, axis=1) >= np.abs(c)
    np.testing.assert_allclose(((w * d).sum(1) + c)[feasible], 0.0, atol=1e-4)
    shortest = []
    for i in range(n):
        # Class 0 scores c + <w, d> - 0, class 1 scores 0: crossing is `c + <w, d>` reaching 0.
        sign = np.sign(c[i]) or 1.0
        weights = np.stack([sign * w[i], np.zeros(size)], 1)
        bias = np.array([abs(c[i]) - sign * w[i] @ point[i], 0.0])
        distance = exact_linf_distance if norm == "linf" else exact_l2_distance
        shortest.append(distance(weights, bias, point[i][None], np.array([0]))[0])
    shortest = np.array(shortest)
    size_of = np.abs(d).max(1) if norm == "linf" else np.linalg.norm(d, axis=1)
    np.testing.assert_allclose(size_of[feasible], shortest[feasible], rtol=1e-3, atol=1e-5)
    # Out of reach: every coordinate that matters goes as far as the box lets it.
    np.testing.assert_allclose(np.abs(d)[~feasible], (reach * (w != 0))[~feasible], atol=1e-6)


@pytest.mark.parametrize("norm,epsilon,targeted", [("linf", 0.1, False), ("l2", 0.8, True)])
def test_adversarial_examples_stay_in_the_ball_and_in_range(digits_mlp, norm, epsilon, targeted):
    model, x, y = digits_mlp
    x, y = x[:96], y[:96]
    x_adv = attacks.fab(model, x, y, epsilon=epsilon, norm=norm, targeted=targeted,
                        n_target_classes=3, steps=20, restarts=2).numpy()
    delta = assert_in_ball(x_adv, x, epsilon, norm)
    fooled = _fooled(model, x_adv, y)
    assert accuracy(model, x_adv, y) < accuracy(model, x, y) - 0.2
    # Not fooled within epsilon: the clean image comes back.
    assert np.all(delta[~fooled] == 0)


def test_fab_is_about_as_strong_as_pgd_on_a_trained_network(digits_mlp):
    model, x, y = digits_mlp
    x, y = x[:160], y[:160]
    pgd = accuracy(model, attacks.pgd(model, x, y, epsilon=0.1, steps=20), y)
    fab = accuracy(model, attacks.fab(model, x, y, epsilon=0.1, steps=30), y)
    fab_t = accuracy(model, attacks.fab(model, x, y, epsilon=0.1, steps=30, targeted=True,
                                        n_target_classes=3), y)
    # Measured: PGD-20 0.550, FAB-30 0.537, FAB-T-30 (3 targets) 0.537.
    assert pgd < accuracy(model, x, y) - 0.3
    assert fab <= pgd + 0.05
    assert fab_t <= pgd + 0.05


def test_one_trace_per_configuration_and_restarts_never_weaken(digits_mlp):
    model, x, y = digits_mlp
    one = _fooled(model, attacks.fab(model, x[:40], y[:40], epsilon=0.05, steps=5), y[:40])
    three = _fooled(model, attacks.fab(model, x[:40], y[:40], epsilon=0.05, steps=5,
                                       restarts=3, seed=4), y[:40])
    assert not np.any(one & ~three)  # restart 0 is the single run
    function = core._COMPILED[model][(("fab", "linf", 5, False), (8, 8, 1), False)]
    assert function.experimental_get_tracing_count() == 1
    # Another batch size, epsilon, seed or step parameters reuse the graph.
    attacks.fab(model, x[:7], y[:7], epsilon=0.02, steps=5, seed=9, alpha_max=0.2, eta=1.1)
    assert function.experimental_get_tracing_count() == 1


def test_jit_compiled_fab_matches_the_graph_one(digits_mlp):
    model, x, y = digits_mlp
    x, y = x[:32], y[:32]
    kwargs = dict(epsilon=0.1, steps=8, targeted=True, n_target_classes=1)
    plain = attacks.fab(model, x, y, **kwargs).numpy()
    jit = attacks.fab(model, x, y, jit_compile=True, **kwargs).numpy()
    assert_in_ball(jit, x, 0.1, "linf")
    assert accuracy(model, plain, y) < accuracy(model, x, y) - 0.2
    assert abs(accuracy(model, jit, y) - accuracy(model, plain, y)) <= 2 / len(y)


def test_zero_epsilon_and_empty_batches_return_the_clean_images(digits_mlp):
    model, x, y = digits_mlp
    np.testing.assert_array_equal(attacks.fab(model, x[:8], y[:8], epsilon=0.0, steps=3), x[:8])
    assert attacks.fab(model, x[:0], y[:0], steps=3).shape == (0, 8, 8, 1)


@pytest.mark.parametrize("kwargs,parameter", [
    (dict(epsilon=-0.1), "epsilon"),
    (dict(steps=0), "steps"),
    (dict(norm="l1"), "norm"),
    (dict(restarts=0), "restarts"),
    (dict(targeted=True, n_target_classes=0), "n_target_classes"),
    (dict(alpha_max=1.5), "alpha_max"),
    (dict(eta=0.5), "eta"),
    (dict(beta=0.0), "beta"),
])
def test_bad_arguments_name_the_parameter(digits_mlp, kwargs, parameter):
    model, x, y = digits_mlp
    with pytest.raises(ValueError, match=parameter):
        attacks.fab(model, x[:2], y[:2], **kwargs)


def test_bad_inputs_are_refused(digits_mlp):
    model, x, y = digits_mlp
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        attacks.fab(model, x[:4] * 255.0, y[:4])
    with pytest.raises(ValueError, match="y must"):
        attacks.fab(model, x[:4], y[:3])


def test_two_class_model_targets_its_only_other_class():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    x = np.random.default_rng(0).uniform(size=(16, 4)).astype(np.float32)
    y = np.argmax(model(x), -1)
    x_adv = attacks.fab(model, x, y, epsilon=1.0, targeted=True, steps=20).numpy()
    assert_in_ball(x_adv, x, 1.0, "linf")
    assert np.all(_fooled(model, x_adv, y) | np.all(x_adv == x, axis=1))


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_every_fab_iterate_it_returns_is_in_range_and_misclassified(digits_mlp, norm):
    """The run itself, before any projection of the wrapper: its closest iterate is in
    [0, 1] and misclassified wherever it reports a finite distance (a clip dropped from
    the step would otherwise hide behind the wrapper's own projection)."""
    from keras_sgn.attacks.fab import fab_run

    model, x, y = digits_mlp
    forward = lambda images: model(images, training=False)  # noqa: E731
    keep = np.argmax(np.asarray(forward(x[:128])), axis=-1) == y[:128]
    x, y = tf.constant(x[:128][keep]), tf.constant(y[:128][keep].astype(np.int32))
    start = core.sphere_start(x, 0.3 if norm == "linf" else 2.0, norm, tf.constant([3, 4]))
    x_adv, distance = fab_run(forward, x, y, norm=norm, steps=10, start=start)
    x_adv, distance = x_adv.numpy(), distance.numpy()
    assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0
    found = np.isfinite(distance)
    assert found.mean() > 0.5
    predicted = np.argmax(np.asarray(forward(x_adv[found])), axis=-1)
    assert np.all(predicted != y.numpy()[found])
