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

# Loaded so that `models.<module>.<name>` works after importing the package.
from keras_sgn.models import blocks  # noqa: F401
from keras_sgn.models.presets import sgn_preact_resnet18, sgn_resnet18, sgn_wrn_28_10, sgn_wrn_34_10
from keras_sgn.models.registry import get, list_models, register
from keras_sgn.models.resnet import sgn_resnet, sgn_wide_resnet
from keras_sgn.models.sgn_model import SGNModel
from keras_sgn.models.sites import parse_beta, parse_sites
from keras_sgn.models.small_cnn import sgn_mnist_cnn, sgn_small_cnn

__all__ = [
    "SGNModel",
    "get",
    "list_models",
    "register",
    "sgn_mnist_cnn",
    "sgn_small_cnn",
    "sgn_resnet",
    "sgn_resnet18",
    "sgn_preact_resnet18",
    "sgn_wide_resnet",
    "sgn_wrn_28_10",
    "sgn_wrn_34_10",
    "parse_beta",
    "parse_sites",
]
