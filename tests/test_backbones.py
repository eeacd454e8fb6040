"""Tests of the backbone builders (ResNets, WRNs, the small CNN): each model test
is its init kwargs plus the shared harness of tests/testing.py, then what is
particular to that model."""

import functools
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

import keras_sgn.layers  # noqa: E402
import keras_sgn.models  # noqa: E402
from keras_sgn.models import SGNModel, resnet  # noqa: E402
from tests.testing import (  # noqa: E402
    layers_of_type,
    random_images,
    run_backbone_test,
    run_bad_argument_test,
    run_serialization_test,
    site_summary,
    trainable_count,
)

M = keras_sgn.models

# --------------------------------------------------------------------------
# Parameter counts
# --------------------------------------------------------------------------


def test_resnet18_parameter_count():
    model = run_backbone_test(M.sgn_resnet18, {}, (32, 32, 3), (2, 10),
                              expected_params=11_173_962)  # the PyTorch reference CIFAR ResNet-18
    # Keras count_params also counts BN moving mean/variance (non-trainable).
    assert 11.1e6 < model.count_params() < 11.3e6
    assert model.output_shape == (None, 10)


def test_preact_resnet18_parameter_count():
    model = run_backbone_test(M.sgn_preact_resnet18, {}, (32, 32, 3), (2, 10),
                              expected_params=11_172_170)  # Wong et al. 2020, final BN included
    assert 11.1e6 < model.count_params() < 11.3e6


def test_wrn_parameter_counts_build_only():
    wrn28 = M.sgn_wrn_28_10()
    assert wrn28.name == "sgn_wrn_28_10"
    assert 36.4e6 < wrn28.count_params() < 36.6e6
    assert trainable_count(wrn28) == 36_479_194
    del wrn28
    wrn34 = M.sgn_wrn_34_10()
    assert wrn34.name == "sgn_wrn_34_10"
    assert 46.1e6 < wrn34.count_params() < 46.3e6
    assert trainable_count(wrn34) == 46_160_474
    assert [name for name, _ in site_summary(wrn34)] == [
        "site_input", "site_stage1", "site_stage2", "site_stage3"
    ]


def test_presets_state_their_trainable_parameters():
    for name in ("sgn_resnet18", "sgn_preact_resnet18"):
        model = M.get(name, input_shape=(8, 8, 3))
        assert trainable_count(model) == M.presets.PRESETS[name]["trainable_parameters"]


@pytest.mark.parametrize("depth, blocks", [(10, 1), (16, 2), (22, 3)])
def test_wide_resnet_structure(depth, blocks):
    model = run_backbone_test(M.sgn_wide_resnet, dict(depth=depth, width=2, input_shape=(8, 8, 3)),
                              (8, 8, 3), (2, 10))
    assert model.name == f"sgn_wrn_{depth}_2"
    for stage in (1, 2, 3):
        names = [
            layer.name for layer in model.layers
            if layer.name.startswith(f"stage{stage}_") and layer.name.endswith("_conv1")
        ]
        assert len(names) == blocks
    widths = [model.get_layer(f"stage{s}_block1_conv1").filters for s in (1, 2, 3)]
    assert widths == [32, 64, 128]
    # Every group starts with a channel change here, so each has a projection.
    assert len([layer for layer in model.layers if layer.name.endswith("_shortcut_conv")]) == 3
    assert not layers_of_type(model, keras.layers.Dropout)
    dropped = M.sgn_wide_resnet(depth=depth, width=2, dropout=0.3, input_shape=(8, 8, 3))
    drops = layers_of_type(dropped, keras.layers.Dropout)
    assert len(drops) == 3 * blocks and all(d.rate == 0.3 for d in drops)
    assert dropped.count_params() == model.count_params()


