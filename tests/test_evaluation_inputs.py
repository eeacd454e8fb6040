"""Bad input to evaluation is an error naming the parameter and the fix, raised
before any attack runs; sound input still evaluates."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_sgn import evaluation, models
from keras_sgn.attacks import AttackSpec


def _dense(num_classes=10, input_shape=(8, 8, 1)):
    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.Input(input_shape), keras.layers.Flatten(),
                             keras.layers.Dense(num_classes)])


def _images(n=16, channels=1):
    return np.random.default_rng(0).uniform(size=(n, 8, 8, channels)).astype("float32")


def _recording_attack():
    """A custom attack that records each call and leaves the images alone."""
    def attack(model, x, y, epsilon, norm, seed):
        attack.calls += 1
        return x

    attack.calls = 0
    return attack


def _evaluate(model, dataset, epsilon=0.1, attack=None, **kwargs):
    attack = attack or _recording_attack()
    return evaluation.evaluate_robustness(
        model, dataset, epsilon=epsilon, attacks=[AttackSpec("recorder", fn=attack)],
        run_sanity_checks=False, verbose=False, **kwargs)


@pytest.mark.parametrize("nan_rows", [slice(None), slice(3, 4)])
def test_nan_images_are_refused(nan_rows):
    x, y = _images(), np.arange(16) % 10
    x[nan_rows] = np.nan  # today an all-NaN batch reports 10.9% accuracy
    attack = _recording_attack()
    with pytest.raises(ValueError, match=r"dataset images must be finite\. Received: \d+ NaN"):
        _evaluate(_dense(), [(x, y)], attack=attack)
    assert attack.calls == 0


@pytest.mark.parametrize("epsilon", [float("inf"), float("nan"), -0.1])
def test_epsilon_must_be_finite_and_non_negative(epsilon):
    # epsilon = inf gave NaN adversarial images that counted as robust.
    x, y = _images(), np.arange(16) % 10
    with pytest.raises(ValueError, match=r"epsilon must be a finite number >= 0.*Received: "
                                         r"epsilon="):
        evaluation.evaluate_robustness(_dense(), [(x, y)], epsilon=epsilon,
                                       attacks="pgd-ce:steps=1", run_sanity_checks=False,
                                       verbose=False)


@pytest.mark.parametrize("bad_label", [10, -1])
def test_labels_out_of_range_are_refused(bad_label):
    x, y = _images(), np.arange(16) % 10
    y[5] = bad_label  # today silently counted as misclassified
    attack = _recording_attack()
    with pytest.raises(ValueError, match=r"dataset labels must be class indices in \[0, 10\)"):
        _evaluate(_dense(), [(x, y)], attack=attack)
    assert attack.calls == 0


def test_one_hot_labels_give_the_same_report_as_class_indices():
    x, y = _images(64), np.arange(64) % 10
    model = _dense()
    as_indices = _evaluate(model, [(x, y)])
    as_one_hot = _evaluate(model, [(x, keras.utils.to_categorical(y, 10))])
    column = _evaluate(model, [(x, y.reshape(-1, 1))])
    expected = float(np.mean(np.argmax(np.asarray(model(x)), axis=-1) == y))
    for report in (as_indices, as_one_hot, column):
        assert report["n_examples"] == 64
        assert report["clean_accuracy"] == pytest.approx(expected)
        assert report["robust_accuracy"] == pytest.approx(expected)


def test_soft_labels_are_refused():
    x, y = _images(), keras.utils.to_categorical(np.arange(16) % 10, 10)
    smoothed = 0.9 * y + 0.01  # label smoothing: not one class per row
    with pytest.raises(ValueError, match="rows are not one-hot.*np.argmax"):
        _evaluate(_dense(), [(x, smoothed)])


def test_one_hot_labels_of_another_width_are_refused():
    x, y = _images(), keras.utils.to_categorical(np.arange(16) % 10, 10)
    with pytest.raises(ValueError, match="one-hot over 10 classes but the model outputs 5"):
        _evaluate(_dense(num_classes=5), [(x, y)])


def test_five_class_model_on_ten_class_labels_is_refused_before_any_attack():
    # The labels the 5-class model cannot output appear only in the last batch:
    # every label is read before the first attack.
    x = _images(32)
    y = np.concatenate([np.arange(24) % 5, 5 + np.arange(8) % 5])
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(8)
    attack = _recording_attack()
    with pytest.raises(ValueError, match=r"class indices in \[0, 5\).*Received: labels from 5 "
                                         r"to 9"):
        _evaluate(_dense(num_classes=5), dataset, attack=attack)
    assert attack.calls == 0
    # Given the dataset's class count, the mismatch is found without reading data.
    with pytest.raises(ValueError, match="model outputs 5 classes but num_classes=10"):
        _evaluate(_dense(num_classes=5), iter([]), num_classes=10)


def test_model_of_other_input_channels_is_refused_before_any_attack():
    # An SGN small CNN built for RGB: its normalisation layer broadcasts one
    # channel to three, so today it runs silently on grayscale images.
    rgb_model = models.get("sgn_small_cnn", width=4, input_shape=(8, 8, 3))
    x, y = _images(16, channels=1), np.arange(16) % 10
    attack = _recording_attack()
    with pytest.raises(ValueError, match=r"do not fit the model: each image has shape "
                                         r"\(8, 8, 1\) but the model takes \(8, 8, 3\)"):
        _evaluate(rgb_model, tf.data.Dataset.from_tensor_slices((x, y)).batch(8), attack=attack)
    assert attack.calls == 0


def test_images_and_labels_of_different_lengths_are_refused():
    x, y = _images(16), np.arange(15) % 10
    with pytest.raises(ValueError, match="one label per image. Received: 16 images and 15"):
        _evaluate(_dense(), [(x, y)])


def test_sanity_checks_refuse_bad_arrays_too():
    x, y = _images(), np.arange(16) % 10
    x[0, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="x must be finite"):
        evaluation.sanity_checks(_dense(), x, y, epsilon=0.1, steps=1, square_queries=10)
    with pytest.raises(ValueError, match=r"y must be class indices in \[0, 10\)"):
        evaluation.sanity_checks(_dense(), _images(), y + 1, epsilon=0.1, steps=1,
                                 square_queries=10)


def test_numpy_arrays_evaluate_like_their_batches():
    """`evaluate_robustness(model, (x, y))` with arrays failed with "too many values to
    unpack"; it evaluates them in batches of `batch_size`, as a list of batches would."""
    x, y = _images(40), np.arange(40) % 10
    model = _dense()
    report = _evaluate(model, (x, y), batch_size=16)
    batched = _evaluate(model, [(x[:20], y[:20]), (x[20:], y[20:])])
    assert report["n_examples"] == 40
    assert report["clean_accuracy"] == batched["clean_accuracy"] == pytest.approx(
        float(np.mean(np.argmax(np.asarray(model(x)), axis=-1) == y)))
    assert _evaluate(model, (tf.constant(x), tf.constant(y)))["n_examples"] == 40


