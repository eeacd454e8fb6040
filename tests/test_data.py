"""Tests for keras_sgn.data (no network: digits is bundled, tfds datasets are mocked).

The real MNIST-family files (search order, integrity, cache) are tested in test_data_files.py."""

import contextlib
import dataclasses
import hashlib
import socket
import sys
import tempfile
import time
from unittest import mock

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from keras_sgn import data
from keras_sgn.data import catalog, download, sources, tfds_source
from keras_sgn.data import digits as data_digits
from tests.helpers import collect


@pytest.fixture(autouse=True)
def _private_tempdir(monkeypatch, tmp_path_factory):
    """tfds leaks an empty `mkdtemp("tfds")` folder per unprepared builder (its
    `initialize_from_bucket`); keep those out of the system /tmp."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path_factory.mktemp("tfds_tmp")))


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a network connection fails the test immediately."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


# ----------------------------------------------------------------------------- info


def test_datasets_and_info():
    assert set(data.DATASETS) == {"cifar10", "cifar100", "svhn_cropped", "mnist",
                                  "fashion_mnist", "digits"}
    c10 = data.info("cifar10")
    assert c10.num_classes == 10 and c10.image_shape == (32, 32, 3)
    assert c10.mean == (0.4914, 0.4822, 0.4465) and c10.std == (0.2471, 0.2435, 0.2616)
    assert c10.augment and c10.flip
    assert dict(c10.num_examples) == {"train": 49_000, "validation": 1_000, "test": 10_000}
    assert data.info("cifar100").num_classes == 100
    svhn = data.info("svhn_cropped")
    assert svhn.augment and not svhn.flip  # crop only: digits are not mirror symmetric
    mnist = data.info("mnist")
    assert mnist.mean == (0.1307,) and mnist.std == (0.3081,) and not mnist.augment
    assert not data.info("fashion_mnist").augment
    for name in data.DATASETS:
        i = data.info(name)
        assert len(i.mean) == len(i.std) == i.image_shape[-1]
    with pytest.raises(dataclasses.FrozenInstanceError):
        c10.num_classes = 3


def test_every_dataset_names_its_classes():
    for name in data.DATASETS:
        names = data.info(name).class_names
        assert isinstance(names, tuple) and len(names) == data.info(name).num_classes
        assert all(isinstance(n, str) and n for n in names) and len(set(names)) == len(names)
    assert data.info("cifar10").class_names[:3] == ("airplane", "automobile", "bird")
    assert data.info("fashion_mnist").class_names[9] == "Ankle boot"
    cifar100 = data.info("cifar100").class_names
    assert cifar100 == tuple(sorted(cifar100)) and cifar100[0] == "apple"  # tfds' fine labels
    for name in ("mnist", "svhn_cropped", "digits"):
        assert data.info(name).class_names == tuple("0123456789")


def test_digits_info_stats_match_train_split():
    i = data.info("digits")
    assert i.image_shape == (8, 8, 1) and i.num_classes == 10 and not i.augment
    assert dict(i.num_examples) == {"train": 1_257, "validation": 180, "test": 360}
    x, _ = collect(data.load("digits", "train", batch_size=2000, shuffle=False))
    np.testing.assert_allclose(i.mean, [x.mean()], rtol=1e-5)
    np.testing.assert_allclose(i.std, [x.std()], rtol=1e-4)
    assert data.info("digits") == i  # computed once, deterministic
    # Pinned literals, so a change of the split or of the statistics code shows
    # here even if both move together (the shipped model was trained with these).
    np.testing.assert_allclose(i.mean, [0.3061092258353222], rtol=1e-9)
    np.testing.assert_allclose(i.std, [0.3765465227332148], rtol=1e-9)


# ----------------------------------------------------------------------------- digits


def test_digits_batches_shapes_dtypes_ranges():
    ds = data.load("digits", "train", batch_size=64)
    x, y = next(iter(ds))
    assert x.shape == (64, 8, 8, 1) and x.dtype == tf.float32
    assert y.shape == (64,) and y.dtype == tf.int32
    x, y = collect(ds)
    assert x.shape == (1_257, 8, 8, 1)
    assert x.min() == 0.0 and x.max() == 1.0
    assert set(np.unique(y)) == set(range(10))
    # values are k/16 exactly
    np.testing.assert_array_equal(x * 16, np.round(x * 16))


def test_digits_splits_disjoint_complete_stable():
    sizes, indices = {}, []
    all_images, all_labels, splits = data_digits.arrays()
    for split in data.SPLITS:
        x, y = collect(data.load("digits", split, batch_size=500, shuffle=False))
        sizes[split] = len(x)
        # the loaded split is exactly the indexed subset, in order
        np.testing.assert_array_equal(x, all_images[splits[split]] / 16.0)
        np.testing.assert_array_equal(y, all_labels[splits[split]])
        indices.append(splits[split])
        # stratified: every class present, roughly proportionally
        counts = np.bincount(y, minlength=10)
        assert counts.min() >= 0.8 * len(y) / 10
    assert sizes == {"train": 1_257, "validation": 180, "test": 360}
    assert sum(sizes.values()) == 1_797
    allidx = np.concatenate(indices)
    assert len(np.unique(allidx)) == 1_797  # disjoint and complete
    # pinned: the split must never change between runs, machines or library versions
    fingerprints = {
        s: hashlib.sha256(splits[s].astype("<i8").tobytes()).hexdigest()[:16]
        for s in data.SPLITS
    }
    assert fingerprints == {
        "train": "446b7c9ca23784fa",
        "validation": "8a75c8633915a1e0",
        "test": "d040d215f6d53853",
    }


def test_digits_same_on_two_calls_and_seeded_shuffle():
    a = collect(data.load("digits", "test", batch_size=100))
    b = collect(data.load("digits", "test", batch_size=100))
    np.testing.assert_array_equal(a[0], b[0])  # test split: not shuffled by default
    ds1 = data.load("digits", "train", batch_size=256, seed=3)
    ds2 = data.load("digits", "train", batch_size=256, seed=3)
    e1, e2 = collect(ds1), collect(ds2)
    np.testing.assert_array_equal(e1[1], e2[1])  # same seed -> same order
    e1b = collect(ds1)  # second epoch of the same dataset is reshuffled
    assert not np.array_equal(e1[1], e1b[1])
    assert sorted(e1[1].tolist()) == sorted(e1b[1].tolist())
    e3 = collect(data.load("digits", "train", batch_size=256, seed=4))
    assert not np.array_equal(e1[1], e3[1])


def test_digits_n_examples_and_drop_remainder():
    first = collect(data.load("digits", "train", batch_size=1000, shuffle=False))
    x, y = collect(data.load("digits", "train", batch_size=7, shuffle=False, n_examples=20))
    assert x.shape == (20, 8, 8, 1)
    np.testing.assert_array_equal(x, first[0][:20])  # first n, before shuffling
    # with shuffling: the same 20 examples, permuted
    xs, ys = collect(data.load("digits", "train", batch_size=7, n_examples=20))
    assert sorted(ys.tolist()) == sorted(y.tolist())
    batches = [b[0].shape[0] for b in data.load("digits", "train", batch_size=7, n_examples=20)]
    assert batches == [7, 7, 6]
    ds = data.load("digits", "train", batch_size=7, n_examples=20, drop_remainder=True)
    assert [b[0].shape[0] for b in ds] == [7, 7]
    assert ds.element_spec[0].shape.as_list() == [7, 8, 8, 1]
    # n_examples larger than the split: whole split
    x, _ = collect(data.load("digits", "validation", batch_size=500, n_examples=10_000))
    assert len(x) == 180
    # cache=False works the same
    x2, _ = collect(data.load("digits", "validation", batch_size=500, cache=False))
    np.testing.assert_array_equal(x, x2)


# ----------------------------------------------------------------------------- bad arguments


@pytest.mark.parametrize(
    "kwargs, param",
    [
        (dict(name="cifar-10"), "name"),
        (dict(name="CIFAR10"), "name"),
        (dict(name=None), "name"),
        (dict(split="val"), "split"),
        (dict(split="train[:10%]"), "split"),
        (dict(batch_size=0), "batch_size"),
        (dict(batch_size=-3), "batch_size"),
        (dict(batch_size=2.5), "batch_size"),
        (dict(batch_size=True), "batch_size"),
        (dict(n_examples=0), "n_examples"),
        (dict(shuffle="yes"), "shuffle"),
        (dict(augment=1), "augment"),
        (dict(augment=True), "augment"),  # no augmentation defined for digits
        (dict(seed=1.5), "seed"),
        (dict(drop_remainder=None), "drop_remainder"),
    ],
)
def test_bad_arguments_name_the_parameter(kwargs, param):
    kwargs = {"name": "digits", **kwargs}
    with pytest.raises(ValueError, match=param):
        data.load(**kwargs)


def test_unknown_name_lists_valid_and_close_matches():
    with pytest.raises(ValueError) as e:
        data.load("cifar-10")
    msg = str(e.value)
    assert "'cifar10'" in msg and "'digits'" in msg and "Did you mean 'cifar10'" in msg
    with pytest.raises(ValueError, match="Did you mean 'svhn_cropped'"):
        data.info("svhn")
    with pytest.raises(ValueError, match="Did you mean split='validation'"):
        data.load("digits", "val")


def test_validation_happens_before_any_loading(monkeypatch, tmp_path):
    def boom(*a, **k):
        raise AssertionError("loaded data before validating arguments")

    monkeypatch.setattr(tfds_source, "dataset", boom)
    monkeypatch.setattr(data_digits, "arrays", boom)
    monkeypatch.setattr(sources, "locate", boom)
    with pytest.raises(ValueError, match="batch_size"):
        data.load("cifar10", "train", batch_size=0, data_dir=str(tmp_path))
    with pytest.raises(ValueError, match="n_examples"):
        data.load("cifar10", "test", n_examples=-1, data_dir=str(tmp_path))
    with pytest.raises(ValueError, match="seed"):
        data.load("fashion_mnist", "test", seed="0")
    with pytest.raises(ValueError, match="augment"):
        data.load("mnist", "train", augment=True)
    with pytest.raises(ValueError, match="shuffle"):
        data.load("digits", "train", shuffle=1)


# ----------------------------------------------------------------------------- tfds (mocked)


@contextlib.contextmanager
def _mocked(num_examples=10):
    """tfds' mock data; its download_and_prepare does nothing, and the host a download would
    come from counts as reachable (no connection is opened)."""
    with tfds.testing.mock_data(num_examples=num_examples,
                                policy=tfds.testing.MockPolicy.USE_CODE), \
            mock.patch.object(download, "check_reachable", lambda url: None):
        yield


def test_tfds_split_strings():
    assert tfds_source.split_string("cifar10", "train") == "train[:49000]"
    assert tfds_source.split_string("cifar10", "validation") == "train[49000:]"
    assert tfds_source.split_string("cifar10", "test") == "test"
    assert tfds_source.split_string("svhn_cropped", "train") == "train[:72257]"
    assert tfds_source.split_string("mnist", "validation") == "train[59000:]"


def test_cifar10_mocked_all_splits(no_network):
    with _mocked(10):
        for split in data.SPLITS:
            ds = data.load("cifar10", split, batch_size=4)
            assert ds.element_spec[0].dtype == tf.float32
            assert ds.element_spec[1].dtype == tf.int32
            x, y = collect(ds)
            assert x.shape == (10, 32, 32, 3) and x.dtype == np.float32
            assert 0.0 <= x.min() and x.max() <= 1.0 and x.max() > 0.5
            assert y.dtype == np.int32 and 0 <= y.min() and y.max() < 10
        x, _ = collect(data.load("cifar10", "test", batch_size=4, n_examples=6))
        assert x.shape == (6, 32, 32, 3)


def _matches_crop(aug, orig, allow_flip):
    """True if `aug` is a 4-pixel zero-padded, randomly cropped (maybe flipped) `orig`."""
    h, w = orig.shape[:2]
    padded = np.pad(orig, ((4, 4), (4, 4), (0, 0)))
    candidates = [padded, padded[:, ::-1]] if allow_flip else [padded]
    for p in candidates:
        for i in range(9):
            for j in range(9):
                if np.array_equal(p[i:i + h, j:j + w], aug):
                    return True
    return False


@pytest.mark.parametrize("name, flip", [("cifar10", True), ("svhn_cropped", False)])
def test_augmentation_is_pad_crop_flip_and_keeps_range(name, flip, no_network):
    with _mocked(12):
        plain, y0 = collect(data.load(name, "train", batch_size=12, shuffle=False,
                                       augment=False))
        ds = data.load(name, "train", batch_size=5, shuffle=False, seed=1)  # augment default
        aug1, y1 = collect(ds)
        aug2, _ = collect(ds)
        aug3, _ = collect(data.load(name, "train", batch_size=5, shuffle=False, seed=1))
        val, _ = collect(data.load(name, "validation", batch_size=12))
    np.testing.assert_array_equal(y0, y1)
    assert aug1.shape == plain.shape == (12, 32, 32, 3) and aug1.dtype == np.float32
    assert aug1.min() >= 0.0 and aug1.max() <= 1.0
    assert not np.array_equal(aug1, plain)  # something moved
    for a, p in zip(aug1, plain):  # for SVHN: never flipped
        assert _matches_crop(a, p, allow_flip=flip)
    if flip:  # some images are flipped (fixed seed: deterministic)
        assert any(not _matches_crop(a, p, allow_flip=False) for a, p in zip(aug1, plain))
    assert not np.array_equal(aug1, aug2)  # new augmentation each epoch
    np.testing.assert_array_equal(aug1, aug3)  # reproducible given the seed
    np.testing.assert_array_equal(val, plain)  # validation: no augmentation, no shuffle



def test_pipelines_run_without_tf_data_autotuning_and_give_the_same_batches(no_network):
    """Autotuning's model thread delays the destruction of an iterator not read to its end
    (an idle stall per epoch of `fit`), so `load` switches it off; the
    batches (shuffle and augmentation included) must be those of the autotuned pipeline."""
    autotuned = tf.data.Options()
    autotuned.autotune.enabled = True
    with _mocked(12):
        for name, split in (("digits", "train"), ("digits", "test"), ("cifar10", "train")):
            ds = data.load(name, split, batch_size=5, seed=3)
            assert ds.options().autotune.enabled is False
            # Its own pipeline: each iterator of one pipeline draws the next epoch's order.
            reference = data.load(name, split, batch_size=5, seed=3).with_options(autotuned)
            assert reference.options().autotune.enabled is True
            for _ in range(2):  # two epochs: reshuffled and re-augmented alike
                for ours, theirs in zip(collect(ds), collect(reference)):
                    np.testing.assert_array_equal(ours, theirs)

def _looks_like_prepared_tfds(root, name, version="3.0.1"):
    """The layout `locate` takes for a prepared tfds copy (the content is mocked)."""
    (root / name / version).mkdir(parents=True)
    (root / name / version / "dataset_info.json").write_text("{}")
    return str(root)


def test_explicit_augment_on_eval_split_and_mnist_has_no_augment(no_network, tmp_path):
    with _mocked(4):
        x, _ = collect(data.load("cifar100", "test", batch_size=4, augment=True))
        assert x.shape == (4, 32, 32, 3)
        tfds_dir = _looks_like_prepared_tfds(tmp_path, "fashion_mnist")
        x, _ = collect(data.load("fashion_mnist", "train", batch_size=4, data_dir=tfds_dir))
        assert x.shape == (4, 28, 28, 1)
        with pytest.raises(ValueError, match="augment"):
            data.load("mnist", "train", augment=True)


# ----------------------------------------------------------------------------- offline errors


def test_missing_tfds_dataset_raises_clear_error(tmp_path, no_network):
    t0 = time.time()
    with pytest.raises(data.DatasetNotAvailableError) as e:
        data.load("cifar10", "train", data_dir=str(tmp_path), download=False)
    assert time.time() - t0 < 10
    assert isinstance(e.value, FileNotFoundError)
    msg = str(e.value)
    for needle in ("cifar10", str(tmp_path), "data_dir=", "--data_dir", "TFDS_DATA_DIR",
                   "tfds build cifar10", "download=True", "digits"):
        assert needle in msg, (needle, msg)


@pytest.fixture
def no_local_copies(monkeypatch, tmp_path_factory):
    """No Keras cache, tfds folder or system folder of this machine is searched."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("KERAS_HOME", raising=False)
    monkeypatch.setenv("TFDS_DATA_DIR", str(home / "tensorflow_datasets"))
    monkeypatch.setattr(sources, "SYSTEM_DIRS", {"mnist": (), "fashion_mnist": ()})


