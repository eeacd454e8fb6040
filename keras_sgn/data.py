"""Datasets for keras-sgn: tf.data pipelines of float32 images in [0, 1].

Conventions (DESIGN.md section 4):

* Images are float32 in **[0, 1]**, NHWC. Mean/std normalisation is *not* applied here; it is
  a layer inside the model, so that the adversarial budget epsilon is in pixel units. The
  per-channel statistics are exposed through :func:`info` for building that layer.
* Labels are int32 class indices.
* Every dataset has three splits: ``"train"``, ``"validation"`` (a fixed held-out part of the
  original training set, never seen by ``"train"``) and ``"test"`` (the original test set).

Supported datasets (:data:`DATASETS`):

* tensorflow-datasets: ``cifar10``, ``cifar100``, ``svhn_cropped``, ``mnist``,
  ``fashion_mnist``. These are never downloaded: they must already be prepared in
  ``data_dir`` (or ``$TFDS_DATA_DIR``, or ``~/tensorflow_datasets``), otherwise
  :class:`DatasetNotAvailableError` is raised with instructions.
* ``digits``: scikit-learn's bundled 8x8 handwritten digits (1,797 real images, values 0..16,
  loaded from the scikit-learn installation, no network), as ``(8, 8, 1)`` images ``value / 16``.

Example::

    import keras_sgn.data
    train = keras_sgn.data.load("digits", "train", batch_size=64)
    for images, labels in train.take(1):
        print(images.shape, labels.shape)   # (64, 8, 8, 1) (64,)
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import os
import types
from typing import Mapping, Optional, Tuple

import numpy as np
import tensorflow as tf

__all__ = [
    "DATASETS",
    "SPLITS",
    "DatasetInfo",
    "DatasetNotAvailableError",
    "info",
    "load",
]

#: Names accepted by :func:`info` and :func:`load`.
DATASETS: Tuple[str, ...] = (
    "cifar10",
    "cifar100",
    "svhn_cropped",
    "mnist",
    "fashion_mnist",
    "digits",
)

#: Splits accepted by :func:`load`.
SPLITS: Tuple[str, ...] = ("train", "validation", "test")

# Number of images held out from the end of the original tfds "train" split as "validation".
# The tfds training splits are stored in a fixed, shuffled order, so the last N images are a
# fixed, class-mixed sample.
_TFDS_VALIDATION_SIZE = 1_000

# Original sizes of the tfds splits we use (the "extra" split of SVHN is not used).
_TFDS_SIZES = {
    "cifar10": {"train": 50_000, "test": 10_000},
    "cifar100": {"train": 50_000, "test": 10_000},
    "svhn_cropped": {"train": 73_257, "test": 26_032},
    "mnist": {"train": 60_000, "test": 10_000},
    "fashion_mnist": {"train": 60_000, "test": 10_000},
}

# digits: fixed stratified split of the 1,797 images (seeded, never changes).
_DIGITS_SIZES = {"train": 1_257, "validation": 180, "test": 360}
_DIGITS_SPLIT_SEED = 0

# Augmentation: zero padding of this many pixels, then a random crop back to the original size.
_PAD = 4

# Static description of each dataset. "augment" is the kind of training augmentation:
# "crop_flip" (pad + random crop + random horizontal flip), "crop" (pad + random crop; SVHN
# digits are not mirror symmetric) or None.
_SPECS = {
    "cifar10": dict(
        num_classes=10,
        image_shape=(32, 32, 3),
        mean=(0.4914, 0.4822, 0.4465),
        std=(0.2471, 0.2435, 0.2616),
        augment="crop_flip",
    ),
    "cifar100": dict(
        num_classes=100,
        image_shape=(32, 32, 3),
        mean=(0.5071, 0.4865, 0.4409),
        std=(0.2673, 0.2564, 0.2762),
        augment="crop_flip",
    ),
    "svhn_cropped": dict(
        num_classes=10,
        image_shape=(32, 32, 3),
        mean=(0.4377, 0.4438, 0.4728),
        std=(0.1980, 0.2010, 0.1970),
        augment="crop",
    ),
    "mnist": dict(
        num_classes=10,
        image_shape=(28, 28, 1),
        mean=(0.1307,),
        std=(0.3081,),
        augment=None,
    ),
    "fashion_mnist": dict(
        num_classes=10,
        image_shape=(28, 28, 1),
        mean=(0.2860,),
        std=(0.3530,),
        augment=None,
    ),
    "digits": dict(
        num_classes=10,
        image_shape=(8, 8, 1),
        mean=None,  # computed from the training split, see _digits_stats()
        std=None,
        augment=None,
    ),
}


class DatasetNotAvailableError(FileNotFoundError):
    """A tensorflow-datasets dataset is not prepared locally and downloading is disabled."""


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """Static description of a supported dataset.

    Attributes:
        name: Dataset name, one of :data:`DATASETS`.
        num_classes: Number of classes.
        image_shape: ``(height, width, channels)`` of one image.
        mean: Per-channel mean of the training images scaled to [0, 1].
        std: Per-channel standard deviation of the training images scaled to [0, 1].
        num_examples: Number of examples in each split (``"train"``, ``"validation"``,
            ``"test"``) as loaded by :func:`load`.
        augment: Whether :func:`load` augments the training split by default.
        flip: Whether that augmentation includes random horizontal flips (CIFAR) or only
            pad-and-crop (SVHN).
    """

    name: str
    num_classes: int
    image_shape: Tuple[int, int, int]
    mean: Tuple[float, ...]
    std: Tuple[float, ...]
    num_examples: Mapping[str, int] = dataclasses.field(hash=False)
    augment: bool
    flip: bool = False


# --------------------------------------------------------------------------------------------
# Argument validation
# --------------------------------------------------------------------------------------------


def _check_name(name) -> str:
    if isinstance(name, str) and name in _SPECS:
        return name
    valid = ", ".join(repr(n) for n in DATASETS)
    msg = f"name={name!r} is not a supported dataset; valid names are: {valid}."
    if isinstance(name, str):
        lowered = {n.lower(): n for n in DATASETS}
        key = name.lower().replace("-", "")
        close = difflib.get_close_matches(key, list(lowered), n=3, cutoff=0.5)
        if close:
            msg += " Did you mean " + " or ".join(repr(lowered[c]) for c in close) + "?"
    raise ValueError(msg)


def _check_split(split) -> str:
    if isinstance(split, str) and split in SPLITS:
        return split
    msg = f"split={split!r} is not valid; use one of " + ", ".join(repr(s) for s in SPLITS) + "."
    if isinstance(split, str):
        aliases = {"val": "validation", "valid": "validation", "dev": "validation",
                   "eval": "test", "training": "train"}
        guess = aliases.get(split.lower()) or next(
            iter(difflib.get_close_matches(split.lower(), SPLITS, n=1, cutoff=0.5)), None)
        if guess:
            msg += f" Did you mean split={guess!r}?"
        if "[" in split or "%" in split:
            msg += (" tfds slicing syntax is not accepted here; use n_examples= to take the "
                    "first n examples of a split.")
    raise ValueError(msg)


def _is_int(x) -> bool:
    return isinstance(x, (int, np.integer)) and not isinstance(x, (bool, np.bool_))


def _check_positive_int(value, param: str, example: str, allow_none: bool = False):
    if value is None and allow_none:
        return None
    if not _is_int(value) or value < 1:
        extra = " or None" if allow_none else ""
        raise ValueError(
            f"{param} must be a positive integer{extra}, got {value!r}; pass e.g. {param}={example}."
        )
    return int(value)


def _check_optional_bool(value, param: str):
    if value is None or isinstance(value, (bool, np.bool_)):
        return None if value is None else bool(value)
    raise ValueError(
        f"{param} must be True, False or None (None = the default for the split), got {value!r}."
    )


# --------------------------------------------------------------------------------------------
# info()
# --------------------------------------------------------------------------------------------


def info(name: str) -> DatasetInfo:
    """Returns the static description of a dataset (no data is loaded, except for ``digits``,
    whose mean/std are computed once from its small bundled training split).

    Args:
        name: One of :data:`DATASETS`.

    Returns:
        A :class:`DatasetInfo`.

    Raises:
        ValueError: if ``name`` is not supported.

    Example::

        >>> keras_sgn.data.info("cifar10").mean
        (0.4914, 0.4822, 0.4465)
    """
    return _info(_check_name(name))


@functools.lru_cache(maxsize=None)
def _info(name: str) -> DatasetInfo:
    spec = _SPECS[name]
    if name == "digits":
        mean, std = _digits_stats()
        sizes = dict(_DIGITS_SIZES)
    else:
        mean, std = spec["mean"], spec["std"]
        orig = _TFDS_SIZES[name]
        sizes = {
            "train": orig["train"] - _TFDS_VALIDATION_SIZE,
            "validation": _TFDS_VALIDATION_SIZE,
            "test": orig["test"],
        }
    return DatasetInfo(
        name=name,
        num_classes=spec["num_classes"],
        image_shape=tuple(spec["image_shape"]),
        mean=tuple(float(m) for m in mean),
        std=tuple(float(s) for s in std),
        num_examples=types.MappingProxyType(sizes),
        augment=spec["augment"] is not None,
        flip=spec["augment"] == "crop_flip",
    )


# --------------------------------------------------------------------------------------------
# digits (scikit-learn, bundled)
# --------------------------------------------------------------------------------------------


def _allocate(counts: np.ndarray, total: int) -> np.ndarray:
    """Splits ``total`` among classes proportionally to ``counts`` (largest remainder)."""
    exact = counts * (total / counts.sum())
    alloc = np.floor(exact).astype(np.int64)
    order = np.argsort(-(exact - alloc), kind="stable")  # ties -> lower class index first
    alloc[order[: total - alloc.sum()]] += 1
    return alloc


@functools.lru_cache(maxsize=1)
def _digits_arrays():
    """Returns ``(images uint8 (N, 8, 8, 1) in 0..16, labels int32 (N,), {split: indices})``.

    The split is stratified by class and uses the legacy ``np.random.RandomState`` stream
    (frozen by NumPy's compatibility policy), so it is identical across runs, machines and
    library versions. Indices inside each split are sorted (original dataset order).
    """
    from sklearn.datasets import load_digits  # local import: only needed for "digits"

    bunch = load_digits()
    images = np.asarray(bunch.images).round().astype(np.uint8)[..., None]
    labels = np.asarray(bunch.target).astype(np.int32)
    assert images.shape == (1_797, 8, 8, 1), images.shape

    rng = np.random.RandomState(_DIGITS_SPLIT_SEED)
    classes = np.arange(10)
    per_class = [rng.permutation(np.flatnonzero(labels == c)) for c in classes]
    counts = np.array([len(p) for p in per_class])
    n_test = _allocate(counts, _DIGITS_SIZES["test"])
    n_val = _allocate(counts - n_test, _DIGITS_SIZES["validation"])
    parts = {"test": [], "validation": [], "train": []}
    for perm, t, v in zip(per_class, n_test, n_val):
        parts["test"].append(perm[:t])
        parts["validation"].append(perm[t:t + v])
        parts["train"].append(perm[t + v:])
    splits = {k: np.sort(np.concatenate(v)) for k, v in parts.items()}
    for k, n in _DIGITS_SIZES.items():
        assert len(splits[k]) == n, (k, len(splits[k]))
    return images, labels, splits


def _digits_stats():
    images, _, splits = _digits_arrays()
    x = images[splits["train"]].astype(np.float64) / 16.0
    return tuple(x.mean(axis=(0, 1, 2))), tuple(x.std(axis=(0, 1, 2)))


# --------------------------------------------------------------------------------------------
# tensorflow-datasets
# --------------------------------------------------------------------------------------------


def _resolve_data_dir(data_dir) -> str:
    """``data_dir`` argument, else ``$TFDS_DATA_DIR`` (read now), else ``~/tensorflow_datasets``."""
    if data_dir is None:
        data_dir = os.environ.get("TFDS_DATA_DIR") or os.path.join("~", "tensorflow_datasets")
    return os.path.abspath(os.path.expanduser(os.fspath(data_dir)))


def _tfds_split(name: str, split: str) -> str:
    """The tfds split string for one of our splits (absolute indices, no rounding)."""
    n_train = _TFDS_SIZES[name]["train"] - _TFDS_VALIDATION_SIZE
    return {
        "train": f"train[:{n_train}]",
        "validation": f"train[{n_train}:]",
        "test": "test",
    }[split]


def _not_available(name: str, data_dir: str, given: bool, builder) -> DatasetNotAvailableError:
    if given:
        source = "given as data_dir="
    elif os.environ.get("TFDS_DATA_DIR"):
        source = "from $TFDS_DATA_DIR"
    else:
        source = "the default; neither data_dir= nor $TFDS_DATA_DIR was set"
    expected = getattr(builder, "data_dir", None)
    lines = [
        f"Dataset {name!r} is not prepared in {data_dir!r} ({source}"
        + (f"; expected files in {str(expected)!r}" if expected else "")
        + "). keras_sgn never downloads data (download=False).",
    ]
    try:
        present = (sorted(d for d in os.listdir(data_dir)
                          if os.path.isdir(os.path.join(data_dir, d)))
                   if os.path.isdir(data_dir) else None)
    except OSError:
        present = None
    if present is None:
        lines.append(f"The directory {data_dir!r} does not exist.")
    else:
        shown = ", ".join(present[:10]) + (", ..." if len(present) > 10 else "")
        lines.append(f"Its subfolders are: {shown or '(none)'}.")
        versions = os.path.join(data_dir, name)
        if os.path.isdir(versions):
            lines.append(
                f"Found {versions!r} with versions {sorted(os.listdir(versions))}, but this "
                f"tensorflow-datasets expects version {str(getattr(builder, 'version', '?'))}."
            )
    if os.path.basename(data_dir.rstrip(os.sep)) == name:
        lines.append(
            f"Note: data_dir must be the folder that *contains* {name!r}/, i.e. "
            f"{os.path.dirname(data_dir.rstrip(os.sep))!r}."
        )
    lines.append(
        "To fix: pass data_dir= (or --data_dir on the command line) pointing at a folder that "
        f"contains a prepared '{name}/<version>/' directory, or set the TFDS_DATA_DIR "
        "environment variable to it. To create it, on a machine with network run "
        f"`tfds build {name}` or `tfds.load({name!r}, download=True)`, then copy "
        f"~/tensorflow_datasets/{name} into that folder. Without any data, use name='digits' "
        "(bundled with scikit-learn)."
    )
    return DatasetNotAvailableError(" ".join(lines))


def _tfds_source(name: str, split: str, data_dir) -> tf.data.Dataset:
    """(uint8 image, int64 label) examples of a prepared tfds dataset, in stored order."""
    import tensorflow_datasets as tfds  # local import: only needed for tfds datasets

    resolved = _resolve_data_dir(data_dir)
    builder = tfds.builder(name, data_dir=resolved)
    try:
        return builder.as_dataset(
            split=_tfds_split(name, split),
            as_supervised=True,
            shuffle_files=False,
            read_config=tfds.ReadConfig(try_autocache=False),
        )
    except AssertionError as e:  # tfds raises AssertionError("... could not find data in ...")
        if "could not find data" in str(e) or not builder.is_prepared():
            raise _not_available(name, resolved, data_dir is not None, builder) from None
        raise


# --------------------------------------------------------------------------------------------
# load()
# --------------------------------------------------------------------------------------------


def _augment_fn(image_shape, flip: bool, seed: int):
    """Per-example pad(zero, 4) + random crop [+ random horizontal flip] on uint8 images,
    with stateless ops: the randomness comes from a per-example seed, so the result does not
    depend on the order in which parallel map calls run."""
    h, w, c = image_shape
    seed = tf.constant(seed, tf.int64)

    def fn(r, image, label):
        crop_seed, flip_seed = tf.unstack(
            tf.random.experimental.stateless_split(tf.stack([r, seed]), num=2))
        padded = tf.pad(image, [[_PAD, _PAD], [_PAD, _PAD], [0, 0]])  # zero padding
        image = tf.image.stateless_random_crop(padded, size=[h, w, c], seed=crop_seed)
        if flip:
            image = tf.image.stateless_random_flip_left_right(image, seed=flip_seed)
        return image, label

    return fn


def load(
    name: str,
    split: str = "train",
    batch_size: int = 128,
    data_dir: Optional[str] = None,
    shuffle: Optional[bool] = None,
    augment: Optional[bool] = None,
    seed: int = 0,
    n_examples: Optional[int] = None,
    drop_remainder: bool = False,
    cache: bool = True,
) -> tf.data.Dataset:
    """Loads a dataset split as a batched ``tf.data.Dataset`` of ``(images, labels)``.

    ``images`` are float32 in [0, 1] with shape ``(batch, H, W, C)``; ``labels`` are int32 with
    shape ``(batch,)``. No normalisation is applied (see :func:`info` for mean/std).

    Pipeline: read uint8 images -> take ``n_examples`` -> cache (uint8, in memory) ->
    shuffle(seed, reshuffled each epoch) -> augment (parallel, stateless, seeded) ->
    batch -> convert to float32 [0, 1] -> prefetch.

    Augmentation (CIFAR10/100: pad 4 with zeros + random crop + random horizontal flip;
    SVHN: pad 4 with zeros + random crop, no flip) is applied to each image independently.
    With a fixed ``seed`` the sequence of epochs (order and augmentation) is reproducible;
    each epoch differs from the previous one.

    Args:
        name: One of :data:`DATASETS`.
        split: ``"train"``, ``"validation"`` (fixed held-out part of the original training
            set, disjoint from ``"train"``) or ``"test"``.
        batch_size: Images per batch, >= 1.
        data_dir: Folder with prepared tensorflow-datasets data (containing e.g.
            ``cifar10/3.0.2/``). Default: ``$TFDS_DATA_DIR``, else ``~/tensorflow_datasets``.
            Ignored for ``digits``. Nothing is ever downloaded.
        shuffle: Shuffle examples each epoch. Default: True for ``"train"``, False otherwise.
        augment: Apply the training augmentation. Default: ``info(name).augment`` for
            ``"train"``, False otherwise. ``True`` is an error for datasets without
            augmentation (MNIST-likes, digits).
        seed: Seed for shuffling and augmentation.
        n_examples: If given, only the first ``n_examples`` examples of the split (in its
            fixed stored order, before shuffling) are used. Larger values use the whole split.
        drop_remainder: Drop the last incomplete batch (gives a static batch dimension).
        cache: Cache the (uint8) examples in memory after the first epoch.

    Returns:
        A ``tf.data.Dataset`` yielding ``(images, labels)`` batches.

    Raises:
        ValueError: for an unknown ``name`` / ``split`` or invalid other arguments.
        DatasetNotAvailableError: (a ``FileNotFoundError``) if a tfds dataset is not prepared
            in the data directory.

    Example::

        >>> ds = keras_sgn.data.load("digits", "train", batch_size=64)
        >>> images, labels = next(iter(ds))
        >>> images.shape, images.dtype, labels.dtype
        (TensorShape([64, 8, 8, 1]), tf.float32, tf.int32)
    """
    # ---- validation, before any expensive work
    name = _check_name(name)
    split = _check_split(split)
    batch_size = _check_positive_int(batch_size, "batch_size", "128")
    n_examples = _check_positive_int(n_examples, "n_examples", "1000", allow_none=True)
    shuffle = _check_optional_bool(shuffle, "shuffle")
    augment = _check_optional_bool(augment, "augment")
    if not _is_int(seed):
        raise ValueError(f"seed must be an integer, got {seed!r}; pass e.g. seed=0.")
    seed = int(seed)
    for param, value in (("drop_remainder", drop_remainder), ("cache", cache)):
        if not isinstance(value, (bool, np.bool_)):
            raise ValueError(f"{param} must be True or False, got {value!r}.")
    if data_dir is not None and not isinstance(data_dir, (str, os.PathLike)):
        raise ValueError(f"data_dir must be a path (str or os.PathLike) or None, got {data_dir!r}.")

    ds_info = _info(name)
    if shuffle is None:
        shuffle = split == "train"
    if augment is None:
        augment = split == "train" and ds_info.augment
    if augment and not ds_info.augment:
        raise ValueError(
            f"augment=True, but no augmentation is defined for {name!r}; pass augment=False "
            "or None.")

    # ---- source: uint8 images, integer labels
    if name == "digits":
        images, labels, splits = _digits_arrays()
        idx = splits[split]
        ds = tf.data.Dataset.from_tensor_slices((images[idx], labels[idx]))
        scale = 16.0
        size = len(idx)
    else:
        ds = _tfds_source(name, split, data_dir)
        scale = 255.0
        size = ds_info.num_examples[split]
    if n_examples is not None:
        ds = ds.take(n_examples)
        size = min(size, n_examples)
    if cache:
        ds = ds.cache()
    if shuffle:
        ds = ds.shuffle(max(size, 1), seed=seed, reshuffle_each_iteration=True)
    if augment:
        aug = _augment_fn(ds_info.image_shape, ds_info.flip, seed)
        rand = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)
        ds = tf.data.Dataset.zip(rand, ds).map(
            lambda r, ex: aug(r, *ex),
            num_parallel_calls=tf.data.AUTOTUNE,
            deterministic=True,
        )
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)

    def to_float(x, y):
        return tf.cast(x, tf.float32) / scale, tf.cast(y, tf.int32)

    ds = ds.map(to_float, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)
