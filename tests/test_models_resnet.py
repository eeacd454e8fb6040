"""Tests of the one residual builder `sgn_resnet`, its blocks and the presets as data."""

import keras
import pytest

import keras_sgn.models as M
from keras_sgn.models import blocks, presets, resnet
from tests.testing import (
    layers_of_type,
    random_images,
    run_backbone_test,
    run_bad_argument_test,
    run_serialization_test,
    site_summary,
)

TINY = dict(stage_filters=(4, 8), blocks_per_stage=(1, 2), input_shape=(8, 8, 3))


@pytest.mark.parametrize("block_type", ["basic", "preact"])
def test_custom_resnet(block_type):
    model = run_backbone_test(M.sgn_resnet, dict(TINY, block_type=block_type, num_classes=3),
                              (8, 8, 3), (2, 3))
    assert model.name == "sgn_resnet"
    assert [name for name, _ in site_summary(model)] == ["site_input", "site_stage1",
                                                        "site_stage2"]
    # Default strides 1 then 2; the stem has stage_filters[0] filters.
    assert model.get_layer("stem_conv").filters == 4
    assert model.get_layer("site_stage1").output.shape[1:] == (8, 8, 4)
    assert model.get_layer("site_stage2").output.shape[1:] == (4, 4, 8)
    assert len([n for n in (layer.name for layer in model.layers) if n.endswith("_conv1")]) == 3
    names = {layer.name for layer in model.layers}
    # Post-activation: BN-ReLU in the stem; pre-activation: BN-ReLU at the end.
    assert ("stem_bn" in names) == (block_type == "basic")
    assert ("final_bn" in names) == (block_type == "preact")


def test_widen_factor_stem_and_strides():
    model = M.sgn_resnet((2, 4), (1, 1), stage_strides=(2, 1), stem_filters=5, widen_factor=3,
                         input_shape=(8, 8, 3), sites=())
    assert model.get_layer("stem_conv").filters == 5  # the stem is not widened
    assert model.get_layer("stage1_block1_conv2").filters == 6
    assert model.get_layer("stage2_block1_conv2").output.shape[1:] == (4, 4, 12)


def test_basic_block_dropout():
    model = M.sgn_resnet(**TINY, dropout=0.25)
    drops = layers_of_type(model, keras.layers.Dropout)
    assert [d.name for d in drops] == ["stage1_block1_dropout", "stage2_block1_dropout",
                                       "stage2_block2_dropout"]
    assert all(d.rate == 0.25 for d in drops)
    assert model.count_params() == M.sgn_resnet(**TINY).count_params()


def test_custom_resnet_round_trip():
    loaded = run_serialization_test(M.sgn_resnet, dict(TINY, block_type="preact", beta=0.2),
                                    random_images((8, 8, 3)))
    assert site_summary(loaded)[1:] == [("site_stage1", 0.2), ("site_stage2", 0.2)]


def test_presets_are_data_for_the_one_builder():
    assert set(presets.BUILDERS) == set(presets.PRESETS)
    for name, preset in presets.PRESETS.items():
        assert preset["architecture"]["block_type"] in blocks.BLOCK_TYPES
        assert name in M.list_models()
        assert presets.BUILDERS[name].__name__ == name
        assert preset["description"].split()[0] in presets.BUILDERS[name].__doc__
    # The WRN presets are the WRN family at their depth and width.
    for depth in (28, 34):
        architecture = presets.PRESETS[f"sgn_wrn_{depth}_10"]["architecture"]
        assert architecture == resnet.wide_resnet_architecture(depth, 10)


def test_presets_pass_the_same_network_as_sgn_resnet():
    kwargs = dict(input_shape=(8, 8, 3), num_classes=4, sites=["stage2"], beta=0.3)
    preset = M.sgn_preact_resnet18(**kwargs)
    direct = M.sgn_resnet(**presets.PRESETS["sgn_preact_resnet18"]["architecture"],
                          name="sgn_preact_resnet18", **kwargs)
    assert preset.get_config() == direct.get_config()


def test_architecture_is_fixed_in_a_preset():
    with pytest.raises(TypeError, match="block_type"):
        M.sgn_resnet18(block_type="preact")


def test_cifar_statistics_come_from_the_data_catalogue():
    import keras_sgn.data

    assert M.resnet.CIFAR10_MEAN == keras_sgn.data.info("cifar10").mean
    assert M.resnet.CIFAR10_STD == keras_sgn.data.info("cifar10").std
    normalization = M.sgn_resnet18(input_shape=(8, 8, 3)).get_layer("input_normalization")
    assert normalization.get_config()["mean"] == list(M.resnet.CIFAR10_MEAN)


@pytest.mark.parametrize("kwargs, param", [
    (dict(TINY, stage_filters=(4, 0)), "stage_filters"),
    (dict(TINY, blocks_per_stage=3), "blocks_per_stage"),
    (dict(TINY, stage_strides=(1, 2, 2)), "stage_strides"),
    (dict(TINY, block_type="bottleneck"), "block_type"),
    (dict(TINY, widen_factor=0), "widen_factor"),
    (dict(TINY, stem_filters=-1), "stem_filters"),
    (dict(TINY, dropout=-0.1), "dropout"),
    (dict(TINY, mean=(0.1, 0.2)), "mean"),
])
def test_bad_arguments(kwargs, param):
    run_bad_argument_test(M.sgn_resnet, kwargs, param)
