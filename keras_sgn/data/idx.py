"""The original MNIST-family files: four IDX files (gzipped or not), or Keras' ``mnist.npz``.

Integrity: a file is accepted only if the sha256 of its *decompressed* IDX bytes is the
published one (the ``.gz`` bytes differ between mirrors, e.g. Debian recompresses them; the
contents do not). Every file is read and checked in full before any array is returned, so a
truncated or altered copy is an error that names the file, never a half-loaded dataset.

Order: tensorflow-datasets stores these datasets sorted by ``md5(split + str(index))`` of the
original index (its shuffling by hashed key, stable across tfds versions by design; checked
here against a tfds-prepared ``fashion_mnist`` 3.0.1). :func:`read` puts the arrays in that same
order, so the IDX files and a tfds copy give identical splits, validation part included.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import io
import os
import struct
import zipfile
import zlib

import numpy as np

from keras_sgn.data import catalog
from keras_sgn.data.errors import DatasetIntegrityError

#: The IDX files of each split: (images, labels), without the optional ``.gz``.
FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
ALL_FILES = FILES["train"] + FILES["test"]

#: sha256 of the decompressed IDX files. Fashion-MNIST: checked here against the files of the
#: Debian package dataset-fashion-mnist. MNIST: the values published alongside the original
#: files by many independent projects (no MNIST copy on this machine to check them against).
SHA256 = {
    "fashion_mnist": {
        "train-images-idx3-ubyte":
            "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
        "train-labels-idx1-ubyte":
            "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
        "t10k-images-idx3-ubyte":
            "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
        "t10k-labels-idx1-ubyte":
            "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
    },
    "mnist": {
        "train-images-idx3-ubyte":
            "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
        "train-labels-idx1-ubyte":
            "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
        "t10k-images-idx3-ubyte":
            "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
        "t10k-labels-idx1-ubyte":
            "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
    },
}

#: Keras' single-file copy (``keras.datasets.<name>.load_data()`` caches it) and the sha256
#: Keras itself pins for that file. Its arrays are also accepted when they rebuild IDX bytes
#: with the :data:`SHA256` values (a re-saved copy).
NPZ_FILES = {"mnist": "mnist.npz"}
NPZ_SHA256 = {"mnist": "731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1"}

_IMAGES_MAGIC, _LABELS_MAGIC = 0x0803, 0x0801


def find(folder: str, stem: str):
    """The path of ``stem.gz`` or ``stem`` in ``folder``, or None."""
    for candidate in (stem + ".gz", stem):
        path = os.path.join(folder, candidate)
        if os.path.isfile(path):
            return path
    return None


def _damaged(path: str, problem: str, hint: str) -> DatasetIntegrityError:
    return DatasetIntegrityError(f"{path}: {problem}. Nothing was loaded from it. {hint}")


def _decompressed(path: str, hint: str) -> bytes:
    try:
        if path.endswith(".gz"):
            with gzip.open(path, "rb") as f:
                return f.read()
        with open(path, "rb") as f:
            return f.read()
    except (EOFError, OSError, zlib.error) as e:  # truncated, bad magic, bad CRC, bad data
        raise _damaged(path, f"cannot be decompressed, it is truncated or corrupted ({e})",
                       hint) from None


def _idx_header(magic: int, shape) -> bytes:
    return struct.pack(">I" + "I" * len(shape), magic, *shape)


def _parse(data: bytes, path: str, hint: str) -> np.ndarray:
    """An IDX file of unsigned bytes -> array of its shape (header and length checked)."""
    if len(data) < 8 or data[:3] != b"\x00\x00\x08":
        raise _damaged(path, "is not an IDX file of unsigned bytes", hint)
    ndim = data[3]
    shape = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
    payload = memoryview(data)[4 + 4 * ndim:]
    if len(payload) != int(np.prod(shape)):
        raise _damaged(path, f"holds {len(payload)} bytes of data, but its header announces "
                             f"shape {shape}", hint)
    return np.frombuffer(payload, np.uint8).reshape(shape)


def _check_arrays(name: str, split: str, images, labels, where: str, hint: str):
    expected = catalog.ORIGINAL_SIZES[name][split]
    if (images.dtype != np.uint8 or images.shape != (expected, 28, 28)
            or labels.dtype != np.uint8 or labels.shape != (expected,) or labels.max() > 9):
        raise _damaged(where, f"the {split} arrays are {images.dtype}{images.shape} images and "
                              f"{labels.dtype}{labels.shape} labels, expected uint8 "
                              f"({expected}, 28, 28) and ({expected},) with labels 0..9", hint)


def read_folder(name: str, folder: str, hint: str) -> dict:
    """``{split: (uint8 images (N, 28, 28), uint8 labels (N,))}`` from the four IDX files,
    each checked against :data:`SHA256`; original file order."""
    out = {}
    for split, stems in FILES.items():
        parts = []
        for stem in stems:
            path = find(folder, stem)
            data = _decompressed(path, hint)
            digest = hashlib.sha256(data).hexdigest()
            if digest != SHA256[name][stem]:
                raise _damaged(path, f"the sha256 of its decompressed bytes is {digest}, "
                                     f"expected {SHA256[name][stem]} (an altered or "
                                     "different file)", hint)
            parts.append(_parse(data, path, hint))
        _check_arrays(name, split, *parts, folder, hint)
        out[split] = tuple(parts)
    return out


def _npz_arrays(name: str, path: str, hint: str) -> dict:
    try:
        with np.load(path, allow_pickle=False) as f:
            return {split: (np.asarray(f[f"x_{split}"]), np.asarray(f[f"y_{split}"]))
                    for split in FILES}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, zlib.error) as e:
        raise _damaged(path, f"cannot be read as Keras' {NPZ_FILES[name]} with x_train, "
                             f"y_train, x_test, y_test ({e})", hint) from None


def read_npz(name: str, path: str, hint: str) -> dict:
    """Like :func:`read_folder`, from Keras' ``.npz``: accepted if the file is the one Keras
    pins, or if its arrays rebuild IDX files with the :data:`SHA256` values."""
    with open(path, "rb") as f:
        pinned = hashlib.sha256(f.read()).hexdigest() == NPZ_SHA256[name]
    out = _npz_arrays(name, path, hint)
    for split, (images, labels) in out.items():
        _check_arrays(name, split, images, labels, path, hint)
        if pinned:
            continue
        for stem, array, magic in zip(FILES[split], (images, labels),
                                      (_IMAGES_MAGIC, _LABELS_MAGIC)):
            rebuilt = _idx_header(magic, array.shape) + np.ascontiguousarray(array).tobytes()
            if hashlib.sha256(rebuilt).hexdigest() != SHA256[name][stem]:
                raise _damaged(path, f"its {split} arrays differ from the original {stem} "
                                     "(sha256 mismatch): an altered or different file", hint)
    return out


@functools.lru_cache(maxsize=4)
def tfds_order(split: str, n: int) -> np.ndarray:
    """The original indices ``0..n-1`` in the order tensorflow-datasets stores ``split``
    (read-only; computed once)."""
    salt = split.encode()
    order = np.array(sorted(range(n), key=lambda i: hashlib.md5(salt + str(i).encode()).digest()),
                     dtype=np.int64)
    order.setflags(write=False)
    return order


def in_tfds_order(arrays: dict) -> dict:
    """``{split: (images (N, 28, 28, 1), int32 labels)}`` reordered as tfds stores them."""
    out = {}
    for split, (images, labels) in arrays.items():
        order = tfds_order(split, len(labels))
        out[split] = (images[order][..., None], labels[order].astype(np.int32))
    return out


def to_npz_bytes(arrays: dict) -> bytes:
    """The arrays of :func:`in_tfds_order` as the bytes of an uncompressed ``.npz``."""
    buffer = io.BytesIO()
    np.savez(buffer, **{f"{kind}_{split}": array for split, pair in arrays.items()
                        for kind, array in zip(("x", "y"), pair)})
    return buffer.getvalue()


def from_npz_bytes(payload: bytes) -> dict:
    """The inverse of :func:`to_npz_bytes`."""
    with np.load(io.BytesIO(payload), allow_pickle=False) as f:
        return {split: (f[f"x_{split}"], f[f"y_{split}"]) for split in FILES}