def test_missing_dataset_uses_env_var_and_reports_versions(tmp_path, monkeypatch, no_network,
                                                           no_local_copies):
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path))
    (tmp_path / "mnist" / "0.0.1").mkdir(parents=True)
    with pytest.raises(data.DatasetNotAvailableError) as e:
        data.load("mnist", "test", download=False)
    msg = str(e.value)
    assert str(tmp_path) in msg and "$TFDS_DATA_DIR" in msg
    assert "0.0.1" in msg  # the wrong version found is reported
    # data_dir pointing at the dataset folder itself gets a hint
    with pytest.raises(data.DatasetNotAvailableError, match="contains"):
        data.load("mnist", "test", data_dir=str(tmp_path / "mnist"), download=False)


# ----------------------------------------------------------------------------- tfds (real files)


@pytest.fixture
def tiny_prepared_mnist(tmp_path, monkeypatch):
    """A real, prepared tfds `mnist` (3.0.1 layout) with 60 train / 20 test random images,
    written offline with tfds' TfDataBuilder; split sizes in keras_sgn.data patched to match."""
    import importlib.resources

    # tfds' download_and_prepare touches `importlib_resources` (an etils[epath] extra that is
    # not installed in this venv); the stdlib module provides what it needs.
    monkeypatch.setitem(sys.modules, "importlib_resources",
                        sys.modules.get("importlib_resources", importlib.resources))
    ref = tfds.builder("mnist", data_dir=str(tmp_path))
    rng = np.random.RandomState(0)
    images = {"train": rng.randint(0, 256, (60, 28, 28, 1)).astype(np.uint8),
              "test": rng.randint(0, 256, (20, 28, 28, 1)).astype(np.uint8)}
    splits = {k: tf.data.Dataset.from_tensor_slices(
        {"image": v, "label": np.arange(len(v)) % 10}) for k, v in images.items()}
    tfds.dataset_builders.TfDataBuilder(
        name="mnist", version=str(ref.version), split_datasets=splits,
        features=ref.info.features, data_dir=str(tmp_path)).download_and_prepare()
    monkeypatch.setitem(catalog.ORIGINAL_SIZES, "mnist", {"train": 60, "test": 20})
    monkeypatch.setattr(catalog, "VALIDATION_SIZE", 10)
    catalog.cached_info.cache_clear()
    yield tmp_path
    catalog.cached_info.cache_clear()


