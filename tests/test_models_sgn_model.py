"""Tests of `SGNModel` itself: its options survive saving, and so does its compile state."""

import keras

from keras_sgn.models import SGNModel
from keras_sgn.models.sites import SitePlacer
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
