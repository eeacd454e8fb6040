"""Tests for keras_sgn.models.backbones (builders, sites, registry, serialisation)."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

import keras_sgn.layers  # noqa: E402
import keras_sgn.models  # noqa: E402
from keras_sgn.layers import SelfGradient  # noqa: E402
from keras_sgn.models import SGNModel  # noqa: E402


def _sites(model):
    return [layer for layer in model.layers if isinstance(layer, SelfGradient)]


def _site_summary(model):
    return [
        (layer.name, None if layer.input_site else layer.beta) for layer in _sites(model)
    ]


def _trainable_count(model):
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


# --------------------------------------------------------------------------
# Parameter counts
# --------------------------------------------------------------------------


def test_resnet18_parameter_count():
    model = keras_sgn.models.sgn_resnet18()
    assert 11.1e6 < model.count_params() < 11.3e6
    # The PyTorch reference CIFAR ResNet-18 has 11,173,962 parameters; Keras
    # count_params also counts BN moving mean/variance (non-trainable).
    assert _trainable_count(model) == 11_173_962
    assert model.output_shape == (None, 10)


def test_preact_resnet18_parameter_count():
    model = keras_sgn.models.sgn_preact_resnet18()
    assert 11.1e6 < model.count_params() < 11.3e6
    # Wong et al. 2020 PreActResNet18 (with the final BN): 11,172,170.
    assert _trainable_count(model) == 11_172_170


def test_wrn_parameter_counts_build_only():
    wrn28 = keras_sgn.models.sgn_wrn_28_10()
    assert wrn28.name == "sgn_wrn_28_10"
    assert 36.4e6 < wrn28.count_params() < 36.6e6
    assert _trainable_count(wrn28) == 36_479_194
    del wrn28
    wrn34 = keras_sgn.models.sgn_wrn_34_10()
    assert wrn34.name == "sgn_wrn_34_10"
    assert 46.1e6 < wrn34.count_params() < 46.3e6
    assert _trainable_count(wrn34) == 46_160_474
    assert [s.name for s in _sites(wrn34)] == [
        "site_input", "site_stage1", "site_stage2", "site_stage3"
    ]


@pytest.mark.parametrize("depth, blocks", [(10, 1), (16, 2), (22, 3)])
def test_wide_resnet_structure(depth, blocks):
    model = keras_sgn.models.sgn_wide_resnet(depth=depth, width=2, input_shape=(8, 8, 3))
    assert model.name == f"sgn_wrn_{depth}_2"
    for stage in (1, 2, 3):
        names = [
            l.name for l in model.layers
            if l.name.startswith(f"stage{stage}_") and l.name.endswith("_conv1")
        ]
        assert len(names) == blocks
    widths = [model.get_layer(f"stage{s}_block1_conv1").filters for s in (1, 2, 3)]
    assert widths == [32, 64, 128]
    # Every group starts with a channel change here, so each has a projection.
    assert len([l for l in model.layers if l.name.endswith("_shortcut_conv")]) == 3
    assert not [l for l in model.layers if isinstance(l, keras.layers.Dropout)]
    dropped = keras_sgn.models.sgn_wide_resnet(depth=depth, width=2, dropout=0.3,
                                               input_shape=(8, 8, 3))
    drops = [l for l in dropped.layers if isinstance(l, keras.layers.Dropout)]
    assert len(drops) == 3 * blocks and all(d.rate == 0.3 for d in drops)
    assert dropped.count_params() == model.count_params()


def test_resnet18_structure():
    model = keras_sgn.models.sgn_resnet18(input_shape=(16, 16, 3))
    assert not [l for l in model.layers if isinstance(l, keras.layers.MaxPooling2D)]
    assert model.get_layer("stem_conv").kernel_size == (3, 3)
    assert model.get_layer("stem_conv").filters == 64
    shortcuts = sorted(l.name for l in model.layers if l.name.endswith("_shortcut_conv"))
    assert shortcuts == [f"stage{s}_block1_shortcut_conv" for s in (2, 3, 4)]
    assert [model.get_layer(f"stage{s}_block2_conv2").filters for s in (1, 2, 3, 4)] == [
        64, 128, 256, 512
    ]
    assert [model.get_layer(f"site_stage{s}").output.shape[1] for s in (1, 2, 3, 4)] == [
        16, 8, 4, 2
    ]


def test_all_batchnorm_momentum_is_0_9():
    for model in (
        keras_sgn.models.sgn_resnet18(input_shape=(8, 8, 3)),
        keras_sgn.models.sgn_preact_resnet18(input_shape=(8, 8, 3)),
        keras_sgn.models.sgn_wide_resnet(depth=10, width=1, input_shape=(8, 8, 3)),
        keras_sgn.models.sgn_small_cnn(),
    ):
        bns = [l for l in model.layers if isinstance(l, keras.layers.BatchNormalization)]
        assert bns, model.name
        assert all(bn.momentum == 0.9 for bn in bns), model.name


# --------------------------------------------------------------------------
# Sites
# --------------------------------------------------------------------------


def test_default_sites_and_order():
    model = keras_sgn.models.sgn_resnet18(input_shape=(8, 8, 3), beta=0.25)
    assert _site_summary(model) == [
        ("site_input", None),
        ("site_stage1", 0.25),
        ("site_stage2", 0.25),
        ("site_stage3", 0.25),
        ("site_stage4", 0.25),
    ]
    assert _sites(model)[0].input_site
    assert not any(s.input_site for s in _sites(model)[1:])
    assert all(s.normalization == "l2_relative" for s in _sites(model)[1:])
    # The input site sits on the raw image; the normalisation comes right after.
    site_input = model.get_layer("site_input")
    assert site_input.input is model.inputs[0]
    assert model.get_layer("input_normalization").input is site_input.output


def test_subset_sites_and_beta_dict():
    model = keras_sgn.models.sgn_small_cnn(
        sites=["stage3", "input", "site_stage1"],
        beta={"stage3": 0.5},
        normalization="sign",
    )
    assert _site_summary(model) == [
        ("site_input", None),
        ("site_stage1", keras_sgn.models.DEFAULT_BETA),
        ("site_stage3", 0.5),
    ]
    assert [s.normalization for s in _sites(model)[1:]] == ["sign", "sign"]
    same = keras_sgn.models.sgn_small_cnn(sites="stage1, stage3,input", beta={"stage3": 0.5})
    assert _site_summary(same) == _site_summary(model)


def test_hidden_only_sites_keep_normalisation_on_input():
    model = keras_sgn.models.sgn_preact_resnet18(input_shape=(8, 8, 3), sites=["stage4"])
    assert _site_summary(model) == [("site_stage4", keras_sgn.models.DEFAULT_BETA)]
    assert model.get_layer("input_normalization").input is model.inputs[0]


def test_plain_resnet18_has_no_sites_and_same_params():
    default = keras_sgn.models.sgn_resnet18(input_shape=(8, 8, 3))
    model = keras_sgn.models.sgn_resnet18(input_shape=(8, 8, 3), sites=())
    assert _sites(model) == []
    assert model.count_params() == default.count_params()
    assert len(model.layers) == len(default.layers) - 5


@pytest.mark.parametrize("plain", [(), None, [], "none"])
def test_plain_small_cnn_spellings(plain):
    default = keras_sgn.models.sgn_small_cnn()
    model = keras_sgn.models.sgn_small_cnn(sites=plain)
    assert _sites(model) == []
    assert model.count_params() == default.count_params()
    assert len(model.layers) == len(default.layers) - 4


def test_sites_are_identity_and_normalisation_is_in_pixel_units():
    keras.utils.set_random_seed(0)
    sgn = keras_sgn.models.sgn_small_cnn(mean=(0.2,), std=(0.4,))
    plain = keras_sgn.models.sgn_small_cnn(mean=(0.2,), std=(0.4,), sites=())
    plain.set_weights(sgn.get_weights())
    x = np.random.default_rng(0).random((3, 8, 8, 1), dtype=np.float32)
    np.testing.assert_allclose(sgn(x), plain(x), rtol=1e-6, atol=1e-6)
    normalised = sgn.get_layer("input_normalization")(x)
    np.testing.assert_allclose(normalised, (x - 0.2) / 0.4, rtol=1e-5, atol=1e-5)


def test_one_backward_pass_gives_gradient_at_every_site():
    model = keras_sgn.models.sgn_small_cnn()
    x = tf.constant(np.random.default_rng(1).random((2, 8, 8, 1), dtype=np.float32))
    y = tf.constant([3, 7])
    with tf.GradientTape() as tape:
        tape.watch(x)
        with keras_sgn.layers.record_sites() as activations:
            logits = model(x, training=False)
        loss = tf.reduce_mean(
            keras.losses.sparse_categorical_crossentropy(y, logits, from_logits=True)
        )
    assert list(activations) == ["site_stage1", "site_stage2", "site_stage3"]
    grads = tape.gradient(loss, [x] + list(activations.values()))
    assert all(g is not None for g in grads)
    assert [tuple(g.shape) for g in grads] == [
        (2, 8, 8, 1), (2, 8, 8, 32), (2, 4, 4, 64), (2, 128)
    ]


# --------------------------------------------------------------------------
# Small CNN
# --------------------------------------------------------------------------


@pytest.mark.parametrize("shape, flat", [((8, 8, 1), 4 * 4 * 64), ((28, 28, 1), 7 * 7 * 64)])
def test_small_cnn_logits(shape, flat):
    model = keras_sgn.models.get("sgn_small_cnn", input_shape=shape)
    x = np.random.default_rng(0).random((4,) + shape, dtype=np.float32)
    logits = model(x, training=False)
    assert tuple(logits.shape) == (4, 10)
    assert logits.dtype == tf.float32
    assert model.get_layer("stage3_flatten").output.shape[-1] == flat
    has_pool1 = any(l.name == "stage1_pool" for l in model.layers)
    assert has_pool1 == (shape[0] >= 16)
    # Logits, not probabilities.
    assert not np.allclose(np.sum(logits, axis=-1), 1.0)


def test_small_cnn_without_batch_norm():
    model = keras_sgn.models.sgn_small_cnn(batch_norm=False, width=8)
    assert not [l for l in model.layers if isinstance(l, keras.layers.BatchNormalization)]
    assert model.get_layer("stage1_conv").use_bias
    assert model.non_trainable_weights == []
    assert model.get_layer("stage3_dense").units == 32


def test_mixed_precision_keeps_float32_logits():
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = keras_sgn.models.sgn_small_cnn(input_shape=(28, 28, 1))
        logits = model(np.random.default_rng(0).random((2, 28, 28, 1), dtype=np.float32))
    finally:
        keras.mixed_precision.set_global_policy(previous)
    assert model.get_layer("stage1_conv").compute_dtype == "float16"
    assert logits.dtype == tf.float32


# --------------------------------------------------------------------------
# Serialisation
# --------------------------------------------------------------------------

_ROUND_TRIP_CASES = [
    ("sgn_small_cnn", dict(beta={"stage2": 0.3}, feedback_at_inference=True), (8, 8, 1)),
    ("sgn_small_cnn", dict(input_shape=(28, 28, 1), batch_norm=False, sites=["stage2"]),
     (28, 28, 1)),
    ("sgn_resnet18", {}, (32, 32, 3)),
    ("sgn_preact_resnet18", dict(input_shape=(16, 16, 3)), (16, 16, 3)),
    ("sgn_wide_resnet", dict(depth=10, width=1, dropout=0.2, normalization="raw"),
     (32, 32, 3)),
]


def _ids(cases):
    return [f"{name}-{i}" for i, (name, _, _) in enumerate(cases)]


@pytest.mark.parametrize("name, kwargs, shape", _ROUND_TRIP_CASES, ids=_ids(_ROUND_TRIP_CASES))
def test_get_config_from_config_round_trip(name, kwargs, shape):
    model = keras_sgn.models.get(name, **kwargs)
    x = np.random.default_rng(0).random((2,) + shape, dtype=np.float32)
    expected = model(x, training=False)
    clone = SGNModel.from_config(model.get_config())
    assert type(clone) is SGNModel
    assert clone.name == model.name
    assert clone.feedback_at_inference == model.feedback_at_inference
    assert _site_summary(clone) == _site_summary(model)
    assert clone.count_params() == model.count_params()
    clone.set_weights(model.get_weights())
    np.testing.assert_allclose(clone(x, training=False), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name, kwargs, shape", _ROUND_TRIP_CASES, ids=_ids(_ROUND_TRIP_CASES))
def test_keras_save_load_round_trip(name, kwargs, shape, tmp_path):
    model = keras_sgn.models.get(name, **kwargs)
    x = np.random.default_rng(0).random((2,) + shape, dtype=np.float32)
    expected = model(x, training=False)
    path = tmp_path / f"{name}.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert type(loaded) is SGNModel
    assert loaded.feedback_at_inference == model.feedback_at_inference
    assert _site_summary(loaded) == _site_summary(model)
    norm = loaded.get_layer("input_normalization").get_config()
    assert np.allclose(norm["mean"], model.get_layer("input_normalization").get_config()["mean"])
    np.testing.assert_allclose(loaded(x, training=False), expected, rtol=1e-5, atol=1e-5)


def test_wrn_shortcuts_round_trip_config():
    model = keras_sgn.models.get("sgn_wrn_28_10", num_classes=100)
    clone = SGNModel.from_config(model.get_config())
    assert clone.name == "sgn_wrn_28_10"
    assert clone.count_params() == model.count_params()
    assert clone.output_shape == (None, 100)


def test_wrn_shortcuts_delegate_to_generic_builder(monkeypatch):
    from keras_sgn.models import backbones

    calls = []
    monkeypatch.setattr(backbones, "sgn_wide_resnet", lambda **kw: calls.append(kw))
    keras_sgn.models.get("sgn_wrn_34_10", num_classes=100, dropout=0.3)
    keras_sgn.models.get("sgn_wrn_28_10", sites=["stage2"], beta=0.2)
    assert [(c["depth"], c["width"], c["name"]) for c in calls] == [
        (34, 10, "sgn_wrn_34_10"), (28, 10, "sgn_wrn_28_10")
    ]
    assert calls[0]["num_classes"] == 100 and calls[0]["dropout"] == 0.3
    assert calls[1]["sites"] == ["stage2"] and calls[1]["beta"] == 0.2


# --------------------------------------------------------------------------
# Registry and errors
# --------------------------------------------------------------------------


def test_list_models_and_get():
    assert keras_sgn.models.list_models() == sorted([
        "sgn_preact_resnet18",
        "sgn_resnet18",
        "sgn_small_cnn",
        "sgn_wide_resnet",
        "sgn_wrn_28_10",
        "sgn_wrn_34_10",
    ])
    model = keras_sgn.models.get("sgn_small_cnn", name="digits_net", num_classes=3)
    assert isinstance(model, SGNModel)
    assert model.name == "digits_net"
    assert model.output_shape == (None, 3)


def test_unknown_model_lists_close_match():
    with pytest.raises(ValueError) as info:
        keras_sgn.models.get("sgn_resnet19")
    message = str(info.value)
    assert "model" in message
    assert "Did you mean 'sgn_resnet18'" in message
    assert "sgn_wrn_34_10" in message  # all valid names are listed
    with pytest.raises(ValueError, match="Did you mean 'sgn_small_cnn'"):
        keras_sgn.models.get("sgn-small-cnn")


def test_bad_site_name():
    with pytest.raises(ValueError, match=r"sites.*'stage5'.*stage4"):
        keras_sgn.models.sgn_resnet18(input_shape=(8, 8, 3), sites=["input", "stage5"])
    with pytest.raises(ValueError, match="sites"):
        keras_sgn.models.sgn_small_cnn(sites="stage4")


def test_bad_beta():
    with pytest.raises(ValueError, match=r"beta.*'stage3'.*not selected"):
        keras_sgn.models.sgn_small_cnn(sites=["stage1"], beta={"stage3": 0.2})
    with pytest.raises(ValueError, match=r"beta.*input"):
        keras_sgn.models.sgn_small_cnn(beta={"input": 0.2})
    with pytest.raises(ValueError, match="beta"):
        keras_sgn.models.sgn_small_cnn(beta=-0.1)
    with pytest.raises(ValueError, match="normalization"):
        keras_sgn.models.sgn_small_cnn(normalization="l2")


@pytest.mark.parametrize("depth", [33, 4, 12, "34"])
def test_bad_depth(depth):
    with pytest.raises(ValueError, match="depth"):
        keras_sgn.models.sgn_wide_resnet(depth=depth, width=1)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(num_classes=1), "num_classes"),
        (dict(num_classes=2.5), "num_classes"),
        (dict(input_shape=(8, 8)), "input_shape"),
        (dict(input_shape=(1, 8, 1)), "height and width"),
        (dict(mean=(0.1, 0.2)), "mean"),
        (dict(std=(0.0,)), "std"),
        (dict(width=0), "width"),
        (dict(batch_norm="yes"), "batch_norm"),
        (dict(name=""), "name"),
    ],
)
def test_argument_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        keras_sgn.models.sgn_small_cnn(**kwargs)


def test_wide_resnet_argument_validation():
    with pytest.raises(ValueError, match="dropout"):
        keras_sgn.models.sgn_wide_resnet(depth=10, width=1, dropout=1.0)
    with pytest.raises(ValueError, match="width"):
        keras_sgn.models.sgn_wide_resnet(depth=10, width=0)
    with pytest.raises(ValueError, match="num_classes"):
        keras_sgn.models.sgn_resnet18(num_classes=0)
