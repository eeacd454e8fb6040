"""keras-sgn: adversarially robust Keras classifiers built as Self-Gradient Networks.

Importing the package registers its layers, models and schedules with Keras, so
`keras.saving.load_model(...)` can rebuild saved SGN models.
"""

import os

__version__ = "0.1.0"

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras  # noqa: E402

if keras.config.backend() != "tensorflow":
    raise ImportError(
        "keras_sgn needs the TensorFlow backend of Keras (it uses tf.GradientTape and "
        f"tf.distribute); KERAS_BACKEND is {keras.config.backend()!r}. "
        "Set KERAS_BACKEND=tensorflow.")

# keras_sgn.zoo imports only the standard library at import time (huggingface_hub when a
# model is downloaded); keras_sgn.hub (publishing) is not imported here.
from keras_sgn import (  # noqa: E402
    attacks,
    data,
    evaluation,
    layers,
    methods,
    models,
    training,
    zoo,
)
from keras_sgn.evaluation import evaluate_pretrained  # noqa: E402
from keras_sgn.layers import SelfGradient  # noqa: E402
from keras_sgn.models import SGNModel  # noqa: E402
from keras_sgn.zoo import list_pretrained, load_pretrained  # noqa: E402

__all__ = ["attacks", "data", "evaluation", "layers", "methods", "models", "training", "zoo",
           "SelfGradient", "SGNModel", "evaluate_pretrained", "list_pretrained",
           "load_pretrained", "__version__"]