def test_resnet18_structure():
    model = M.sgn_resnet18(input_shape=(16, 16, 3))
    assert not layers_of_type(model, keras.layers.MaxPooling2D)
    assert model.get_layer("stem_conv").kernel_size == (3, 3)
    assert model.get_layer("stem_conv").filters == 64
    shortcuts = sorted(name for name in (layer.name for layer in model.layers)
                       if name.endswith("_shortcut_conv"))
    assert shortcuts == [f"stage{s}_block1_shortcut_conv" for s in (2, 3, 4)]
    assert [model.get_layer(f"stage{s}_block2_conv2").filters for s in (1, 2, 3, 4)] == [
        64, 128, 256, 512
    ]
    assert [model.get_layer(f"site_stage{s}").output.shape[1] for s in (1, 2, 3, 4)] == [
        16, 8, 4, 2
    ]


@pytest.mark.parametrize("builder, init_kwargs, shape", [
    (M.sgn_resnet18, dict(input_shape=(8, 8, 3)), (8, 8, 3)),
    (M.sgn_preact_resnet18, dict(input_shape=(8, 8, 3)), (8, 8, 3)),
    (M.sgn_wide_resnet, dict(depth=10, width=1, input_shape=(8, 8, 3)), (8, 8, 3)),
    (M.sgn_small_cnn, {}, (8, 8, 1)),
], ids=["resnet18", "preact_resnet18", "wrn_10_1", "small_cnn"])
def test_all_batchnorm_momentum_is_0_9(builder, init_kwargs, shape):
    model = run_backbone_test(builder, init_kwargs, shape, (2, 10))
    bns = layers_of_type(model, keras.layers.BatchNormalization)
    assert bns, model.name
    assert all(bn.momentum == 0.9 for bn in bns), model.name


# --------------------------------------------------------------------------
# Sites
# --------------------------------------------------------------------------


def test_default_sites_and_order():
    model = run_backbone_test(M.sgn_resnet18, dict(input_shape=(8, 8, 3), beta=0.25), (8, 8, 3),
                              (2, 10))
    assert site_summary(model) == [
        ("site_input", None),
        ("site_stage1", 0.25),
        ("site_stage2", 0.25),
        ("site_stage3", 0.25),
        ("site_stage4", 0.25),
    ]
    sites = keras_sgn.layers.sites_of(model)
    assert sites[0].input_site
    assert not any(s.input_site for s in sites[1:])
    assert all(s.normalization == "l2_relative" for s in sites[1:])
    # The input site sits on the raw image; the normalisation comes right after.
    site_input = model.get_layer("site_input")
    assert site_input.input is model.inputs[0]
    assert model.get_layer("input_normalization").input is site_input.output


def test_subset_sites_and_beta_dict():
    model = M.sgn_small_cnn(
        sites=["stage3", "input", "site_stage1"],
        beta={"stage3": 0.5},
        normalization="sign",
    )
    assert site_summary(model) == [
        ("site_input", None),
        ("site_stage1", M.sites.DEFAULT_BETA),
        ("site_stage3", 0.5),
    ]
    assert [s.normalization for s in keras_sgn.layers.hidden_sites_of(model)] == ["sign", "sign"]
    same = M.sgn_small_cnn(sites="stage1, stage3,input", beta={"stage3": 0.5})
    assert site_summary(same) == site_summary(model)


def test_hidden_only_sites_keep_normalisation_on_input():
    model = run_backbone_test(M.sgn_preact_resnet18, dict(input_shape=(8, 8, 3), sites=["stage4"]),
                              (8, 8, 3), (2, 10))
    assert site_summary(model) == [("site_stage4", M.sites.DEFAULT_BETA)]
    assert model.get_layer("input_normalization").input is model.inputs[0]


def test_plain_resnet18_has_no_sites_and_same_params():
    # run_backbone_test builds the same network with sites=() and checks it has no
    # site, the same parameters, one layer fewer per site and the same logits.
    default = run_backbone_test(M.sgn_resnet18, dict(input_shape=(8, 8, 3)), (8, 8, 3), (2, 10))
    assert len(site_summary(default)) == 5
    model = M.sgn_resnet18(input_shape=(8, 8, 3), sites=())
    assert site_summary(model) == []
    assert len(model.layers) == len(default.layers) - 5


