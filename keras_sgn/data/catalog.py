"""What each dataset is: names, splits, image shapes, classes and their names, pixel
statistics, split sizes.

This is the one place the per-dataset constants live (mean/std of the training images in
[0, 1], the original split sizes, the size of the held-out validation part). Nothing here reads
image data, except ``digits``, whose statistics are computed once from its bundled training
split.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import types
from typing import Mapping, Tuple

from keras_sgn.data import digits
from keras_sgn.errors import ArgumentError
from keras_sgn.registry import close_matches, lookup

#: Names accepted by :func:`info` and :func:`keras_sgn.data.load`.
DATASETS: Tuple[str, ...] = (
    "cifar10",
    "cifar100",
    "svhn_cropped",
    "mnist",
    "fashion_mnist",
    "digits",
)

#: Splits accepted by :func:`keras_sgn.data.load`.
SPLITS: Tuple[str, ...] = ("train", "validation", "test")

#: Images held out from the END of the stored training split as "validation". tfds stores its
#: training splits in a fixed, shuffled order (and the IDX files are put in that same order,
#: see :mod:`keras_sgn.data.idx`), so the last N images are a fixed, class-mixed sample.
VALIDATION_SIZE = 1_000

#: Original sizes of the splits we use (the "extra" split of SVHN is not used).
ORIGINAL_SIZES = {
    "cifar10": {"train": 50_000, "test": 10_000},
    "cifar100": {"train": 50_000, "test": 10_000},
    "svhn_cropped": {"train": 73_257, "test": 26_032},
    "mnist": {"train": 60_000, "test": 10_000},
    "fashion_mnist": {"train": 60_000, "test": 10_000},
}

# "augment" is the kind of training augmentation: "crop_flip" (pad + random crop + random
# horizontal flip), "crop" (pad + random crop; SVHN digits are not mirror symmetric) or None.
# mean/std: per channel, of the training images scaled to [0, 1] (None: computed, see digits).
_Spec = collections.namedtuple("_Spec", "num_classes image_shape mean std augment")
_SPECS = {
    "cifar10": _Spec(10, (32, 32, 3), (0.4914, 0.4822, 0.4465), (0.2471, 0.2435, 0.2616),
                     "crop_flip"),
    "cifar100": _Spec(100, (32, 32, 3), (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762),
                      "crop_flip"),
    "svhn_cropped": _Spec(10, (32, 32, 3), (0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970),
                          "crop"),
    "mnist": _Spec(10, (28, 28, 1), (0.1307,), (0.3081,), None),
    "fashion_mnist": _Spec(10, (28, 28, 1), (0.2860,), (0.3530,), None),
    "digits": _Spec(10, (8, 8, 1), None, None, None),
}

_DIGITS = tuple(str(d) for d in range(10))
_CIFAR100 = (
    "apple", "aquarium_fish", "baby", "bear", "beaver", "bed", "bee", "beetle", "bicycle",
    "bottle", "bowl", "boy", "bridge", "bus", "butterfly", "camel", "can", "castle",
    "caterpillar", "cattle", "chair", "chimpanzee", "clock", "cloud", "cockroach", "couch",
    "crab", "crocodile", "cup", "dinosaur", "dolphin", "elephant", "flatfish", "forest", "fox",
    "girl", "hamster", "house", "kangaroo", "keyboard", "lamp", "lawn_mower", "leopard", "lion",
    "lizard", "lobster", "man", "maple_tree", "motorcycle", "mountain", "mouse", "mushroom",
    "oak_tree", "orange", "orchid", "otter", "palm_tree", "pear", "pickup_truck", "pine_tree",
    "plain", "plate", "poppy", "porcupine", "possum", "rabbit", "raccoon", "ray", "road",
    "rocket", "rose", "sea", "seal", "shark", "shrew", "skunk", "skyscraper", "snail", "snake",
    "spider", "squirrel", "streetcar", "sunflower", "sweet_pepper", "table", "tank", "telephone",
    "television", "tiger", "tractor", "train", "trout", "tulip", "turtle", "wardrobe", "whale",
    "willow_tree", "wolf", "woman", "worm",
)
#: The name of each class, by label, as tensorflow-datasets names them (CIFAR-100: its 100
#: fine labels; the digit datasets: "0".."9").
CLASS_NAMES = {
    "cifar10": ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
                "truck"),
    "cifar100": _CIFAR100,
    "svhn_cropped": _DIGITS,
    "mnist": _DIGITS,
    "fashion_mnist": ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                      "Sneaker", "Bag", "Ankle boot"),
    "digits": _DIGITS,
}

#: CIFAR-10 statistics, for the normalisation layer of models trained on it.
CIFAR10_MEAN: Tuple[float, ...] = _SPECS["cifar10"].mean
CIFAR10_STD: Tuple[float, ...] = _SPECS["cifar10"].std


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """Static description of a supported dataset.

    Attributes:
        name: Dataset name, one of :data:`DATASETS`.
        num_classes: Number of classes.
        class_names: The name of each class, by label (``class_names[label]``), a tuple of
            ``num_classes`` strings: tensorflow-datasets' names (``"airplane"`` ... for CIFAR-10,
            ``"T-shirt/top"`` ... for Fashion-MNIST, the 100 fine labels of CIFAR-100,
            ``"0"`` .. ``"9"`` for the digit datasets).
        image_shape: ``(height, width, channels)`` of one image.
        mean: Per-channel mean of the training images scaled to [0, 1].
        std: Per-channel standard deviation of the training images scaled to [0, 1].
        num_examples: Number of examples in each split (``"train"``, ``"validation"``,
            ``"test"``) as loaded by :func:`keras_sgn.data.load`.
        augment: Whether :func:`keras_sgn.data.load` augments the training split by default.
        flip: Whether that augmentation includes random horizontal flips (CIFAR) or only
            pad-and-crop (SVHN).
    """

    name: str
    num_classes: int
    class_names: Tuple[str, ...]
    image_shape: Tuple[int, int, int]
    mean: Tuple[float, ...]
    std: Tuple[float, ...]
    num_examples: Mapping[str, int] = dataclasses.field(hash=False)
    augment: bool
    flip: bool = False


def check_name(name) -> str:
    """``name`` if it is a supported dataset, else a ValueError listing them (and close ones)."""
    # Close matches ignore case and hyphens: "CIFAR-10" suggests 'cifar10'.
    lookup(_SPECS, name, kind="dataset", key=lambda text: text.lower().replace("-", ""))
    return name


def check_split(split) -> str:
    """``split`` if it is one of :data:`SPLITS`, else a ValueError with the likely meaning."""
    if isinstance(split, str) and split in SPLITS:
        return split
    msg = f"split={split!r} is not valid; use one of " + ", ".join(repr(s) for s in SPLITS) + "."
    if isinstance(split, str):
        aliases = {"val": "validation", "valid": "validation", "dev": "validation",
                   "eval": "test", "training": "train"}
        guess = aliases.get(split.lower()) or next(
            iter(close_matches(split.lower(), SPLITS, n=1)), None)
        if guess:
            msg += f" Did you mean split={guess!r}?"
        if "[" in split or "%" in split:
            msg += (" tfds slicing syntax is not accepted here; use n_examples= to take the "
                    "first n examples of a split.")
    raise ArgumentError(msg)


def split_sizes(name: str) -> dict:
    """``{split: number of examples}`` as :func:`keras_sgn.data.load` gives them."""
    if name == "digits":
        return dict(digits.SIZES)
    original = ORIGINAL_SIZES[name]
    return {"train": original["train"] - VALIDATION_SIZE, "validation": VALIDATION_SIZE,
            "test": original["test"]}


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
        >>> keras_sgn.data.info("fashion_mnist").class_names[9]
        'Ankle boot'
    """
    return cached_info(check_name(name))


@functools.lru_cache(maxsize=None)
def cached_info(name: str) -> DatasetInfo:
    """:func:`info` for a checked name, computed once (call ``cache_clear()`` after changing
    :data:`ORIGINAL_SIZES` or :data:`VALIDATION_SIZE`)."""
    spec = _SPECS[name]
    mean, std = digits.train_statistics() if name == "digits" else (spec.mean, spec.std)
    return DatasetInfo(
        name=name,
        num_classes=spec.num_classes,
        class_names=CLASS_NAMES[name],
        image_shape=tuple(spec.image_shape),
        mean=tuple(float(m) for m in mean),
        std=tuple(float(s) for s in std),
        num_examples=types.MappingProxyType(split_sizes(name)),
        augment=spec.augment is not None,
        flip=spec.augment == "crop_flip",
    )
