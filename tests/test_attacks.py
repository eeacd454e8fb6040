"""The attack core: threat-model constraints, strength, and argument checks."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_sgn import attacks
from tests.helpers import accuracy, assert_in_ball


@pytest.mark.parametrize("norm,epsilon", [("linf", 0.1), ("l2", 0.5)])
def test_adversarial_examples_stay_in_the_ball_and_in_range(digits_mlp, norm, epsilon):
    model, x, y = digits_mlp
    assert_in_ball(attacks.pgd(model, x, y, epsilon=epsilon, steps=5, norm=norm, restarts=2),
                   x, epsilon, norm)
    # The random start is inside the ball and [0, 1] too.
    start = attacks.random_start(tf.constant(x), epsilon, norm, tf.constant([1, 2])).numpy()
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
    np.testing.assert_allclose(attacks.margin_loss(labels, logits), [1.0 - 3.0, 5.0 - 2.0])


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
