"""Backbones by name: `get("sgn_resnet18", ...)`, `list_models()`, `register`."""

import difflib

from keras_sgn.errors import ArgumentError
from keras_sgn.models import presets, resnet, small_cnn

_BUILDERS = {
    **presets.BUILDERS,
    "sgn_wide_resnet": resnet.sgn_wide_resnet,
    "sgn_small_cnn": small_cnn.sgn_small_cnn,
    "sgn_mnist_cnn": small_cnn.sgn_mnist_cnn,
    "sgn_lenet_small": small_cnn.sgn_lenet_small,
}


def register(name, builder):
    """Make `builder(**kwargs) -> SGNModel` available as `get(name, ...)`.

    Raises:
        ValueError: if `name` is taken or `builder` is not callable.
    """
    if not isinstance(name, str) or not name or name in _BUILDERS:
        raise ArgumentError(
            "name must be a new non-empty string. Received: "
            f"name={name!r}. Taken names: {list_models()}."
        )
    if not callable(builder):
        raise ArgumentError(f"builder must be callable. Received: builder={builder!r}.")
    _BUILDERS[name] = builder


def list_models():
    """Sorted names accepted by `get`."""
    return sorted(_BUILDERS)


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
    if not isinstance(model, str) or model not in _BUILDERS:
        close = difflib.get_close_matches(str(model), list(_BUILDERS), n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise ArgumentError(
            f"Unknown model. Received: model={model!r}.{hint} Valid names: {list_models()}."
        )
    return _BUILDERS[model](**kwargs)