@pytest.mark.parametrize("plain", [(), None, [], "none"])
def test_plain_small_cnn_spellings(plain):
    default = M.sgn_small_cnn()
    model = M.sgn_small_cnn(sites=plain)
    assert site_summary(model) == []
    assert model.count_params() == default.count_params()
    assert len(model.layers) == len(default.layers) - 4


def test_sites_are_identity_and_normalisation_is_in_pixel_units():
    keras.utils.set_random_seed(0)
    sgn = M.sgn_small_cnn(mean=(0.2,), std=(0.4,))
    plain = M.sgn_small_cnn(mean=(0.2,), std=(0.4,), sites=())
    plain.set_weights(sgn.get_weights())
    x = random_images((8, 8, 1), batch_size=3)
    np.testing.assert_allclose(sgn(x), plain(x), rtol=1e-6, atol=1e-6)
    normalised = sgn.get_layer("input_normalization")(x)
    np.testing.assert_allclose(normalised, (x - 0.2) / 0.4, rtol=1e-5, atol=1e-5)


def test_one_backward_pass_gives_gradient_at_every_site():
    model = M.sgn_small_cnn()
    x = tf.constant(random_images((8, 8, 1), seed=1))
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
    model = run_backbone_test(functools.partial(M.get, "sgn_small_cnn"),
                              dict(input_shape=shape), shape, (2, 10))
    assert model.get_layer("stage3_flatten").output.shape[-1] == flat
    has_pool1 = any(layer.name == "stage1_pool" for layer in model.layers)
    assert has_pool1 == (shape[0] >= 16)


def test_small_cnn_without_batch_norm():
    model = run_backbone_test(M.sgn_small_cnn, dict(batch_norm=False, width=8), (8, 8, 1), (2, 10))
    assert not layers_of_type(model, keras.layers.BatchNormalization)
    assert model.get_layer("stage1_conv").use_bias
    assert model.non_trainable_weights == []
    assert model.get_layer("stage3_dense").units == 32


def test_mixed_precision_keeps_float32_logits():
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = M.sgn_small_cnn(input_shape=(28, 28, 1))
        logits = model(random_images((28, 28, 1)))
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


@pytest.mark.parametrize("name, kwargs, shape", _ROUND_TRIP_CASES,
                         ids=[f"{name}-{i}" for i, (name, _, _) in enumerate(_ROUND_TRIP_CASES)])
def test_serialization_round_trips(name, kwargs, shape):
    # get_config/from_config and .keras save/load: same type, same config (name,
    # sites, betas, normalisation constants...), same parameters, identical logits.
    builder = functools.partial(M.get, name)
    original = builder(**kwargs)
    loaded = run_serialization_test(builder, kwargs, random_images(shape))
    assert type(loaded) is SGNModel
    assert loaded.name == original.name
    assert loaded.feedback_at_inference == original.feedback_at_inference
    assert site_summary(loaded) == site_summary(original)
    norm = loaded.get_layer("input_normalization").get_config()
    assert np.allclose(norm["mean"], original.get_layer("input_normalization").get_config()["mean"])


def test_wrn_shortcuts_round_trip_config():
    model = M.get("sgn_wrn_28_10", num_classes=100)
    clone = SGNModel.from_config(model.get_config())
    assert clone.name == "sgn_wrn_28_10"
    assert clone.count_params() == model.count_params()
    assert clone.output_shape == (None, 100)


