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
