"""Square Attack: threat-model constraints, strength against PGD and against the exact
robust accuracy of a linear model, immunity to gradient masking, argument checks."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_sgn import attacks
from keras_sgn.attacks.square import p_selection
from tests.helpers import accuracy, assert_in_ball, exact_linf_worst_case


@pytest.mark.parametrize("norm,epsilon", [("linf", 0.1), ("l2", 0.8)])
def test_stays_in_the_ball_and_in_range_and_is_deterministic(digits_mlp, norm, epsilon):
    model, x, y = digits_mlp
    x, y = x[:64], y[:64]
    x_adv = attacks.square(model, x, y, epsilon=epsilon, norm=norm, n_queries=150, seed=3)
    delta = assert_in_ball(x_adv, x, epsilon, norm)
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
    assert_in_ball(x_adv, x, epsilon, norm)


def test_linf_initialisation_is_vertical_stripes(digits_mlp):
    model, x, y = digits_mlp
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
        assert p_selection(0.8, start + 1, 10000) == pytest.approx(0.8 / 2 ** k)
    assert p_selection(0.8, 10, 10000) == 0.8
    assert p_selection(0.8, 50, 10000) == 0.4
    # Rescaled to the budget: iteration 101 of 1000 is iteration 1010 of 10000.
    assert p_selection(0.8, 101, 1000) == pytest.approx(0.8 / 32)


def test_square_is_about_as_strong_as_pgd_on_a_trained_network(digits_mlp):
    model, x, y = digits_mlp
    clean = accuracy(model, x, y)
    pgd = accuracy(model, attacks.pgd(model, x, y, epsilon=0.1, steps=20), y)
    x_adv = attacks.square(model, x, y, epsilon=0.1, n_queries=1000)
    square = accuracy(model, x_adv, y)
    # Measured: clean 0.961, PGD-20 0.525, Square-1000 0.522.
    assert clean > 0.9 and pgd < clean - 0.3
    assert square < clean - 0.3
    assert square <= pgd + 0.05
    # Examples the model already gets wrong are returned unchanged.
    wrong = np.argmax(model(x), -1) != y
    np.testing.assert_array_equal(np.asarray(x_adv)[wrong], x[wrong])
    # L2 (measured at epsilon 1.0: PGD-20 0.017, Square-500 0.122).
    l2 = accuracy(model, attacks.square(model, x, y, epsilon=1.0, norm="l2", n_queries=500), y)
    assert l2 < clean - 0.6


def _exact_linf_robust_accuracy(model, x, y, epsilon):
    weights, bias = model.layers[-1].get_weights()
    margin, _ = exact_linf_worst_case(weights, bias, x, y, epsilon)
    return float(np.mean(margin > 0))


def test_never_stronger_than_the_exact_robust_accuracy_of_a_linear_model(digits_linear):
    model, x, y = digits_linear
    epsilon = 0.1
    exact = _exact_linf_robust_accuracy(model, x, y, epsilon)
    square = accuracy(model, attacks.square(model, x, y, epsilon=epsilon, n_queries=1000), y)
    # Measured: clean 0.956, exact 0.500, Square-1000 0.503 (PGD-20: 0.539).
    assert exact < accuracy(model, x, y) - 0.3
    assert square >= exact - 1e-9
    assert square <= exact + 0.03


class StopGradient(keras.layers.Layer):
    """Identity on the forward pass, zero input gradient: masks the gradient."""

    def call(self, inputs):
        return tf.stop_gradient(inputs) + 0.0 * inputs


def test_gradient_masking_stops_pgd_but_not_square(digits_mlp):
    model, x, y = digits_mlp
    masked = keras.Sequential([keras.Input((8, 8, 1)), StopGradient(), model])
    np.testing.assert_allclose(masked(x), model(x), rtol=1e-6, atol=1e-6)
    x_tensor = tf.constant(x[:16])
    with tf.GradientTape() as tape:
        tape.watch(x_tensor)
        loss = tf.reduce_sum(masked(x_tensor))
    gradient = tape.gradient(loss, x_tensor)
    assert np.all(np.asarray(gradient) == 0)

    clean = accuracy(masked, x, y)
    pgd = accuracy(masked, attacks.pgd(masked, x, y, epsilon=0.1, steps=20), y)
    pgd_no_start = accuracy(
        masked, attacks.pgd(masked, x, y, epsilon=0.1, steps=20, random_start=False), y)
    x_adv = attacks.square(masked, x, y, epsilon=0.1, n_queries=1000)
    square = accuracy(masked, x_adv, y)
    # Measured: clean 0.961, PGD-20 0.956 (random start only), Square-1000 0.522.
    assert pgd_no_start == clean
    assert pgd >= clean - 0.05
    assert square < clean - 0.3
    # Score-based: the masked model answers the same queries, so the same attack.
    unmasked = attacks.square(model, x, y, epsilon=0.1, n_queries=1000)
    np.testing.assert_array_equal(np.asarray(x_adv), np.asarray(unmasked))


def test_zero_epsilon_returns_the_clean_images(digits_mlp):
    model, x, y = digits_mlp
    np.testing.assert_array_equal(attacks.square(model, x[:8], y[:8], epsilon=0.0), x[:8])


def test_verbose_shows_a_progress_bar(digits_mlp, capsys):
    model, x, y = digits_mlp
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
def test_bad_arguments_name_the_parameter(digits_mlp, kwargs, parameter):
    model, x, y = digits_mlp
    with pytest.raises(ValueError, match=parameter):
        attacks.square(model, x[:2], y[:2], **kwargs)


def test_bad_inputs_are_refused(digits_mlp):
    model, x, y = digits_mlp
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        attacks.square(model, x[:4] * 255.0, y[:4])
    with pytest.raises(ValueError, match="y must"):
        attacks.square(model, x[:4], y[:3])
    with pytest.raises(ValueError, match="x must"):
        attacks.square(model, x[:4].reshape(4, 64), y[:4])
