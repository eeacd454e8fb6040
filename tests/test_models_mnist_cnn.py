"""Tests of `sgn_mnist_cnn`, the CNN for 28x28 grey images (MNIST, Fashion-MNIST)."""

import functools

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_sgn.layers
import keras_sgn.models as M
from tests.testing import (
    layers_of_type,
    random_images,
    run_backbone_test,
    run_bad_argument_test,
    run_serialization_test,
    site_summary,
)

SHAPE = (28, 28, 1)


def test_default_network():
    # 16 + 32 stride-2 4x4 convolutions with BN, Dense(100): the anchor's network.
    model = run_backbone_test(M.sgn_mnist_cnn, {}, SHAPE, (2, 10), expected_params=166_454)
    assert model.name == "sgn_mnist_cnn"
    assert site_summary(model) == [("site_input", None)] + [
        (f"site_stage{i}", M.sites.DEFAULT_BETA) for i in (1, 2, 3)]
    assert [model.get_layer(f"site_stage{i}").output.shape[1:] for i in (1, 2, 3)] == [
        (14, 14, 16), (7, 7, 32), (100,)]
    for stage in ("stage1", "stage2"):
        conv = model.get_layer(f"{stage}_conv")
        assert (conv.kernel_size, conv.strides, conv.padding) == ((4, 4), (2, 2), "same")
        assert not conv.use_bias
    assert len(layers_of_type(model, keras.layers.BatchNormalization)) == 2
    assert not layers_of_type(model, keras.layers.MaxPooling2D)


def test_without_batch_norm_is_the_published_network():
    # Croce et al. 2019 / Wong & Kolter 2018: 272 + 8,224 + 156,900 + 1,010 parameters.
    model = run_backbone_test(M.sgn_mnist_cnn, dict(batch_norm=False), SHAPE, (2, 10),
                              expected_params=166_406)
    assert model.non_trainable_weights == []
    assert model.get_layer("stage1_conv").use_bias


def test_lenet_small_is_the_anchors_network_by_name():
    """`sgn_lenet_small` (the anchor's LeNetSmall, for --model) is the BatchNorm-free one."""
    model = M.get("sgn_lenet_small", sites=())
    assert model.count_params() == 166_406 and model.non_trainable_weights == []
    assert [layer.name for layer in model.layers] == [
        layer.name for layer in M.sgn_mnist_cnn(batch_norm=False, sites=()).layers]


def test_is_registered_and_configurable():
    model = M.get("sgn_mnist_cnn", filters=(8, 8, 16), dense_units=20, num_classes=5,
                  sites="input,stage4", beta={"stage4": 0.2})
    assert site_summary(model) == [("site_input", None), ("site_stage4", 0.2)]
    assert model.get_layer("stage3_conv").output.shape[1:] == (4, 4, 16)
    assert model.get_layer("stage4_dense").units == 20
    assert model.output_shape == (None, 5)


def test_round_trip():
    loaded = run_serialization_test(
        M.sgn_mnist_cnn, dict(mean=(0.286,), std=(0.353,), feedback_at_inference=True,
                              sites=["input", "stage2"]), random_images(SHAPE))
    assert loaded.feedback_at_inference
    assert loaded.get_layer("input_normalization").get_config()["mean"] == [0.286]


def test_one_backward_pass_gives_gradient_at_every_site():
    model = M.sgn_mnist_cnn()
    x = tf.constant(random_images(SHAPE))
    with tf.GradientTape() as tape:
        tape.watch(x)
        with keras_sgn.layers.record_sites() as activations:
            logits = model(x, training=False)
        loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(
            tf.constant([1, 4]), logits, from_logits=True))
    grads = tape.gradient(loss, [x] + list(activations.values()))
    assert [tuple(g.shape) for g in grads] == [(2, 28, 28, 1), (2, 14, 14, 16), (2, 7, 7, 32),
                                               (2, 100)]
    assert all(float(tf.reduce_sum(tf.abs(g))) > 0 for g in grads)


def test_sgn_training_steps_learn_a_batch():
    keras.utils.set_random_seed(0)
    model = M.sgn_mnist_cnn(filters=(8, 8), dense_units=16)
    model.compile(optimizer=keras.optimizers.Adam(0.01), method="sgn", epsilon=0.1)
    x = random_images(SHAPE, batch_size=16)
    y = np.arange(16) % 10
    first = model.train_on_batch(x, y, return_dict=True)["loss"]
    for _ in range(15):
        last = model.train_on_batch(x, y, return_dict=True)["loss"]
    assert np.isfinite(last) and last < 0.5 * first


@pytest.mark.parametrize("kwargs, param", [
    (dict(filters=()), "filters"),
    (dict(filters=(16, 0)), "filters"),
    (dict(dense_units=0), "dense_units"),
    (dict(batch_norm=1), "batch_norm"),
    (dict(sites=["stage4"]), "sites"),
    (dict(input_shape=(28, 28)), "input_shape"),
])
def test_bad_arguments(kwargs, param):
    run_bad_argument_test(M.sgn_mnist_cnn, kwargs, param)


def test_wide_network_doubles_every_stage():
    model = run_backbone_test(functools.partial(M.get, "sgn_mnist_cnn_wide"), {}, SHAPE, (2, 10),
                              expected_params=839_114)
    assert [model.get_layer(f"site_stage{i}").output.shape[1:] for i in (1, 2, 3)] == [
        (14, 14, 32), (7, 7, 64), (256,)]
    assert M.get("sgn_mnist_cnn_wide", sites=()).name == "sgn_mnist_cnn_wide"
