"""MNIST and Fashion-MNIST from local files: splits, integrity, search order, decoded cache.

Tests marked `real_data` need Fashion-MNIST on this machine (`make data`); in CI a skip of one
of them is a failure (see conftest.py). The others build what they need in temporary folders.
"""

import gzip
import hashlib
import json
import logging
import os

import numpy as np
import pytest

from keras_sgn import data
from keras_sgn.data import cache, idx, sources
from tests.helpers import collect

pytest_plugins = ("pytester",)

real_data = pytest.mark.real_data("fashion_mnist")
SIZES = {"train": 59_000, "validation": 1_000, "test": 10_000}
# sha256 (first 16 hex) of each split's int32 labels and uint8 images, in load() order with
# shuffle=False. The same as a tfds-prepared fashion_mnist 3.0.1 gives (checked once).
PINNED = {
    "train": ("36bb5e63379f428b", "3db4904c7e410afc"),
    "validation": ("ff4e19c83895bfae", "219c46616c5c8853"),
    "test": ("85e2be1b62985fe3", "a84f70bc4eaa1b2c"),
}




def _as_uint8(x):
    pixels = np.round(x * 255.0)
    np.testing.assert_array_equal(pixels, x * 255.0)  # values are k/255 exactly
    return pixels.astype(np.uint8)


def _fingerprint(images, labels):
    return (hashlib.sha256(labels.astype("<i4").tobytes()).hexdigest()[:16],
            hashlib.sha256(np.ascontiguousarray(images).tobytes()).hexdigest()[:16])


@pytest.fixture(scope="module")
def fashion_source():
    """The Fashion-MNIST IDX files found on this machine."""
    source = data.sources.locate("fashion_mnist")
    if source.kind != "idx":
        pytest.skip(f"needs the Fashion-MNIST IDX files, found {source}; run `make data`.")
    return source


@pytest.fixture
def isolated(monkeypatch, tmp_path):
    """No tfds folder, Keras cache or system folder of this machine is searched: the places
    are `tmp_path/{tfds,home/.keras,keras_home,system}` (all absent until a test makes them)."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("KERAS_HOME", raising=False)
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path / "tfds"))
    monkeypatch.setattr(sources, "SYSTEM_DIRS",
                        {"fashion_mnist": (str(tmp_path / "system"),), "mnist": ()})
    return tmp_path


def _placeholders(folder, stems=idx.ALL_FILES):
    """Empty files named like the IDX files (enough for locate(), which reads nothing)."""
    folder.mkdir(parents=True, exist_ok=True)
    for stem in stems:
        (folder / (stem + ".gz")).write_bytes(b"")
    return str(folder)


def _prepared_tfds(root, name):
    (root / name / "3.0.1").mkdir(parents=True)
    (root / name / "3.0.1" / "dataset_info.json").write_text("{}")
    return str(root)


# ----------------------------------------------------------------------------- real data


def _uint8_split(ds):
    """(uint8 images, labels) of a dataset, checking dtypes and that pixels are k/255 in
    [0, 1] batch by batch (the float copy of the training split would be 185 MB)."""
    xs, ys = [], []
    for x, y in ds:
        x, y = x.numpy(), y.numpy()
        assert x.dtype == np.float32 and y.dtype == np.int32
        assert x.min() >= 0.0 and x.max() <= 1.0
        xs.append(_as_uint8(x))
        ys.append(y)
    return np.concatenate(xs), np.concatenate(ys)


def _rows(images):
    """Each image as one sortable row, sorted: equal results = the same multiset of images."""
    return np.sort(images.reshape(len(images), -1).view(np.dtype((np.void, 784))), axis=0)


@real_data
def test_fashion_mnist_splits_shapes_range_balance(fashion_source):
    got = {}
    for split, size in SIZES.items():
        ds = data.load("fashion_mnist", split, batch_size=10_000, shuffle=False)
        assert ds.element_spec[0].shape.as_list() == [None, 28, 28, 1]
        images, labels = _uint8_split(ds)
        assert images.shape == (size, 28, 28, 1) and labels.shape == (size,)
        assert images.min() == 0 and images.max() == 255
        counts = np.bincount(labels, minlength=10)
        assert len(counts) == 10 and counts.min() >= 0.8 * size / 10  # every class, balanced
        assert _fingerprint(images, labels) == PINNED[split], split  # the split never changes
        got[split] = images, labels
    assert np.bincount(got["test"][1]).tolist() == [1_000] * 10
    # train + validation are exactly the original training images (so disjoint), and the
    # test split is exactly the original test images
    original = idx.read_folder("fashion_mnist", fashion_source.path, hint="")
    train_and_validation = np.concatenate([got["train"][0], got["validation"][0]])
    np.testing.assert_array_equal(_rows(train_and_validation), _rows(original["train"][0]))
    np.testing.assert_array_equal(_rows(got["test"][0]), _rows(original["test"][0]))


@real_data
def test_fashion_mnist_first_examples_shuffle_and_no_augmentation(fashion_source):
    first, labels = collect(data.load("fashion_mnist", "train", 1_000, shuffle=False,
                                       n_examples=1_000))
    x, y = collect(data.load("fashion_mnist", "train", 7, shuffle=False, n_examples=20))
    np.testing.assert_array_equal(x, first[:20])  # the first n, before shuffling
    a = collect(data.load("fashion_mnist", "train", 100, n_examples=1_000, seed=5))
    b = collect(data.load("fashion_mnist", "train", 100, n_examples=1_000, seed=5))
    np.testing.assert_array_equal(a[0], b[0])  # seeded
    assert not np.array_equal(a[1], labels)  # shuffled by default for train ...
    assert sorted(a[1].tolist()) == sorted(labels.tolist())
    # ... and not augmented: the same images, only reordered
    order = np.lexsort(a[0].reshape(1_000, -1).T)
    reference = np.lexsort(first.reshape(1_000, -1).T)
    np.testing.assert_array_equal(a[0][order], first[reference])
    with pytest.raises(ValueError, match="augment"):
        data.load("fashion_mnist", "train", augment=True)


@real_data
def test_original_order_is_the_idx_file_order(fashion_source):
    """'The first N test images' of the literature are the first N of the IDX file, not of
    tfds' stored order (whose first labels are 4, 4, 9, 7)."""
    original = idx.read_folder("fashion_mnist", fashion_source.path, hint="")["test"]
    x, y = collect(data.load("fashion_mnist", "test", 64, n_examples=100, order="original"))
    np.testing.assert_array_equal(_as_uint8(x)[..., 0], original[0][:100])
    np.testing.assert_array_equal(y, original[1][:100])
    assert y[:5].tolist() == [9, 2, 1, 1, 6]
    stored = collect(data.load("fashion_mnist", "test", 64, n_examples=5))[1]
    assert stored.tolist() != y[:5].tolist()
    with pytest.raises(ValueError, match="order='original'.*'validation'"):
        data.load("fashion_mnist", "validation", order="original")


