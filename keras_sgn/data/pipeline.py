"""``load()``: one split of a dataset as a batched, shuffled, augmented ``tf.data`` pipeline.

Pipeline: the dataset found on this machine or downloaded (:mod:`keras_sgn.data.download`) ->
uint8 examples of the split (in its fixed stored order) -> first ``n_examples`` -> cache
(uint8, in memory) -> shuffle (seeded, reshuffled each epoch) -> augment (parallel, stateless,
seeded) -> batch -> float32 in [0, 1] -> prefetch, with tf.data's autotuning off (see
``_without_autotune``).

Augmentation (CIFAR10/100: pad 4 with zeros + random crop + random horizontal flip; SVHN: pad 4
with zeros + random crop, no flip) is applied to each image independently. With a fixed
``seed`` the sequence of epochs (order and augmentation) is reproducible; each epoch differs
from the previous one.
"""

from __future__ import annotations

import os
from typing import Optional

import numpy as np
import tensorflow as tf

from keras_sgn.data import cache as array_cache
from keras_sgn.data import catalog, digits, idx, sources, tfds_source
from keras_sgn.data import download as download_mod
from keras_sgn.errors import ArgumentError

# Augmentation: zero padding of this many pixels, then a random crop back to the original size.
_PAD = 4
_UINT8_SCALE = 255.0


def _is_int(x) -> bool:
    return isinstance(x, (int, np.integer)) and not isinstance(x, (bool, np.bool_))


def _check_positive_int(value, param: str, example: str, allow_none: bool = False):
    if value is None and allow_none:
        return None
    if not _is_int(value) or value < 1:
        extra = " or None" if allow_none else ""
        raise ArgumentError(f"{param} must be a positive integer{extra}, got {value!r}; pass "
                            f"e.g. {param}={example}.")
    return int(value)


def _check_optional_bool(value, param: str):
    if value is None or isinstance(value, (bool, np.bool_)):
        return None if value is None else bool(value)
    raise ArgumentError(
        f"{param} must be True, False or None (None = the default for the split), got {value!r}."
    )


def _check_rest(seed, drop_remainder, cache_examples, data_dir, with_index=False) -> int:
    """Checks the remaining arguments of :func:`load`; returns ``seed`` as an int."""
    if not _is_int(seed):
        raise ArgumentError(f"seed must be an integer, got {seed!r}; pass e.g. seed=0.")
    for param, value in (("drop_remainder", drop_remainder), ("cache", cache_examples),
                         ("with_index", with_index)):
        if not isinstance(value, (bool, np.bool_)):
            raise ArgumentError(f"{param} must be True or False, got {value!r}.")
    if data_dir is not None and not isinstance(data_dir, (str, os.PathLike)):
        raise ArgumentError(
            f"data_dir must be a path (str or os.PathLike) or None, got {data_dir!r}.")
    return int(seed)


def _resolve_augment(augment, split: str, ds_info) -> bool:
    """``augment`` or its default for the split; True is an error where none is defined."""
    if augment is None:
        return split == "train" and ds_info.augment
    if augment and not ds_info.augment:
        raise ArgumentError(f"augment=True, but no augmentation is defined for {ds_info.name!r}; "
                            "pass augment=False or None.")
    return augment


def _augment_fn(image_shape, flip: bool, seed: int):
    """Per-example pad(zero, 4) + random crop [+ random horizontal flip] on uint8 images,
    with stateless ops: the randomness comes from a per-example seed, so the result does not
    depend on the order in which parallel map calls run."""
    h, w, c = image_shape
    seed = tf.constant(seed, tf.int64)

    def fn(r, image, label, *index):
        crop_seed, flip_seed = tf.unstack(
            tf.random.experimental.stateless_split(tf.stack([r, seed]), num=2))
        padded = tf.pad(image, [[_PAD, _PAD], [_PAD, _PAD], [0, 0]])  # zero padding
        image = tf.image.stateless_random_crop(padded, size=[h, w, c], seed=crop_seed)
        if flip:
            image = tf.image.stateless_random_flip_left_right(image, seed=flip_seed)
        return (image, label, *index)

    return fn


