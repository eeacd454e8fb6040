"""Tests of `SGNModel` itself: its options survive saving, and so does its
compile state; its validation attack keeps each example's worst iterate."""

import keras
import numpy as np
import tensorflow as tf

from keras_sgn.models import SGNModel
from keras_sgn.models.sites import SitePlacer
from tests.sgn_reference import EPS, Tiny, ce, reference_pgd_iterates, uniform_start
from tests.testing import random_images, run_serialization_test

OPTIONS = dict(feedback_at_inference=True, feedback_step_size=0.05, feedback_epsilon=0.1)


def _tiny_sgn_model(**options):
    """A functional SGNModel made by hand, not by a builder."""
    inputs = keras.Input((4, 4, 1))
    x = keras.layers.Flatten()(SitePlacer({"input": None}, "l2_relative")(inputs, "input"))
    return SGNModel(inputs, keras.layers.Dense(3)(x), name="tiny", **options)


def test_options_round_trip():
    loaded = run_serialization_test(_tiny_sgn_model, OPTIONS, random_images((4, 4, 1)))
    assert {key: getattr(loaded, key) for key in OPTIONS} == OPTIONS
    assert loaded.get_config()["feedback_epsilon"] == 0.1


def test_compile_state_round_trips(tmp_path):
    model = _tiny_sgn_model()
    model.compile(optimizer=keras.optimizers.SGD(0.1), method="pgd", epsilon=0.2,
                  attack_steps=3, seed=7, eval_steps=4, eval_restarts=2)
    model.save(tmp_path / "tiny.keras")
    loaded = keras.saving.load_model(tmp_path / "tiny.keras")
    assert loaded.method is not None and loaded.method.epsilon == 0.2
    assert (loaded.attack_seed, loaded.eval_steps, loaded.eval_restarts) == (7, 4, 2)
    assert loaded.get_compile_config() == model.get_compile_config()


def test_validation_attack_keeps_each_examples_worst_iterate():
    """`robust_accuracy` counts an example fooled at ANY PGD step:
    against PGD written out, with the first fooled iterate else the highest loss."""
    tiny = Tiny()
    tiny.model.compile(keras.optimizers.SGD(0.1), method="standard", epsilon=EPS, eval_steps=4,
                       seed=5)
    x = tf.random.stateless_uniform((16, 6), [5, 6])
    y = tf.constant(np.arange(16) % 3, tf.int32)
    got = tiny.model.attack(x, y)

    forward = lambda z: tiny.logits(z, training=False)  # noqa: E731
    iterates = reference_pgd_iterates(forward, x, y, uniform_start(x, seed=[1005, 0]),
                                      EPS / 4, 4)
    losses = np.stack([ce(y, forward(z)) for z in iterates])
    fooled = np.stack([np.argmax(forward(z), -1) != y for z in iterates])
    chosen = np.where(fooled.any(0), fooled.argmax(0), losses.argmax(0))
    expected = np.stack([iterates[k][i] for i, k in enumerate(chosen)])
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    # Some example's worst iterate is not the last one (the old last-iterate attack).
    assert (chosen != len(iterates) - 1).any()
