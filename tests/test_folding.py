"""The attacks' forward pass with BatchNorm folded (`keras_sgn.attacks.folding`)."""

import gc
import weakref

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_sgn import attacks, models
from keras_sgn.attacks import core, folding


def _with_moving_statistics(model, seed=0):
    """Non-trivial BatchNorm statistics, as a trained model has (fresh ones are 0 and 1)."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            size = layer.moving_mean.shape[0]
            layer.moving_mean.assign(rng.normal(0.0, 0.5, size))
            layer.moving_variance.assign(rng.uniform(0.2, 3.0, size))
            layer.gamma.assign(rng.uniform(0.5, 1.5, size))
            layer.beta.assign(rng.normal(0.0, 0.3, size))
    return model


def _images(model, n=16, seed=1):
    shape = (n, *model.inputs[0].shape[1:])
    return tf.constant(np.random.default_rng(seed).uniform(size=shape), tf.float32)


def _input_gradient(forward, x):
    with tf.GradientTape() as tape:
        tape.watch(x)
        total = tf.reduce_sum(forward(x)[:, 0] - forward(x)[:, 1])
    return tape.gradient(total, x)


def _plain(model):
    return lambda images: model(images, training=False)


@pytest.fixture(scope="module")
def mnist_cnn():
    return _with_moving_statistics(models.get("sgn_mnist_cnn"))


def test_the_zoo_cnn_is_folded_and_computes_the_same_logits_and_input_gradients(mnist_cnn):
    forward = folding.folded_forward(mnist_cnn)
    assert forward is not None
    # Both conv + BatchNorm pairs: each conv replaced, each BatchNorm skipped.
    assert len(folding._PLANS[mnist_cnn][1]) == 4
    x = _images(mnist_cnn)
    expected = mnist_cnn(x, training=False)
    np.testing.assert_allclose(tf.function(forward)(x), expected, atol=1e-4)
    np.testing.assert_allclose(_input_gradient(forward, x), _input_gradient(_plain(mnist_cnn), x),
                               atol=1e-5)
    assert core.weak_forward(mnist_cnn).__qualname__ == forward.__qualname__


def test_the_folding_follows_the_weights_as_they_change(mnist_cnn):
    forward = tf.function(folding.folded_forward(mnist_cnn))
    x = _images(mnist_cnn)
    forward(x)  # traced with the old values
    batch_norm = [layer for layer in mnist_cnn.layers
                  if isinstance(layer, keras.layers.BatchNormalization)][0]
    old = batch_norm.moving_variance.numpy()
    try:
        batch_norm.moving_variance.assign(old * 4.0)
        np.testing.assert_allclose(forward(x), mnist_cnn(x, training=False), atol=1e-4)
    finally:
        batch_norm.moving_variance.assign(old)


def test_an_attack_on_a_folded_model_finds_what_the_model_itself_misclassifies(mnist_cnn):
    x = _images(mnist_cnn, n=8)
    y = np.argmax(mnist_cnn(x, training=False), -1)
    x_adv = attacks.pgd(mnist_cnn, x, y, epsilon=0.3, steps=10)
    assert np.max(np.abs(np.asarray(x_adv) - np.asarray(x))) <= 0.3 + 1e-6
    # Random images and a large ball: PGD through the folded graph must fool most.
    assert np.mean(np.argmax(mnist_cnn(x_adv, training=False), -1) != y) >= 0.5


def _conv_bn_model(activation=None, shared=False, extra_consumer=False):
    inputs = keras.Input((8, 8, 1))
    conv = keras.layers.Conv2D(4, 3, padding="same", activation=activation)
    hidden = conv(inputs)
    normalised = keras.layers.BatchNormalization()(hidden)
    if shared:
        normalised = conv(keras.layers.Conv2D(1, 1)(normalised))
    if extra_consumer:
        normalised = keras.layers.Add()([normalised, hidden])
    outputs = keras.layers.Dense(3)(keras.layers.Flatten()(normalised))
    return _with_moving_statistics(keras.Model(inputs, outputs))


def test_a_plain_functional_model_is_folded():
    model = _conv_bn_model()
    assert folding.is_folded(model)
    x = _images(model)
    np.testing.assert_allclose(folding.folded_forward(model)(x), model(x, training=False),
                               atol=1e-4)


@pytest.mark.parametrize("kwargs", [{"activation": "relu"}, {"shared": True},
                                    {"extra_consumer": True}],
                         ids=["conv-with-activation", "shared-conv", "conv-read-twice"])
def test_a_pair_that_is_not_exactly_one_affine_layer_is_left_alone(kwargs):
    model = _conv_bn_model(**kwargs)
    assert not folding.is_folded(model)
    assert core.weak_forward(model)(_images(model)).shape == (16, 3)


def test_inference_time_feedback_and_subclassed_models_are_not_folded():
    feedback = models.get("sgn_small_cnn", feedback_at_inference=True)
    assert not folding.is_folded(feedback)

    class Subclassed(keras.Model):
        def __init__(self):
            super().__init__()
            self.conv = keras.layers.Conv2D(2, 3)
            self.norm = keras.layers.BatchNormalization()

        def call(self, x, training=None):
            return keras.layers.Flatten()(self.norm(self.conv(x), training=training))

    subclassed = Subclassed()
    subclassed(tf.zeros((1, 8, 8, 1)))
    assert not folding.is_folded(subclassed)


def test_the_fold_plan_does_not_keep_a_model_alive():
    model = _conv_bn_model()
    assert folding.is_folded(model)
    reference = weakref.ref(model)
    del model
    gc.collect()
    assert reference() is None


@pytest.mark.parametrize("block_type", ["basic", "preact"])
def test_a_residual_network_is_folded_where_its_batchnorms_follow_a_conv(block_type):
    model = _with_moving_statistics(models.sgn_resnet(
        (4, 8), (1, 1), stage_strides=(1, 2), block_type=block_type, input_shape=(8, 8, 3),
        num_classes=3, mean=(0.5,) * 3, std=(0.25,) * 3))
    batch_norms = [layer for layer in model.layers
                   if isinstance(layer, keras.layers.BatchNormalization)]
    forward = folding.folded_forward(model)
    assert forward is not None
    folded_pairs = len(folding._PLANS[model][1]) // 2
    # Basic blocks: every BatchNorm follows a conv. Pre-activation blocks: most come first
    # in their block (after an addition), only those right after a conv are folded.
    assert folded_pairs == (len(batch_norms) if block_type == "basic" else 2)
    x = _images(model)
    np.testing.assert_allclose(forward(x), model(x, training=False), atol=1e-4)
    np.testing.assert_allclose(_input_gradient(forward, x), _input_gradient(_plain(model), x),
                               atol=1e-4)
