"""keras-sgn: adversarially robust Keras classifiers built as Self-Gradient Networks.

Importing the package registers its layers, models and schedules with Keras, so
`keras.saving.load_model(...)` can rebuild saved SGN models.

With the environment variable `KERAS_SGN_LAZY_IMPORT=1`, importing the package imports
neither Keras nor TensorFlow: each part (`keras_sgn.data`, `keras_sgn.models`, ...) is
imported when first used. The tools import it so while they parse and check their flags
(`keras_sgn.config`, `keras_sgn.names` and `keras_sgn.cli` import no TensorFlow), so that
`--help` and a bad flag answer within a second. A program
that sets it imports `keras_sgn.models` before `keras.saving.load_model` of an SGN model,
or calls `keras_sgn.startup.import_everything()` (what the import does without it).
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


if os.environ.get(_LAZY_IMPORT_VARIABLE, "") in ("", "0"):
    from keras_sgn import startup as _startup

    _startup.import_everything()
