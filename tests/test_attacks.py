"""The attack core: threat-model constraints, strength, worst iterate, caches, checks."""

import gc
import importlib
import weakref

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_sgn import attacks
from tests.helpers import accuracy, assert_in_ball

# The package's `pgd` is the function; the core module holds the compiled-attack cache.
core = importlib.import_module("keras_sgn.attacks.core")


@pytest.mark.parametrize("norm,epsilon", [("linf", 0.1), ("l2", 0.5)])
def test_adversarial_examples_stay_in_the_ball_and_in_range(digits_mlp, norm, epsilon):
    model, x, y = digits_mlp
    assert_in_ball(attacks.pgd(model, x, y, epsilon=epsilon, steps=5, norm=norm, restarts=2),
                   x, epsilon, norm)
    # The random start is inside the ball and [0, 1] too.
    start = attacks.core.random_start(tf.constant(x), epsilon, norm, tf.constant([1, 2])).numpy()
    assert start.min() >= 0.0 and start.max() <= 1.0
    delta = (start - x).reshape(len(x), -1)
    size = np.abs(delta).max(1) if norm == "linf" else np.linalg.norm(delta, axis=1)
    assert size.max() <= epsilon + 1e-5 and size.mean() > 0


def test_pgd_lowers_accuracy_and_more_steps_never_help(digits_mlp):
    model, x, y = digits_mlp
    clean = accuracy(model, x, y)
    fgsm = accuracy(model, attacks.fgsm(model, x, y, epsilon=0.1), y)
    pgd5 = accuracy(model, attacks.pgd(model, x, y, epsilon=0.1, steps=5), y)
    pgd20 = accuracy(model, attacks.pgd(model, x, y, epsilon=0.1, steps=20), y)
    cw20 = accuracy(model, attacks.pgd(model, x, y, epsilon=0.1, steps=20, loss="cw"), y)
    assert clean > 0.9
    assert pgd5 < clean - 0.2
    assert pgd20 <= pgd5 + 0.01
    assert pgd20 <= fgsm + 0.01
    assert cw20 < clean - 0.2
    # A bigger ball is never better for the model.
    assert accuracy(model, attacks.pgd(model, x, y, epsilon=0.2, steps=20), y) <= pgd20 + 0.01


def test_restarts_never_weaken_the_attack(digits_mlp):
    model, x, y = digits_mlp
    one = np.argmax(model(attacks.pgd(model, x, y, epsilon=0.05, steps=3, seed=5)), -1) == y
    three = np.argmax(model(attacks.pgd(model, x, y, epsilon=0.05, steps=3, seed=5,
                                        restarts=3)), -1) == y
    # Restart 0 is the single run; the worst case keeps every point it fooled.
    assert not np.any(three & ~one)
    assert three.mean() <= one.mean()


def test_zero_epsilon_returns_the_clean_images(digits_mlp):
    model, x, y = digits_mlp
    np.testing.assert_allclose(attacks.pgd(model, x[:8], y[:8], epsilon=0.0, steps=3), x[:8])


def test_margin_loss_on_handcrafted_logits():
    logits = tf.constant([[3.0, 1.0, 0.5], [0.0, 2.0, 5.0]])
    labels = tf.constant([0, 1])
    np.testing.assert_allclose(attacks.core.margin_loss(labels, logits), [1.0 - 3.0, 5.0 - 2.0])


@pytest.mark.parametrize("kwargs,parameter", [
    (dict(epsilon=-0.1), "epsilon"),
    (dict(steps=0), "steps"),
    (dict(norm="l1"), "norm"),
    (dict(loss="hinge"), "loss"),
    (dict(restarts=0), "restarts"),
])
def test_bad_attack_arguments_name_the_parameter(digits_mlp, kwargs, parameter):
    model, x, y = digits_mlp
    with pytest.raises(ValueError, match=parameter):
        attacks.pgd(model, x[:2], y[:2], **kwargs)


def test_images_outside_unit_range_are_refused(digits_mlp):
    model, x, y = digits_mlp
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        attacks.pgd(model, x[:4] * 255.0, y[:4])