def test_real_tfds_files_splits_disjoint(tiny_prepared_mnist, monkeypatch, no_network):
    d = str(tiny_prepared_mnist)
    assert dict(data.info("mnist").num_examples) == {"train": 50, "validation": 10, "test": 20}
    got = {}
    for split in data.SPLITS:
        x, y = collect(data.load("mnist", split, data_dir=d, batch_size=16, shuffle=False))
        assert x.dtype == np.float32 and y.dtype == np.int32 and x.shape[1:] == (28, 28, 1)
        assert x.min() >= 0.0 and x.max() <= 1.0
        got[split] = x
    assert {k: len(v) for k, v in got.items()} == {"train": 50, "validation": 10, "test": 20}
    train_keys = {a.tobytes() for a in got["train"]}
    val_keys = {a.tobytes() for a in got["validation"]}
    assert len(train_keys) == 50 and len(val_keys) == 10 and not train_keys & val_keys
    # TFDS_DATA_DIR is honoured when data_dir is not given; shuffled train has the same images
    monkeypatch.setenv("TFDS_DATA_DIR", d)
    xs, _ = collect(data.load("mnist", "train", batch_size=16, n_examples=50))
    assert {a.tobytes() for a in xs} == train_keys
    assert not np.array_equal(xs, got["train"])
