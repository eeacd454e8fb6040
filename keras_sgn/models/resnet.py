"""The one residual-network builder with self-gradient sites, and the Wide
ResNet family on top of it (docs/guide.md, "Models").

`sgn_resnet` is parameterised by the stage widths, blocks per stage, strides,
block type and widening factor; the named networks (ResNet-18, PreAct
ResNet-18, WRN-28-10, WRN-34-10) are data in `keras_sgn.models.presets`.

Layout: `image -> site_input -> input_normalization -> stem -> stage1 ->
site_stage1 -> ... -> stageN -> site_stageN -> head -> logits`. Each site sits
on the residual stream at the end of its stage; the final BatchNorm/ReLU of a
pre-activation network belongs to the head.

Reference:
    He, Zhang, Ren, Sun. "Deep Residual Learning for Image Recognition", CVPR
    2016, and "Identity Mappings in Deep Residual Networks", ECCV 2016.
    Zagoruyko, Komodakis. "Wide Residual Networks", BMVC 2016.
    Wong, Rice, Kolter. "Fast is better than free: Revisiting adversarial
    training", ICLR 2020 (the PreAct ResNet-18 used for Fast-AT).
    Aboutalebi, Shafiee, Wong. "Self-Gradient Networks", arXiv 2011.09364
    (abstract only; the feedback mechanism is this project's reconstruction).
"""

import numbers

from keras import layers

from keras_sgn import data
from keras_sgn.errors import ArgumentError
from keras_sgn.models import arguments
from keras_sgn.models.blocks import BLOCK_TYPES, batch_norm, conv2d, relu
from keras_sgn.models.network import Network
from keras_sgn.models.sites import DEFAULT_BETA

# The one source of the CIFAR-10 statistics is the dataset catalogue.
CIFAR10_MEAN = data.info("cifar10").mean
CIFAR10_STD = data.info("cifar10").std


def _check_stages(stage_filters, blocks_per_stage, stage_strides, stem_filters, widen_factor):
    """Checked `(filters, blocks, strides, stem_filters)`; filters already widened."""
    filters = arguments.check_int_sequence(stage_filters, "stage_filters")
    blocks = arguments.check_int_sequence(blocks_per_stage, "blocks_per_stage")
    if stage_strides is None:
        stage_strides = (1,) + (2,) * (len(filters) - 1)
    strides = arguments.check_int_sequence(stage_strides, "stage_strides")
    if not len(filters) == len(blocks) == len(strides):
        raise ArgumentError(
            "stage_filters, blocks_per_stage and stage_strides need one value per stage. "
            f"Received: {len(filters)}, {len(blocks)} and {len(strides)} values."
        )
    widen_factor = arguments.check_int(widen_factor, "widen_factor")
    stem = filters[0] if stem_filters is None else arguments.check_int(stem_filters,
                                                                       "stem_filters")
    return tuple(f * widen_factor for f in filters), blocks, strides, stem


def sgn_resnet(stage_filters, blocks_per_stage, stage_strides=None, block_type="basic",
               stem_filters=None, widen_factor=1, dropout=0.0, input_shape=(32, 32, 3),
               num_classes=10, sites="default", beta=DEFAULT_BETA, normalization="l2_relative",
               mean=CIFAR10_MEAN, std=CIFAR10_STD, feedback_at_inference=False,
               name="sgn_resnet"):
    """A residual network with self-gradient sites after every stage; returns an
    `SGNModel` from images in [0, 1] to float32 logits.

    3x3 stem convolution (no max-pool), stages of residual blocks (the first
    block of a stage carries its stride and a projection shortcut when the
    shape changes), global average pooling, logits. Sites: `input`, `stage1`
    ... `stageN`.

    Args:
        stage_filters: width of each stage, e.g. `(64, 128, 256, 512)`.
        blocks_per_stage: residual blocks in each stage, e.g. `(2, 2, 2, 2)`.
        stage_strides: stride of each stage; default 1 then 2 for every later one.
        block_type: `"basic"` (post-activation) or `"preact"` (pre-activation,
            the network then ends with BN-ReLU); see `blocks.BLOCK_TYPES`.
        stem_filters: filters of the stem convolution; default `stage_filters[0]`.
        widen_factor: multiplies every stage width (not the stem's), k of WRN-d-k.
        dropout: rate between the two convolutions of every block, in [0, 1);
            0 adds no Dropout layer.
        input_shape, num_classes, sites, beta, normalization, mean, std,
            feedback_at_inference, name: the arguments every builder takes,
            described in `keras_sgn.models.network.Network`.

    Example:

    ```python
    model = keras_sgn.models.sgn_resnet((32, 64), (1, 1), input_shape=(28, 28, 1),
                                        mean=(0.5,), std=(0.5,))
    ```
    """
    filters, blocks, strides, stem = _check_stages(
        stage_filters, blocks_per_stage, stage_strides, stem_filters, widen_factor)
    if block_type not in BLOCK_TYPES:
        raise ArgumentError(f"block_type must be one of {sorted(BLOCK_TYPES)}. "
                            f"Received: block_type={block_type!r}.")
    block = BLOCK_TYPES[block_type]
    dropout = arguments.check_rate(dropout, "dropout")
    net = Network(num_stages=len(filters), input_shape=input_shape, num_classes=num_classes,
                  sites=sites, beta=beta, normalization=normalization, mean=mean, std=std,
                  feedback_at_inference=feedback_at_inference, name=name)
    x = conv2d(stem, 3, 1, "stem_conv")(net.image_input())
    if not block.preactivation:
        x = relu("stem_relu")(batch_norm("stem_bn")(x))
    for stage, (width, count, stride) in enumerate(zip(filters, blocks, strides), start=1):
        for index in range(count):
            x = block.build(x, width, stride if index == 0 else 1,
                            f"stage{stage}_block{index + 1}", dropout=dropout)
        x = net.site(x, f"stage{stage}")
    if block.preactivation:
        x = relu("final_relu")(batch_norm("final_bn")(x))
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    return net.logits_model(x)