def test_wrn_shortcuts_delegate_to_generic_builder(monkeypatch):
    calls = []
    monkeypatch.setattr(resnet, "sgn_resnet", lambda **kw: calls.append(kw))
    M.get("sgn_wrn_34_10", num_classes=100, dropout=0.3)
    M.get("sgn_wrn_28_10", sites=["stage2"], beta=0.2)
    architectures = [{k: c[k] for k in resnet.wide_resnet_architecture(10, 1)} for c in calls]
    assert architectures == [resnet.wide_resnet_architecture(34, 10),
                             resnet.wide_resnet_architecture(28, 10)]
    assert [c["name"] for c in calls] == ["sgn_wrn_34_10", "sgn_wrn_28_10"]
    assert calls[0]["num_classes"] == 100 and calls[0]["dropout"] == 0.3
    assert calls[1]["sites"] == ["stage2"] and calls[1]["beta"] == 0.2


# --------------------------------------------------------------------------
# Registry and errors
# --------------------------------------------------------------------------


def test_list_models_and_get():
    assert M.list_models() == sorted([
        "sgn_lenet_small",
        "sgn_mnist_cnn",
        "sgn_mnist_cnn_wide",
        "sgn_preact_resnet18",
        "sgn_resnet18",
        "sgn_small_cnn",
        "sgn_wide_resnet",
        "sgn_wrn_28_10",
        "sgn_wrn_34_10",
    ])
    model = M.get("sgn_small_cnn", name="digits_net", num_classes=3)
    assert isinstance(model, SGNModel)
    assert model.name == "digits_net"
    assert model.output_shape == (None, 3)


def test_unknown_model_lists_close_match():
    message = run_bad_argument_test(functools.partial(M.get, "sgn_resnet19"), {}, "model",
                                    match="Did you mean 'sgn_resnet18'")
    assert "sgn_wrn_34_10" in message  # all valid names are listed
    run_bad_argument_test(functools.partial(M.get, "sgn-small-cnn"), {}, "model",
                          match="Did you mean 'sgn_small_cnn'")


def test_bad_site_name():
    run_bad_argument_test(M.sgn_resnet18, dict(input_shape=(8, 8, 3), sites=["input", "stage5"]),
                          "sites", match=r"sites.*'stage5'.*stage4")
    run_bad_argument_test(M.sgn_small_cnn, dict(sites="stage4"), "sites")


@pytest.mark.parametrize("kwargs, match", [
    (dict(sites=["stage1"], beta={"stage3": 0.2}), r"beta.*'stage3'.*not selected"),
    (dict(beta={"input": 0.2}), r"beta.*input"),
    (dict(beta=-0.1), r"beta.*>= 0"),
])
def test_bad_beta(kwargs, match):
    run_bad_argument_test(M.sgn_small_cnn, kwargs, "beta", match=match)


@pytest.mark.parametrize("depth", [33, 4, 12, "34"])
def test_bad_depth(depth):
    run_bad_argument_test(M.sgn_wide_resnet, dict(depth=depth, width=1), "depth")


@pytest.mark.parametrize(
    "kwargs, param, match",
    [
        (dict(num_classes=1), "num_classes", None),
        (dict(num_classes=2.5), "num_classes", None),
        (dict(input_shape=(8, 8)), "input_shape", None),
        (dict(input_shape=(1, 8, 1)), "input_shape", "height and width"),
        (dict(mean=(0.1, 0.2)), "mean", None),
        (dict(std=(0.0,)), "std", None),
        (dict(width=0), "width", None),
        (dict(batch_norm="yes"), "batch_norm", None),
        (dict(name=""), "name", None),
        (dict(normalization="l2"), "normalization", None),
    ],
)
def test_argument_validation(kwargs, param, match):
    run_bad_argument_test(M.sgn_small_cnn, kwargs, param, match=match)


@pytest.mark.parametrize("builder, kwargs, param", [
    (M.sgn_wide_resnet, dict(depth=10, width=1, dropout=1.0), "dropout"),
    (M.sgn_wide_resnet, dict(depth=10, width=0), "width"),
    (M.sgn_resnet18, dict(num_classes=0), "num_classes"),
])
def test_wide_resnet_argument_validation(builder, kwargs, param):
    run_bad_argument_test(builder, kwargs, param)