def test_a_model_ending_in_softmax_is_refused_with_the_fix():
    x, y = _images(32), np.arange(32) % 10
    keras.utils.set_random_seed(0)
    probabilities = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(),
                                      keras.layers.Dense(10, activation="softmax")])
    attack = _recording_attack()
    with pytest.raises(ValueError, match="outputs probabilities.*attacks need logits.*"
                                         "activation=None"):
        _evaluate(probabilities, (x, y), attack=attack)
    assert attack.calls == 0  # before any attack
    _evaluate(_dense(), (x, y))  # logits pass


def test_evaluation_runs_batchnorm_on_its_moving_statistics():
    """A plain BatchNorm model whose moving statistics differ from any batch's: clean and
    attacked predictions are those of inference mode (training mode would renormalise
    each batch and get most labels wrong)."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 1))
    hidden = keras.layers.Dense(10)(keras.layers.Flatten()(inputs))
    model = keras.Model(inputs, keras.layers.BatchNormalization()(hidden))
    batch_norm = model.layers[-1]
    rng = np.random.default_rng(1)
    batch_norm.moving_mean.assign(rng.normal(0, 3, 10).astype("float32"))
    batch_norm.moving_variance.assign(np.full(10, 0.01, "float32"))
    x = _images(64)
    y = np.argmax(np.asarray(model(x, training=False)), axis=-1)
    assert np.mean(np.argmax(np.asarray(model(x, training=True)), axis=-1) == y) < 0.8
    report = evaluation.evaluate_robustness(
        model, (x, y), epsilon=1e-6, attacks=["pgd-ce:steps=2"], run_sanity_checks=False,
        verbose=False)
    assert report["clean_accuracy"] == 1.0 and report["robust_accuracy"] == 1.0
