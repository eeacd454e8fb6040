"""The layers backbones are made of: convolution, BatchNorm and ReLU with the
house settings, residual blocks, and the plain convolutional stage.

Every `BatchNormalization` uses `momentum=BN_MOMENTUM` (0.9): attacks run
BatchNorm in inference mode, so the moving statistics must catch up quickly in
short runs. Convolutions are `he_normal`, `padding="same"`, bias-free unless a
BatchNorm does not follow them.

Reference:
    He, Zhang, Ren, Sun. "Deep Residual Learning for Image Recognition", CVPR
    2016 (basic block), and "Identity Mappings in Deep Residual Networks", ECCV
    2016 (pre-activation block).
    Zagoruyko, Komodakis. "Wide Residual Networks", BMVC 2016 (the wide
    block: a pre-activation block with dropout between its convolutions).
"""

import dataclasses
from typing import Callable

from keras import layers

BN_MOMENTUM = 0.9
BN_EPSILON = 1e-5


def conv2d(filters, kernel_size, strides, name, use_bias=False):
    return layers.Conv2D(
        filters,
        kernel_size,
        strides=strides,
        padding="same",
        use_bias=use_bias,
        kernel_initializer="he_normal",
        name=name,
    )


def batch_norm(name):
    return layers.BatchNormalization(momentum=BN_MOMENTUM, epsilon=BN_EPSILON, name=name)


def relu(name):
    return layers.ReLU(name=name)


def _two_convs(x, filters, strides, name, bn_index, dropout):
    """conv3x3 (strided) - BN - ReLU - [dropout] - conv3x3: the core of both blocks.

    `bn_index` numbers the BN/ReLU pair (`{name}_bn1` in a basic block, `_bn2` in a
    pre-activation block, whose `_bn1` comes before the convolutions).
    """
    y = conv2d(filters, 3, strides, f"{name}_conv1")(x)
    y = batch_norm(f"{name}_bn{bn_index}")(y)
    y = relu(f"{name}_relu{bn_index}")(y)
    if dropout > 0:  # no layer at all for 0: a network without dropout has no Dropout layer
        y = layers.Dropout(dropout, name=f"{name}_dropout")(y)
    return conv2d(filters, 3, 1, f"{name}_conv2")(y)


def basic_block(x, filters, strides, name, dropout=0.0):
    """Post-activation basic block (He et al. 2016a).

    conv3x3-BN-ReLU-[dropout]-conv3x3-BN, plus the shortcut (1x1 conv + BN
    when the shape changes), then ReLU.
    """
    shortcut = x
    y = batch_norm(f"{name}_bn2")(_two_convs(x, filters, strides, name, 1, dropout))
    if strides != 1 or x.shape[-1] != filters:
        shortcut = conv2d(filters, 1, strides, f"{name}_shortcut_conv")(x)
        shortcut = batch_norm(f"{name}_shortcut_bn")(shortcut)
    y = layers.Add(name=f"{name}_add")([y, shortcut])
    return relu(f"{name}_out")(y)


def preact_block(x, filters, strides, name, dropout=0.0):
    """Pre-activation basic block (He et al. 2016b); with `dropout` it is the
    wide block of Zagoruyko & Komodakis 2016.

    As in the reference implementations (Wong et al. 2020; Zagoruyko &
    Komodakis 2016), the projection shortcut reads the pre-activated input and
    the identity shortcut reads the raw input.
    """
    y = batch_norm(f"{name}_bn1")(x)
    y = relu(f"{name}_relu1")(y)
    if strides != 1 or x.shape[-1] != filters:
        shortcut = conv2d(filters, 1, strides, f"{name}_shortcut_conv")(y)
    else:
        shortcut = x
    y = _two_convs(y, filters, strides, name, 2, dropout)
    return layers.Add(name=f"{name}_add")([y, shortcut])


@dataclasses.dataclass(frozen=True)
class BlockType:
    """A residual block and where its network puts BN-ReLU.

    Attributes:
        build: `build(x, filters, strides, name, dropout) -> tensor`.
        preactivation: True when blocks start with BN-ReLU: the stem is then a
            bare convolution and the network ends with BN-ReLU (`final_bn`,
            `final_relu`); False gives a stem conv-BN-ReLU and no final BN.
    """

    build: Callable
    preactivation: bool


BLOCK_TYPES = {
    "basic": BlockType(basic_block, preactivation=False),
    "preact": BlockType(preact_block, preactivation=True),
}


def conv_stage(x, filters, kernel_size, strides, pool, use_batch_norm, name):
    """conv-[BN]-ReLU-[2x2 max-pool], layers named `{name}_conv` ... `{name}_pool`.

    Without BatchNorm the convolution has a bias.
    """
    x = conv2d(filters, kernel_size, strides, f"{name}_conv", use_bias=not use_batch_norm)(x)
    if use_batch_norm:
        x = batch_norm(f"{name}_bn")(x)
    x = relu(f"{name}_relu")(x)
    if pool:
        x = layers.MaxPooling2D(2, name=f"{name}_pool")(x)
    return x


def dense_stage(x, units, name):
    """flatten-dense-ReLU, layers named `{name}_flatten`, `{name}_dense`, `{name}_relu`."""
    x = layers.Flatten(name=f"{name}_flatten")(x)
    x = layers.Dense(units, name=f"{name}_dense")(x)
    return relu(f"{name}_relu")(x)
