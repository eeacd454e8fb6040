import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _seed():
    keras.utils.set_random_seed(1234)
    yield


@pytest.fixture(scope="session")
def digits_arrays():
    """Digits train/test arrays from keras_sgn.data (images in [0, 1])."""
    from keras_sgn import data

    def arrays(split, n=None):
        xs, ys = [], []
        for x, y in data.load("digits", split, batch_size=512, n_examples=n, shuffle=False):
            xs.append(x.numpy()), ys.append(y.numpy())
        return np.concatenate(xs), np.concatenate(ys)

    return arrays


def _digits_classifier(digits_arrays, hidden, epochs, learning_rate, batch_size):
    keras.utils.set_random_seed(0)
    x, y = digits_arrays("train")
    layers = [keras.Input((8, 8, 1)), keras.layers.Flatten()]
    if hidden:
        layers.append(keras.layers.Dense(hidden, activation="relu"))
    model = keras.Sequential(layers + [keras.layers.Dense(10)])
    model.compile(keras.optimizers.Adam(learning_rate),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, epochs=epochs, batch_size=batch_size, verbose=0)
    x_test, y_test = digits_arrays("test")
    return model, x_test, y_test


@pytest.fixture(scope="session")
def digits_mlp(digits_arrays):
    """A small dense classifier trained normally on digits: (model, x_test, y_test)."""
    return _digits_classifier(digits_arrays, hidden=64, epochs=30, learning_rate=1e-3,
                              batch_size=64)


@pytest.fixture(scope="session")
def digits_linear(digits_arrays):
    """A linear softmax classifier on the 64 pixels: (model, x_test, y_test)."""
    return _digits_classifier(digits_arrays, hidden=0, epochs=20, learning_rate=0.01,
                              batch_size=128)
