"""scikit-learn's bundled 8x8 handwritten digits (1,797 real images, no network), split once.

Images are ``(8, 8, 1)`` uint8 with values 0..16 (:func:`keras_sgn.data.load` divides by 16).
"""

from __future__ import annotations

import functools

import numpy as np

#: Fixed stratified split of the 1,797 images (seeded, never changes).
SIZES = {"train": 1_257, "validation": 180, "test": 360}
SPLIT_SEED = 0
#: The value of a full-intensity pixel.
SCALE = 16.0


def _allocate(counts: np.ndarray, total: int) -> np.ndarray:
    """Splits ``total`` among classes proportionally to ``counts`` (largest remainder)."""
    exact = counts * (total / counts.sum())
    alloc = np.floor(exact).astype(np.int64)
    order = np.argsort(-(exact - alloc), kind="stable")  # ties -> lower class index first
    alloc[order[: total - alloc.sum()]] += 1
    return alloc


@functools.lru_cache(maxsize=1)
def arrays():
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

    rng = np.random.RandomState(SPLIT_SEED)
    classes = np.arange(10)
    per_class = [rng.permutation(np.flatnonzero(labels == c)) for c in classes]
    counts = np.array([len(p) for p in per_class])
    n_test = _allocate(counts, SIZES["test"])
    n_val = _allocate(counts - n_test, SIZES["validation"])
    parts = {"test": [], "validation": [], "train": []}
    for perm, t, v in zip(per_class, n_test, n_val):
        parts["test"].append(perm[:t])
        parts["validation"].append(perm[t:t + v])
        parts["train"].append(perm[t + v:])
    splits = {k: np.sort(np.concatenate(v)) for k, v in parts.items()}
    for k, n in SIZES.items():
        assert len(splits[k]) == n, (k, len(splits[k]))
    return images, labels, splits


def split_arrays(split: str):
    """``(uint8 images, int32 labels)`` of one split, in original dataset order."""
    images, labels, splits = arrays()
    index = splits[split]
    return images[index], labels[index]


def train_statistics():
    """Per-channel ``(mean, std)`` of the training images scaled to [0, 1]."""
    images, _, splits = arrays()
    x = images[splits["train"]].astype(np.float64) / SCALE
    return tuple(x.mean(axis=(0, 1, 2))), tuple(x.std(axis=(0, 1, 2)))