def test_order_is_checked_and_digits_are_stored_in_original_order():
    stored = collect(data.load("digits", "test", 50, n_examples=40))
    original = collect(data.load("digits", "test", 50, n_examples=40, order="original"))
    np.testing.assert_array_equal(stored[0], original[0])
    with pytest.raises(ValueError, match=r"order must be one of \('stored', 'original'\)"):
        data.load("digits", "test", order="file")


@real_data
def test_decoded_arrays_are_cached_and_the_cache_is_used(fashion_source, monkeypatch):
    data.load("fashion_mnist", "validation")  # builds the cache if this session has none
    npz_path, json_path = cache.paths(fashion_source)
    with open(npz_path, "rb") as f, open(json_path) as g:
        assert hashlib.sha256(f.read()).hexdigest() == json.load(g)["sha256"]

    def no_reading(source):
        raise AssertionError("decoded the files again instead of using the cache")

    monkeypatch.setattr(sources, "read", no_reading)
    cache.forget()  # not the in-memory copy: the one on disk
    x, y = collect(data.load("fashion_mnist", "validation", 1_000, shuffle=False))
    assert _fingerprint(_as_uint8(x), y) == PINNED["validation"]


@real_data
def test_a_corrupted_cache_is_rebuilt_not_trusted(fashion_source, monkeypatch, tmp_path, caplog):
    data.load("fashion_mnist", "validation")
    good_npz, good_json = cache.paths(fashion_source)
    monkeypatch.setenv("KERAS_SGN_CACHE", str(tmp_path))
    npz_path, json_path = cache.paths(fashion_source)
    payload = bytearray(open(good_npz, "rb").read())
    payload[len(payload) // 2] ^= 0xFF  # one pixel of the cached training images
    open(npz_path, "wb").write(bytes(payload))
    open(json_path, "w").write(open(good_json).read())
    reads = []
    real_read = sources.read
    monkeypatch.setattr(sources, "read", lambda source: reads.append(source) or real_read(source))
    cache.forget()
    with caplog.at_level(logging.WARNING, logger="keras_sgn.data.cache"):
        x, y = collect(data.load("fashion_mnist", "validation", 1_000, shuffle=False))
    assert len(reads) == 1 and "corrupted" in caplog.text
    assert _fingerprint(_as_uint8(x), y) == PINNED["validation"]
    with open(npz_path, "rb") as f, open(json_path) as g:  # rewritten, and valid again
        assert hashlib.sha256(f.read()).hexdigest() == json.load(g)["sha256"]


def _damage(folder, source, how):
    """A copy of `source` in `folder` (links to the good files) with train labels damaged."""
    folder.mkdir()
    for path in source.files:
        os.symlink(path, folder / os.path.basename(path))
    victim = folder / "train-labels-idx1-ubyte.gz"
    good = open(victim, "rb").read()
    victim.unlink()
    if how == "truncated_gz":
        victim.write_bytes(good[: len(good) // 2])
    elif how == "flipped_gz_byte":
        damaged = bytearray(good)
        damaged[len(damaged) // 2] ^= 0x01
        victim.write_bytes(bytes(damaged))
    else:  # one label changed inside a valid gzip stream / an uncompressed file
        content = bytearray(gzip.decompress(good))
        content[100] = (content[100] + 1) % 10
        if how == "altered_content":
            victim.write_bytes(gzip.compress(bytes(content)))
        else:
            victim = folder / "train-labels-idx1-ubyte"
            victim.write_bytes(bytes(content))
    return victim


@real_data
@pytest.mark.parametrize("how", ["truncated_gz", "flipped_gz_byte", "altered_content",
                                 "altered_uncompressed"])
def test_a_damaged_copy_is_refused_naming_the_file(fashion_source, tmp_path, how):
    victim = _damage(tmp_path / "copy", fashion_source, how)
    source = data.sources.locate("fashion_mnist", data_dir=str(tmp_path / "copy"))
    assert source.place == "data_dir="  # found first, although a good copy exists elsewhere
    with pytest.raises(data.DatasetIntegrityError) as error:
        data.load("fashion_mnist", "test", data_dir=str(tmp_path / "copy"))
    message = str(error.value)
    assert str(victim) in message and "Nothing was loaded" in message
    assert ("sha256" in message) == how.startswith("altered")
    assert "apt-get install dataset-fashion-mnist" in message  # how to get a good copy
    assert not os.path.exists(cache.paths(source)[0])  # nothing cached from it


@real_data
def test_mnist_reads_keras_npz_checked_by_content(fashion_source, monkeypatch, tmp_path):
    """The `mnist.npz` path, run on Fashion-MNIST arrays with MNIST's checksums swapped for
    Fashion-MNIST's (there is no MNIST copy on the CI machines)."""
    monkeypatch.setitem(idx.SHA256, "mnist", idx.SHA256["fashion_mnist"])
    stored = cache.arrays(fashion_source, sources.read)
    original = {}
    for split, (images, labels) in stored.items():  # undo tfds' order: the files' order
        back = np.argsort(idx.tfds_order(split, len(labels)))
        original[f"x_{split}"] = images[back][..., 0]
        original[f"y_{split}"] = labels[back].astype(np.uint8)
    np.savez(tmp_path / "mnist.npz", **original)
    source = data.sources.locate("mnist", data_dir=str(tmp_path))
    assert (source.kind, source.path) == ("npz", str(tmp_path / "mnist.npz"))
    got = collect(data.load("mnist", "validation", 1_000, data_dir=str(tmp_path)))
    assert _fingerprint(_as_uint8(got[0]), got[1]) == PINNED["validation"]
    original["x_test"][0, 14, 14] ^= 1
    np.savez(tmp_path / "mnist.npz", **original)
    with pytest.raises(data.DatasetIntegrityError, match="mnist.npz.*t10k-images"):
        data.load("mnist", "test", data_dir=str(tmp_path))
    (tmp_path / "mnist.npz").write_bytes(b"PK\x03\x04 not a whole zip file")
    with pytest.raises(data.DatasetIntegrityError, match="cannot be read"):
        data.load("mnist", "test", data_dir=str(tmp_path))


# ----------------------------------------------------------------------------- no data needed


def test_search_order(isolated, monkeypatch):
    data_dir = _placeholders(isolated / "given")
    _prepared_tfds(isolated / "tfds", "fashion_mnist")
    keras_home = isolated / "keras_home"
    _placeholders(keras_home / "datasets" / "fashion-mnist")
    _placeholders(isolated / "home" / ".keras" / "datasets" / "fashion-mnist")
    _placeholders(isolated / "system")
    monkeypatch.setenv("KERAS_HOME", str(keras_home))

    def found(**kwargs):
        source = data.sources.locate("fashion_mnist", **kwargs)
        return source.kind, source.path

    assert found(data_dir=data_dir) == ("idx", data_dir)
    assert found() == ("tfds", str(isolated / "tfds"))  # $TFDS_DATA_DIR
    assert found(data_dir=str(isolated / "tfds")) == ("tfds", str(isolated / "tfds"))
    (isolated / "tfds" / "fashion_mnist" / "3.0.1" / "dataset_info.json").unlink()
    assert found() == ("idx", str(keras_home / "datasets" / "fashion-mnist"))
    monkeypatch.delenv("KERAS_HOME")
    assert found() == ("idx", str(isolated / "home" / ".keras" / "datasets" / "fashion-mnist"))
    (isolated / "home" / ".keras" / "datasets" / "fashion-mnist" / (idx.ALL_FILES[0] + ".gz")
     ).unlink()  # an incomplete copy does not count
    assert found() == ("idx", str(isolated / "system"))
    # MNIST: Keras' single file in the Keras cache
    (isolated / "home" / ".keras" / "datasets" / "mnist.npz").write_bytes(b"")
    assert data.sources.locate("mnist").kind == "npz"


def test_nothing_found_lists_every_place_and_how_to_get_the_data(isolated, monkeypatch):
    given = _placeholders(isolated / "given", idx.ALL_FILES[:2])
    (isolated / "tfds" / "fashion_mnist" / "9.9.9").mkdir(parents=True)
    monkeypatch.setenv("KERAS_HOME", str(isolated / "keras_home"))
    with pytest.raises(data.DatasetNotAvailableError) as error:
        data.load("fashion_mnist", "test", data_dir=given, download=False)
    assert isinstance(error.value, FileNotFoundError)
    message = str(error.value)
    for place in (given, isolated / "tfds", isolated / "keras_home" / "datasets" / "fashion-mnist",
                  isolated / "home" / ".keras" / "datasets" / "fashion-mnist",
                  isolated / "system"):
        assert repr(str(place)) in message, place
    assert message.index(repr(given)) < message.index(repr(str(isolated / "tfds"))) < (
        message.index(repr(str(isolated / "system"))))  # in the search order
    for needle in ("data_dir=", "$TFDS_DATA_DIR", "$KERAS_HOME", "missing t10k-images-idx3-ubyte",
                   "9.9.9", "apt-get install dataset-fashion-mnist",
                   "keras.datasets.fashion_mnist.load_data()", "tfds build fashion_mnist",
                   "download=False"):
        assert needle in message, needle
    with pytest.raises(data.DatasetNotAvailableError, match="mnist.npz") as error:
        data.sources.locate("mnist")
    assert "dataset-fashion-mnist" not in str(error.value)  # no Debian package for MNIST
    with pytest.raises(ValueError, match="cifar10"):
        data.sources.locate("cifar10")


REAL_DATA_TESTS = """
import pytest

@pytest.mark.real_data("fashion_mnist")
def test_needs_fashion_mnist():
    raise AssertionError("ran without the data")

def test_plain():
    pass
"""


def test_real_data_tests_skip_with_the_command_or_fail_in_ci(isolated, pytester, monkeypatch):
    """conftest.py's `real_data` marker, run in a nested pytest on a machine without data."""
    with open(os.path.join(os.path.dirname(__file__), "conftest.py")) as f:
        pytester.makeconftest(f.read())
    pytester.makepyfile(test_marked=REAL_DATA_TESTS)
    monkeypatch.delenv("KERAS_SGN_REQUIRE_REAL_DATA", raising=False)
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, skipped=1)
    result.stdout.fnmatch_lines(["*1 real-data tests skipped*",
                                 "SKIPPED *test_needs_fashion_mnist*", "*`make data`*"])
    monkeypatch.setenv("KERAS_SGN_REQUIRE_REAL_DATA", "1")
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*KERAS_SGN_REQUIRE_REAL_DATA=1, but this real-data test was "
                                 "skipped*make data*"])