def _narrow_window_model():
    """One pixel in, two logits: class 1 wins only for x in (0.56, 0.66), and the loss
    peaks at 0.61, so signed-gradient steps of 0.1 from 0.5 go 0.6 (fooled), 0.7 (not),
    0.6 (fooled), ... (the last iterate of an even number of steps is not fooled)."""
    def logits(images):
        pixel = tf.reshape(images, [-1, 1])
        return tf.concat([tf.zeros_like(pixel), 0.5 - 200.0 * tf.square(pixel - 0.61)], 1)

    return keras.Sequential([keras.Input((1, 1, 1)), keras.layers.Lambda(logits)])


@pytest.mark.parametrize("loss,restarts", [("ce", 1), ("cw", 1), ("ce", 2)])
def test_pgd_keeps_an_example_fooled_at_an_earlier_step(loss, restarts):
    model = _narrow_window_model()
    x, y = np.full((1, 1, 1, 1), 0.5, np.float32), np.array([0])
    assert accuracy(model, x, y) == 1.0
    assert accuracy(model, x + 0.1, y) == 0.0 and accuracy(model, x + 0.2, y) == 1.0
    for steps in (1, 2, 4):
        x_adv = attacks.pgd(model, x, y, epsilon=0.3, step_size=0.1, steps=steps, loss=loss,
                            random_start=False, restarts=restarts)
        assert accuracy(model, x_adv, y) == 0.0, steps
        np.testing.assert_allclose(x_adv, x + 0.1, atol=1e-6)  # the first fooled iterate


def test_pgd_returns_the_highest_loss_iterate_of_an_unfooled_example():
    model = _narrow_window_model()
    x, y = np.full((1, 1, 1, 1), 0.2, np.float32), np.array([0])
    # From 0.2 the ball of radius 0.25 never reaches the window; the loss grows towards 0.45.
    x_adv = attacks.pgd(model, x, y, epsilon=0.25, step_size=0.1, steps=5, random_start=False)
    np.testing.assert_allclose(x_adv, x + 0.25, atol=1e-6)


def test_compiled_attacks_do_not_keep_their_model_alive():
    def attacked_model():
        model = keras.Sequential([keras.Input((4, 4, 1)), keras.layers.Flatten(),
                                  keras.layers.Dense(8, activation="relu"),
                                  keras.layers.BatchNormalization(), keras.layers.Dense(4)])
        x = np.random.default_rng(0).uniform(size=(6, 4, 4, 1)).astype(np.float32)
        y = np.arange(6) % 4
        attacks.pgd(model, x, y, epsilon=0.1, steps=2)
        attacks.apgd(model, x, y, epsilon=0.1, steps=2, loss="dlr", targeted=True)
        attacks.fab(model, x, y, epsilon=0.1, steps=2)
        attacks.square(model, x, y, epsilon=0.1, n_queries=3)
        assert len(core._COMPILED[model]) == 4
        return weakref.ref(model)

    model_ref = attacked_model()
    gc.collect()
    assert model_ref() is None
    assert all(key is not None for key in list(core._COMPILED.keys()))


@pytest.mark.parametrize("norm,radius", [("linf", 0.1), ("l2", 0.5)])
def test_sphere_start_is_on_the_surface_of_the_ball(norm, radius):
    x = tf.fill([8, 4, 4, 1], 0.5)
    start = attacks.core.sphere_start(x, radius, norm, tf.constant([1, 2])).numpy()
    delta = (start - 0.5).reshape(8, -1)
    size = np.abs(delta).max(1) if norm == "linf" else np.linalg.norm(delta, axis=1)
    np.testing.assert_allclose(size, radius, rtol=1e-5)
    again = attacks.core.sphere_start(x, radius, norm, tf.constant([1, 2])).numpy()
    np.testing.assert_array_equal(start, again)
    np.testing.assert_allclose(attacks.core.per_example_norm(tf.constant(start - 0.5), norm), size,
                               rtol=1e-6)
