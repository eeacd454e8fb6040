"""Square Attack: threat-model constraints, strength against PGD and against the exact
robust accuracy of a linear model, immunity to gradient masking, argument checks."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_sgn import attacks


@pytest.fixture(scope="module")
def digits(digits_arrays):
    x, y = digits_arrays("train")
    x_test, y_test = digits_arrays("test")
    return x, y, x_test, y_test


@pytest.fixture(scope="module")
def trained(digits):
    """A small dense classifier trained normally on digits (seconds)."""
    x, y, x_test, y_test = digits
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(),
                              keras.layers.Dense(64, activation="relu"),
                              keras.layers.Dense(10)])
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, epochs=30, batch_size=64, verbose=0)
    return model, x_test, y_test


@pytest.fixture(scope="module")
def linear(digits):
    """A linear softmax classifier on the 64 pixels."""
    x, y, x_test, y_test = digits
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(),
                              keras.layers.Dense(10)])
    model.compile(keras.optimizers.Adam(0.01),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, epochs=20, batch_size=64, verbose=0)
    return model, x_test, y_test


def _accuracy(model, x, y):
    return float(np.mean(np.argmax(model(x, training=False), -1) == y))


def _check_in_ball(x_adv, x, epsilon, norm):
    x_adv = np.asarray(x_adv)
    assert x_adv.shape == x.shape and x_adv.dtype == np.float32
    assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0
    delta = (x_adv - x).reshape(len(x), -1)
    if norm == "linf":
        assert np.abs(delta).max() <= epsilon + 1e-6
    else:
        assert np.linalg.norm(delta, axis=1).max() <= epsilon + 1e-5
    return delta


@pytest.mark.parametrize("norm,epsilon", [("linf", 0.1), ("l2", 0.8)])
def test_stays_in_the_ball_and_in_range_and_is_deterministic(trained, norm, epsilon):
    model, x, y = trained
    x, y = x[:64], y[:64]
    x_adv = attacks.square(model, x, y, epsilon=epsilon, norm=norm, n_queries=150, seed=3)
    delta = _check_in_ball(x_adv, x, epsilon, norm)
    correct = np.argmax(model(x), -1) == y
    assert np.abs(delta[correct]).sum(1).min() > 0  # every example to attack was perturbed
    assert np.all(delta[~correct] == 0)  # already misclassified: returned unchanged
    again = attacks.square(model, x, y, epsilon=epsilon, norm=norm, n_queries=150, seed=3)
    np.testing.assert_array_equal(np.asarray(x_adv), np.asarray(again))
    other = attacks.square(model, x, y, epsilon=epsilon, norm=norm, n_queries=150, seed=4)
    assert not np.array_equal(np.asarray(x_adv), np.asarray(other))


@pytest.mark.parametrize("norm,epsilon", [("linf", 0.1), ("l2", 1.0)])
def test_multichannel_non_square_images_stay_in_the_ball(norm, epsilon):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((12, 9, 3)),
                              keras.layers.Conv2D(4, 3, activation="relu"),
                              keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(5)])
    x = np.random.default_rng(0).uniform(size=(16, 12, 9, 3)).astype(np.float32)
    x[:, :2] = 0.0  # pixels at the border of [0, 1]
    x[:, -2:] = 1.0
    y = np.argmax(model(x), -1)  # all correctly classified: the attack must run
    x_adv = attacks.square(model, x, y, epsilon=epsilon, norm=norm, n_queries=60)
    _check_in_ball(x_adv, x, epsilon, norm)


def test_linf_initialisation_is_vertical_stripes(trained):
    model, x, y = trained
    epsilon = 0.1
    correct = np.argmax(model(x), -1) == y
    x, y = x[correct][:32], y[correct][:32]
    delta = np.asarray(attacks.square(model, x, y, epsilon=epsilon, n_queries=1)) - x
    free = (np.abs(x - 0.0) > epsilon) & (np.abs(x - 1.0) > epsilon)  # clipping does not bind
    np.testing.assert_allclose(np.abs(delta[free]), epsilon, rtol=1e-5)
    # One sign per column and channel: every nonzero entry of a column agrees.
    signs = np.sign(delta)
    column_max, column_min = signs.max(axis=1), signs.min(axis=1)
    assert np.all((column_max <= 0) | (column_min >= 0))


def test_p_schedule_is_the_published_one():
    halvings = [0, 10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000]
    for k, start in enumerate(halvings):
        assert attacks.p_selection(0.8, start + 1, 10000) == pytest.approx(0.8 / 2 ** k)
    assert attacks.p_selection(0.8, 10, 10000) == 0.8
    assert attacks.p_selection(0.8, 50, 10000) == 0.4
    # Rescaled to the budget: iteration 101 of 1000 is iteration 1010 of 10000.
    assert attacks.p_selection(0.8, 101, 1000) == pytest.approx(0.8 / 32)


def test_square_is_about_as_strong_as_pgd_on_a_trained_network(trained):
    model, x, y = trained
    clean = _accuracy(model, x, y)
    pgd = _accuracy(model, attacks.pgd(model, x, y, epsilon=0.1, steps=20), y)
    x_adv = attacks.square(model, x, y, epsilon=0.1, n_queries=1000)
    square = _accuracy(model, x_adv, y)
    # Measured: clean 0.961, PGD-20 0.525, Square-1000 0.522.
    assert clean > 0.9 and pgd < clean - 0.3
    assert square < clean - 0.3
    assert square <= pgd + 0.05
    # Examples the model already gets wrong are returned unchanged.
    wrong = np.argmax(model(x), -1) != y
    np.testing.assert_array_equal(np.asarray(x_adv)[wrong], x[wrong])
    # L2 (measured at epsilon 1.0: PGD-20 0.017, Square-500 0.122).
    l2 = _accuracy(model, attacks.square(model, x, y, epsilon=1.0, norm="l2", n_queries=500), y)
    assert l2 < clean - 0.6


def _exact_linf_robust_accuracy(model, x, y, epsilon):
    """Exact L-inf robust accuracy of a linear classifier, [0, 1] box included."""
    weights, bias = (v.astype(np.float64) for v in model.layers[-1].get_weights())
    features = x.reshape(len(x), -1).astype(np.float64)
    low = np.maximum(-epsilon, -features)
    high = np.minimum(epsilon, 1.0 - features)
    robust = np.ones(len(x), bool)
    for j in range(weights.shape[1]):
        c = weights[:, y].T - weights[:, j][None]
        worst = (np.sum(c * features, 1) + bias[y] - bias[j]
                 + np.sum(np.minimum(c * low, c * high), 1))
        robust &= (worst > 0) | (y == j)
    return float(robust.mean())


def test_never_stronger_than_the_exact_robust_accuracy_of_a_linear_model(linear):
    model, x, y = linear
    epsilon = 0.1
    exact = _exact_linf_robust_accuracy(model, x, y, epsilon)
    square = _accuracy(model, attacks.square(model, x, y, epsilon=epsilon, n_queries=1000), y)
    # Measured: clean 0.958, exact 0.494, Square-1000 0.506 (PGD-20: 0.517).
    assert exact < _accuracy(model, x, y) - 0.3
    assert square >= exact - 1e-9
    assert square <= exact + 0.03


class StopGradient(keras.layers.Layer):
    """Identity on the forward pass, zero input gradient: masks the gradient."""

    def call(self, inputs):
        return tf.stop_gradient(inputs) + 0.0 * inputs


def test_gradient_masking_stops_pgd_but_not_square(trained):
    model, x, y = trained
    masked = keras.Sequential([keras.Input((8, 8, 1)), StopGradient(), model])
    np.testing.assert_allclose(masked(x), model(x), rtol=1e-6, atol=1e-6)
    x_tensor = tf.constant(x[:16])
    with tf.GradientTape() as tape:
        tape.watch(x_tensor)
        loss = tf.reduce_sum(masked(x_tensor))
    gradient = tape.gradient(loss, x_tensor)
    assert np.all(np.asarray(gradient) == 0)

    clean = _accuracy(masked, x, y)
    pgd = _accuracy(masked, attacks.pgd(masked, x, y, epsilon=0.1, steps=20), y)
    pgd_no_start = _accuracy(
        masked, attacks.pgd(masked, x, y, epsilon=0.1, steps=20, random_start=False), y)
    x_adv = attacks.square(masked, x, y, epsilon=0.1, n_queries=1000)
    square = _accuracy(masked, x_adv, y)
    # Measured: clean 0.961, PGD-20 0.956 (random start only), Square-1000 0.522.
    assert pgd_no_start == clean
    assert pgd >= clean - 0.05
    assert square < clean - 0.3
    # Score-based: the masked model answers the same queries, so the same attack.
    unmasked = attacks.square(model, x, y, epsilon=0.1, n_queries=1000)
    np.testing.assert_array_equal(np.asarray(x_adv), np.asarray(unmasked))


def test_zero_epsilon_returns_the_clean_images(trained):
    model, x, y = trained
    np.testing.assert_array_equal(attacks.square(model, x[:8], y[:8], epsilon=0.0), x[:8])


def test_verbose_shows_a_progress_bar(trained, capsys):
    model, x, y = trained
    attacks.square(model, x[:32], y[:32], epsilon=0.1, n_queries=20, verbose=True)
    assert "robust" in capsys.readouterr().out


@pytest.mark.parametrize("kwargs,parameter", [
    (dict(epsilon=-0.1), "epsilon"),
    (dict(norm="l1"), "norm"),
    (dict(n_queries=0), "n_queries"),
    (dict(n_queries=2.5), "n_queries"),
    (dict(p_init=0.0), "p_init"),
    (dict(p_init=1.5), "p_init"),
])
def test_bad_arguments_name_the_parameter(trained, kwargs, parameter):
    model, x, y = trained
    with pytest.raises(ValueError, match=parameter):
        attacks.square(model, x[:2], y[:2], **kwargs)


def test_bad_inputs_are_refused(trained):
    model, x, y = trained
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        attacks.square(model, x[:4] * 255.0, y[:4])
    with pytest.raises(ValueError, match="y must"):
        attacks.square(model, x[:4], y[:3])
    with pytest.raises(ValueError, match="x must"):
        attacks.square(model, x[:4].reshape(4, 64), y[:4])
