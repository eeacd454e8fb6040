"""Backbones by name: `get("sgn_resnet18", ...)`, `list_models()`, `register`."""

from keras_sgn.errors import ArgumentError
from keras_sgn.models import presets, resnet, small_cnn
from keras_sgn.registry import Registry

_BUILDERS = Registry("model", {
    **presets.BUILDERS,
    "sgn_wide_resnet": resnet.sgn_wide_resnet,
    "sgn_small_cnn": small_cnn.sgn_small_cnn,
    "sgn_mnist_cnn": small_cnn.sgn_mnist_cnn,
    "sgn_mnist_cnn_wide": small_cnn.sgn_mnist_cnn_wide,
    "sgn_lenet_small": small_cnn.sgn_lenet_small,
}, param="model")


def register(name, builder):
    """Make `builder(**kwargs) -> SGNModel` available as `get(name, ...)`.

    Raises:
        ValueError: if `name` is taken or `builder` is not callable.
    """
    if not callable(builder):
        raise ArgumentError(f"builder must be callable. Received: builder={builder!r}.")
    _BUILDERS.register(name, builder)


def list_models():
    """Sorted names accepted by `get`."""
    return _BUILDERS.names()


def get(model, /, **kwargs):
    """Build a registered backbone by name.

    Args:
        model: builder name, one of `list_models()`.
        **kwargs: forwarded to the builder (including `name=` for the model's
            own name).

    Returns:
        The `SGNModel` built by the builder.

    Raises:
        ValueError: if `model` is not a registered name; the message lists
            close matches and all valid names.

    Example:

    ```python
    import keras_sgn.models
    model = keras_sgn.models.get("sgn_mnist_cnn", num_classes=10)
    ```
    """
    return _BUILDERS.get(model)(**kwargs)
