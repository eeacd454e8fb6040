"""Self-gradient network models: `SGNModel` and the backbone zoo.

Example:

```python
import keras_sgn.models
print(keras_sgn.models.list_models())
model = keras_sgn.models.get("sgn_small_cnn")
```
"""

from keras_sgn.models.sgn_model import SGNModel
from keras_sgn.models.backbones import (
    BN_MOMENTUM,
    CIFAR10_MEAN,
    CIFAR10_STD,
    DEFAULT_BETA,
    SITE_PREFIX,
    get,
    list_models,
    resolve_sites,
    sgn_preact_resnet18,
    sgn_resnet18,
    sgn_small_cnn,
    sgn_wide_resnet,
    sgn_wrn_28_10,
    sgn_wrn_34_10,
    stage_names,
)

__all__ = [
    "BN_MOMENTUM",
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "DEFAULT_BETA",
    "SGNModel",
    "SITE_PREFIX",
    "get",
    "list_models",
    "resolve_sites",
    "sgn_preact_resnet18",
    "sgn_resnet18",
    "sgn_small_cnn",
    "sgn_wide_resnet",
    "sgn_wrn_28_10",
    "sgn_wrn_34_10",
    "stage_names",
]
