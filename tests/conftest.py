import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import functools  # noqa: E402

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

# Real-data tests: `@pytest.mark.real_data("fashion_mnist")` (the default name). Without the
# data they are skipped with the command that enables them; in CI (.ci/run sets this switch)
# a skipped real-data test is a failure.
REAL_DATA_SWITCH = "KERAS_SGN_REQUIRE_REAL_DATA"
ENABLE_REAL_DATA = "make data"
_skipped_real_data = []


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "real_data(name='fashion_mnist'): needs that dataset's files on this machine; skipped "
        f"without them (enable with `{ENABLE_REAL_DATA}`), a failure when {REAL_DATA_SWITCH}=1.")


def _real_data_required() -> bool:
    return os.environ.get(REAL_DATA_SWITCH, "") not in ("", "0")


@functools.lru_cache(maxsize=None)
def _real_data_missing(name):
    """None if `name` is on this machine, else the first line of the reason."""
    from keras_sgn import data

    try:
        data.sources.locate(name)
    except data.DatasetNotAvailableError as error:
        return str(error).splitlines()[0]
    return None


def pytest_runtest_setup(item):
    marker = item.get_closest_marker("real_data")
    if marker is None:
        return
    name = marker.args[0] if marker.args else marker.kwargs.get("name", "fashion_mnist")
    missing = _real_data_missing(name)
    if missing:
        pytest.skip(f"real data: {missing} Run `{ENABLE_REAL_DATA}` to enable this test.")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if (not report.skipped or hasattr(report, "wasxfail")
            or item.get_closest_marker("real_data") is None):
        return
    reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    if _real_data_required():
        report.outcome = "failed"
        report.longrepr = f"{REAL_DATA_SWITCH}=1, but this real-data test was skipped: {reason}"


def pytest_runtest_logreport(report):
    # Here, not in makereport: under pytest-xdist only this hook runs where the summary is
    # printed (the reports come back from the workers with their markers as keywords).
    if report.skipped and "real_data" in report.keywords and not hasattr(report, "wasxfail"):
        _skipped_real_data.append(report.nodeid)


def pytest_terminal_summary(terminalreporter):
    if not _skipped_real_data:
        return
    terminalreporter.write_sep("-", f"{len(_skipped_real_data)} real-data tests skipped")
    for nodeid in _skipped_real_data:
        terminalreporter.write_line(f"SKIPPED {nodeid}")
    terminalreporter.write_line(
        f"The data is not on this machine. Run `{ENABLE_REAL_DATA}` (Debian: apt-get install "
        "dataset-fashion-mnist) to enable them.")


@pytest.fixture(scope="session", autouse=True)
def _private_data_cache(tmp_path_factory):
    """The decoded-array cache of keras_sgn.data in a session folder, not the user's."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("KERAS_SGN_CACHE", str(tmp_path_factory.mktemp("keras_sgn_cache")))
        yield


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