def split_arrays(source, split: str):
    """``(uint8 images, int32 labels)`` of one split of an ``"idx"``/``"npz"`` source, in tfds
    order: validation is the last :data:`~keras_sgn.data.catalog.VALIDATION_SIZE` images of
    the stored training split, as in tfds."""
    arrays = array_cache.arrays(source, sources.read)
    if split == "test":
        return arrays["test"]
    images, labels = arrays["train"]
    n_train = len(labels) - catalog.VALIDATION_SIZE
    part = slice(None, n_train) if split == "train" else slice(n_train, None)
    return images[part], labels[part]


#: ``order`` values of :func:`load`: the order the split is stored in, or the original
#: file order of the dataset's publication (the order "the first N test images" refers to).
ORDERS = ("stored", "original")


def _check_order(order, name: str, split: str) -> str:
    if order not in ORDERS:
        raise ArgumentError(f"order must be one of {ORDERS}. Received: order={order!r}.")
    if order == "original" and not (name == "digits" or (
            name in sources.LOCAL_FILE_DATASETS and split == "test")):
        raise ArgumentError(
            "order='original' (the publication's file order) is known for the test split of "
            f"{', '.join(sources.LOCAL_FILE_DATASETS)} and for digits. Received: order="
            f"'original' with {name!r} split {split!r}. Use order='stored'.")
    return order


def _in_original_order(ds, size: int, n_examples):
    """The first ``n_examples`` of a stored-order test split of MNIST / Fashion-MNIST, in
    the original IDX file order (tfds stores the test split shuffled; see ``idx.tfds_order``)."""
    images, labels = (np.stack(parts) for parts in zip(*ds.as_numpy_iterator()))
    order = np.argsort(idx.tfds_order("test", size))[:n_examples]
    return tf.data.Dataset.from_tensor_slices((images[order], labels[order])), len(order)


def _examples(name: str, split: str, data_dir, n_examples, order="stored"):
    """``(uint8 examples, number of examples, pixel scale, already in memory)``."""
    if order == "original" and name != "digits":  # digits are stored in original order
        ds, size, scale, _ = _examples(name, split, data_dir, None)
        return _in_original_order(ds, size, n_examples) + (scale, True)
    if name == "digits":
        arrays, scale = digits.split_arrays(split), digits.SCALE
    elif name in sources.LOCAL_FILE_DATASETS:
        source = sources.locate(name, data_dir)
        if source.kind == "tfds":
            ds = tfds_source.dataset(name, split, source.path, origin=source.place)
            return _first(ds, catalog.split_sizes(name)[split], n_examples) + (
                _UINT8_SCALE, False)
        arrays, scale = split_arrays(source, split), _UINT8_SCALE
    else:
        ds = tfds_source.dataset(name, split, data_dir)
        return _first(ds, catalog.split_sizes(name)[split], n_examples) + (_UINT8_SCALE, False)
    images, labels = (a[:n_examples] for a in arrays)
    return tf.data.Dataset.from_tensor_slices((images, labels)), len(labels), scale, True


