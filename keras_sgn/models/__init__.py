"""Self-gradient network models: `SGNModel` and the backbone zoo.

Floors of this package, lowest first: `sites` (site names, the one parser of
`sites`/`beta`), `arguments` (checks), `blocks` (layers and residual blocks),
`sgn_model` (`SGNModel`), `network` (input, sites and logits every backbone
shares), `resnet` (the one residual builder) and `small_cnn`, `presets` (named
residual networks as data), `registry` (`get`, `list_models`, `register`).

Example:

```python
import keras_sgn.models
print(keras_sgn.models.list_models())
model = keras_sgn.models.get("sgn_small_cnn")
```
"""

from keras_sgn.models.blocks import BN_MOMENTUM
from keras_sgn.models.presets import (
    PRESETS,
    sgn_preact_resnet18,
    sgn_resnet18,
    sgn_wrn_28_10,
    sgn_wrn_34_10,
)
from keras_sgn.models.registry import get, list_models, register
from keras_sgn.models.resnet import CIFAR10_MEAN, CIFAR10_STD, sgn_resnet, sgn_wide_resnet
from keras_sgn.models.sgn_model import SGNModel
from keras_sgn.models.sites import (
    DEFAULT_BETA,
    SITE_PREFIX,
    parse_beta,
    parse_sites,
    resolve_sites,
    stage_names,
)
from keras_sgn.models.small_cnn import sgn_mnist_cnn, sgn_small_cnn

__all__ = [
    "BN_MOMENTUM",
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "DEFAULT_BETA",
    "PRESETS",
    "SGNModel",
    "SITE_PREFIX",
    "get",
    "list_models",
    "parse_beta",
    "parse_sites",
    "register",
    "resolve_sites",
    "sgn_mnist_cnn",
    "sgn_preact_resnet18",
    "sgn_resnet",
    "sgn_resnet18",
    "sgn_small_cnn",
    "sgn_wide_resnet",
    "sgn_wrn_28_10",
    "sgn_wrn_34_10",
    "stage_names",
]
