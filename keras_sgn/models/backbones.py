"""The former home of the backbone builders, kept so that existing imports
(`from keras_sgn.models.backbones import sgn_resnet18`) keep working.

The code now lives in `sites` (site names and `resolve_sites`), `blocks`,
`network`, `resnet`, `presets`, `small_cnn` and `registry`.
"""

from keras_sgn.models.blocks import BN_EPSILON, BN_MOMENTUM
from keras_sgn.models.presets import (
    sgn_preact_resnet18,
    sgn_resnet18,
    sgn_wrn_28_10,
    sgn_wrn_34_10,
)
from keras_sgn.models.registry import get, list_models
from keras_sgn.models.resnet import CIFAR10_MEAN, CIFAR10_STD, sgn_resnet, sgn_wide_resnet
from keras_sgn.models.sites import (
    DEFAULT_BETA,
    INPUT_SITE,
    SITE_PREFIX,
    resolve_sites,
    stage_names,
)
from keras_sgn.models.small_cnn import sgn_mnist_cnn, sgn_small_cnn

__all__ = [
    "BN_EPSILON", "BN_MOMENTUM", "CIFAR10_MEAN", "CIFAR10_STD", "DEFAULT_BETA", "INPUT_SITE",
    "SITE_PREFIX", "get", "list_models", "resolve_sites", "sgn_mnist_cnn", "sgn_preact_resnet18",
    "sgn_resnet", "sgn_resnet18", "sgn_small_cnn", "sgn_wide_resnet", "sgn_wrn_28_10",
    "sgn_wrn_34_10", "stage_names",
]