def wide_resnet_architecture(depth, width):
    """The `sgn_resnet` arguments of WRN-`depth`-`width` (Zagoruyko & Komodakis 2016).

    Stem of 16 filters, three pre-activation groups of `(depth - 4) / 6` blocks,
    widths 16k/32k/64k (k = `width`), strides 1/2/2.
    """
    if (not isinstance(depth, numbers.Integral) or isinstance(depth, bool) or depth < 10
            or (depth - 4) % 6 != 0):
        raise ArgumentError(
            "depth must be an integer with (depth - 4) a positive multiple of 6 "
            f"(10, 16, 22, 28, 34, 40, ...). Received: depth={depth!r}."
        )
    width = arguments.check_int(width, "width")  # the widening factor k
    blocks = (int(depth) - 4) // 6
    return dict(stem_filters=16, stage_filters=(16, 32, 64), blocks_per_stage=(blocks,) * 3,
                stage_strides=(1, 2, 2), block_type="preact", widen_factor=width)


def sgn_wide_resnet(depth=34, width=10, input_shape=(32, 32, 3), num_classes=10, dropout=0.0,
                    sites="default", beta=DEFAULT_BETA, normalization="l2_relative",
                    mean=CIFAR10_MEAN, std=CIFAR10_STD, feedback_at_inference=False, name=None):
    """Wide ResNet WRN-`depth`-`width` with self-gradient sites (an `SGNModel`,
    images in [0, 1] to float32 logits).

    Pre-activation WRN: 3x3 stem convolution with 16 filters, three groups of
    `(depth - 4) / 6` blocks with widths 16k/32k/64k (k = `width`) and strides
    1/2/2, then BN-ReLU, global average pooling and a dense layer. WRN-28-10
    has about 36.5M parameters, WRN-34-10 about 46.2M. Sites: `input`,
    `stage1` ... `stage3` (one per group, on the residual stream).

    Args:
        depth: total depth; `(depth - 4)` must be a positive multiple of 6.
        width: widening factor k (>= 1).
        dropout: dropout rate between the two convolutions of a block, in
            [0, 1). 0 (default) adds no Dropout layer.
        name: model name; default `f"sgn_wrn_{depth}_{width}"`.
        input_shape, num_classes, sites, beta, normalization, mean, std,
            feedback_at_inference: see `keras_sgn.models.network.Network`.

    Example: `keras_sgn.models.get("sgn_wide_resnet", depth=28, width=10)`.

    Reference:
        Zagoruyko, Komodakis. "Wide Residual Networks", BMVC 2016.
    """
    architecture = wide_resnet_architecture(depth, width)
    if name is None:
        name = f"sgn_wrn_{int(depth)}_{architecture['widen_factor']}"
    return sgn_resnet(**architecture, dropout=dropout, input_shape=input_shape,
                      num_classes=num_classes, sites=sites, beta=beta,
                      normalization=normalization, mean=mean, std=std,
                      feedback_at_inference=feedback_at_inference, name=name)
