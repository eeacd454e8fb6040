"""keras-sgn: adversarially robust Keras classifiers built as Self-Gradient Networks.

Importing the package registers its layers, models and schedules with Keras, so
`keras.saving.load_model(...)` can rebuild saved SGN models.

With the environment variable `KERAS_SGN_LAZY_IMPORT=1`, importing the package imports
neither Keras nor TensorFlow: each part (`keras_sgn.data`, `keras_sgn.models`, ...) is
imported when first used. The tools set it to answer `--help` without TensorFlow (their flags
come from `keras_sgn.config` and `keras_sgn.names`, which import no TensorFlow). A program
that sets it imports `keras_sgn.models` before `keras.saving.load_model` of an SGN model.
"""

import importlib
import os

__version__ = "0.1.0"

# Set to 1 to import the parts of keras_sgn on first use (no TensorFlow at import).
_LAZY_IMPORT_VARIABLE = "KERAS_SGN_LAZY_IMPORT"

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

# keras_sgn.zoo imports only the standard library at import time (huggingface_hub when a
# model is downloaded); keras_sgn.hub (publishing) is not imported here.
_PARTS = ("attacks", "data", "evaluation", "layers", "methods", "models", "training", "zoo")
# The few names used so often that they live here (their one home), defined in these modules.
_NAMES = {"evaluate_pretrained": "evaluation.runs", "list_pretrained": "zoo.catalog",
          "load_pretrained": "zoo.loading"}

__all__ = [*_PARTS, "evaluate_pretrained", "list_pretrained", "load_pretrained", "__version__"]


def __getattr__(name):
    """The parts and names of `__all__`, imported on first use (PEP 562)."""
    if name in _PARTS:
        return importlib.import_module(f"{__name__}.{name}")
    if name in _NAMES:
        return getattr(importlib.import_module(f"{__name__}.{_NAMES[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _import_everything():
    """Import Keras (checking its backend) and every part, registering the layers, models
    and schedules with Keras; TensorFlow's start-up lines are hidden when this import is
    the one that starts TensorFlow (`keras_sgn.startup`)."""
    import contextlib
    import sys

    from keras_sgn import startup

    hide = "tensorflow" not in sys.modules and not startup.wants_tensorflow_logs()
    with startup.tensorflow_logs_hidden() if hide else contextlib.nullcontext():
        import keras

        if keras.config.backend() != "tensorflow":
            raise ImportError(
                "keras_sgn needs the TensorFlow backend of Keras (it uses tf.GradientTape "
                f"and tf.distribute); KERAS_BACKEND is {keras.config.backend()!r}. "
                "Set KERAS_BACKEND=tensorflow.")
        import tensorflow as tf

        # The first look at the devices prints "failed call to cuInit" without a GPU.
        tf.config.list_physical_devices()
        for part in _PARTS:
            importlib.import_module(f"{__name__}.{part}")

if os.environ.get(_LAZY_IMPORT_VARIABLE, "") in ("", "0"):
    _import_everything()