def _first(ds, size: int, n_examples):
    if n_examples is None:
        return ds, size
    return ds.take(n_examples), min(size, n_examples)


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
    order: str = "stored",
    download: bool = True,
    with_index: bool = False,
) -> tf.data.Dataset:
    """Loads a dataset split as a batched ``tf.data.Dataset`` of ``(images, labels)``.

    ``images``: float32 in [0, 1], ``(batch, H, W, C)``, not normalised (:func:`info` has the
    mean/std); ``labels``: int32, ``(batch,)``. Pipeline: see :mod:`keras_sgn.data.pipeline`.

    Args:
        name: One of :data:`DATASETS`.
        split: ``"train"``, ``"validation"`` (the last 1,000 images of the stored original
            training set, never in ``"train"``; digits: a fixed stratified part) or ``"test"``.
        batch_size: Images per batch, >= 1.
        data_dir: ``mnist``/``fashion_mnist``: the first place searched (see :func:`locate`).
            Other tfds datasets: their prepared tfds folder (default ``$TFDS_DATA_DIR``, else
            ``~/tensorflow_datasets``); a dataset downloaded there goes to the Keras cache
            (``mnist``/``fashion_mnist``) or into this folder (tfds). Ignored for ``digits``.
        shuffle: Shuffle examples each epoch. Default: True for ``"train"``, False otherwise.
        augment: Apply the training augmentation. Default: ``info(name).augment`` for
            ``"train"``, False otherwise. True is an error for datasets without augmentation.
        seed: Seed for shuffling and augmentation.
        n_examples: Only the first ``n_examples`` of the split (fixed stored order, before
            shuffling). Larger values use the whole split.
        drop_remainder: Drop the last incomplete batch (gives a static batch dimension).
        cache: Cache the (uint8) examples in memory after the first epoch (arrays read from
            files, and digits, are in memory already).
        order: ``"stored"`` (tfds' order, the same from every source) or ``"original"``:
            the publication's file order, which "the first N test images" of the
            literature means (mnist / fashion_mnist test split; digits, stored so already).
        download: Download the dataset if no copy is found, as tensorflow-datasets and
            ``keras.datasets`` do (checked like a local copy, used only once complete; see
            :mod:`keras_sgn.data.download`). False: never open a network connection.
        with_index: Batches are ``(images, labels, index)``: ``index`` (int64) is each
            example's position in the split (in its fixed order, among the first
            ``n_examples``), whatever the shuffle: the key of per-example training
            state (``TrainingMethod.keyed_by_example``, e.g. ``sgn-memory``).

    Raises:
        ValueError: for an unknown ``name`` / ``split`` or invalid other arguments.
        DatasetNotAvailableError: (a ``FileNotFoundError``) if the data is not on this machine
            and could not be downloaded (no network within seconds) or ``download=False``.
        DatasetIntegrityError: (a ``ValueError``) if a copy found, or downloaded, is truncated
            or altered.

    Example::

        >>> ds = keras_sgn.data.load("digits", "train", batch_size=64)
        >>> images, labels = next(iter(ds))
        >>> images.shape, images.dtype, labels.dtype
        (TensorShape([64, 8, 8, 1]), tf.float32, tf.int32)
    """
    name, split = catalog.check_name(name), catalog.check_split(split)
    batch_size = _check_positive_int(batch_size, "batch_size", "128")
    n_examples = _check_positive_int(n_examples, "n_examples", "1000", allow_none=True)
    shuffle = _check_optional_bool(shuffle, "shuffle")
    augment = _check_optional_bool(augment, "augment")
    seed = _check_rest(seed, drop_remainder, cache, data_dir, with_index)
    ds_info = catalog.cached_info(name)
    shuffle = split == "train" if shuffle is None else shuffle
    augment = _resolve_augment(augment, split, ds_info)
    order = _check_order(order, name, split)
    download_mod.prepare(name, data_dir, download)
    ds, size, scale, in_memory = _examples(name, split, data_dir, n_examples, order)
    if with_index:
        ds = ds.enumerate().map(lambda i, example: (*example, i))
    return _batched(ds, size, scale, ds_info, batch_size, shuffle, augment, seed,
                    drop_remainder, cache and not in_memory)


def _batched(ds, size, scale, ds_info, batch_size, shuffle, augment, seed, drop_remainder,
             cache_examples) -> tf.data.Dataset:
    """The rest of :func:`load`'s pipeline, from uint8 examples to prefetched float batches."""
    if cache_examples:
        ds = ds.cache()
    if shuffle:
        ds = ds.shuffle(max(size, 1), seed=seed, reshuffle_each_iteration=True)
    if augment:
        aug = _augment_fn(ds_info.image_shape, ds_info.flip, seed)
        rand = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)
        ds = tf.data.Dataset.zip(rand, ds).map(
            lambda r, ex: aug(r, *ex), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)

    def to_float(x, y, *index):
        return (tf.cast(x, tf.float32) / scale, tf.cast(y, tf.int32), *index)

    ds = ds.map(to_float, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)
    return ds.with_options(_without_autotune())


def _without_autotune() -> tf.data.Options:
    """Options switching tf.data's autotuning off.

    Its model thread sleeps for a period that grows as the iterator lives, and destroying
    an iterator that was not read to its end waits for that thread to wake: each epoch of
    ``fit`` (which replaces its iterator after the epoch's steps) stalled for seconds with
    the CPU idle. On one core that was 40-50% of the wall time of a short-step training
    method (10 s of work and 9-10 s stalled per epoch; 20 s of work and ~20 s stalled for
    a two-pass one); without it, the same epochs run at 100% of the core. This pipeline
    is light (arrays in memory, a cast, a crop), so the fixed defaults (``AUTOTUNE``
    parallelism = the cores, a small prefetch buffer) lose nothing; the batches are the
    same, in the same order.
    """
    options = tf.data.Options()
    options.autotune.enabled = False
    return options
