"""Datasets prepared by tensorflow-datasets (tfds) in a local folder.

A prepared dataset is a folder ``<root>/<name>/<version>/`` holding ``dataset_info.json`` and
the record files. ``root`` is ``data_dir``, else ``$TFDS_DATA_DIR``, else
``~/tensorflow_datasets``. Reading never downloads; :mod:`keras_sgn.data.download` prepares a
missing dataset there first (tfds' ``download_and_prepare``) unless ``download=False``.
"""

from __future__ import annotations

import os

import tensorflow as tf

from keras_sgn.data import catalog
from keras_sgn.data.errors import DatasetNotAvailableError


def default_root() -> tuple:
    """``(folder, how it was chosen)`` when no ``data_dir`` is given."""
    if os.environ.get("TFDS_DATA_DIR"):
        return _absolute(os.environ["TFDS_DATA_DIR"]), "from $TFDS_DATA_DIR"
    return (_absolute(os.path.join("~", "tensorflow_datasets")),
            "the default; neither data_dir= nor $TFDS_DATA_DIR was set")


def _absolute(path) -> str:
    return os.path.abspath(os.path.expanduser(os.fspath(path)))


def split_string(name: str, split: str) -> str:
    """The tfds split string for one of our splits (absolute indices, no rounding)."""
    n_train = catalog.ORIGINAL_SIZES[name]["train"] - catalog.VALIDATION_SIZE
    return {
        "train": f"train[:{n_train}]",
        "validation": f"train[{n_train}:]",
        "test": "test",
    }[split]


def versions(root: str, name: str) -> list:
    """The version folders present under ``<root>/<name>/`` (prepared or not)."""
    folder = os.path.join(root, name)
    try:
        return sorted(d for d in os.listdir(folder) if os.path.isdir(os.path.join(folder, d)))
    except OSError:
        return []


def looks_prepared(root: str, name: str) -> bool:
    """A cheap check (no tfds import): some ``<root>/<name>/<version>/dataset_info.json``."""
    return any(os.path.isfile(os.path.join(root, name, v, "dataset_info.json"))
               for v in versions(root, name))


def describe(root: str, name: str, expected_version=None) -> list:
    """Sentences saying what ``root`` holds, for error messages."""
    try:
        present = (sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)))
                   if os.path.isdir(root) else None)
    except OSError:
        present = None
    if present is None:
        return [f"The directory {root!r} does not exist."]
    shown = ", ".join(present[:10]) + (", ..." if len(present) > 10 else "")
    lines = [f"Its subfolders are: {shown or '(none)'}."]
    if os.path.isdir(os.path.join(root, name)):
        expects = (f"this tensorflow-datasets expects version {expected_version}"
                   if expected_version else "none holds a prepared dataset (dataset_info.json)")
        lines.append(f"Found {os.path.join(root, name)!r} with versions "
                     f"{versions(root, name)}, but {expects}.")
    if os.path.basename(root.rstrip(os.sep)) == name:
        lines.append(f"Note: data_dir must be the folder that *contains* {name!r}/, i.e. "
                     f"{os.path.dirname(root.rstrip(os.sep))!r}.")
    return lines


def not_available(name: str, root: str, origin: str, builder) -> DatasetNotAvailableError:
    """The error for a tfds dataset that is not prepared in ``root``, with the fix."""
    expected = getattr(builder, "data_dir", None)
    lines = [
        f"Dataset {name!r} is not prepared in {root!r} ({origin}"
        + (f"; expected files in {str(expected)!r}" if expected else "")
        + ").",
    ]
    lines += describe(root, name, str(getattr(builder, "version", "?")))
    lines.append(
        "To fix: where a network is there, let keras_sgn.data.load download it (download=True, "
        "the default; --download on the command line); or pass data_dir= (or --data_dir on "
        "the command line) pointing at a folder that "
        f"contains a prepared '{name}/<version>/' directory, or set the TFDS_DATA_DIR "
        "environment variable to it. To create it, on a machine with network run "
        f"`tfds build {name}` or `tfds.load({name!r}, download=True)`, then copy "
        f"~/tensorflow_datasets/{name} into that folder. Without any data, use name='digits' "
        "(bundled with scikit-learn)."
    )
    return DatasetNotAvailableError(" ".join(lines))


def dataset(name: str, split: str, data_dir=None, origin=None) -> tf.data.Dataset:
    """(uint8 image, int64 label) examples of a prepared tfds dataset, in stored order.

    ``origin`` says where ``data_dir`` came from, for the error message (default: given as
    ``data_dir=``, or the default folder when ``data_dir`` is None)."""
    import tensorflow_datasets as tfds  # local import: only needed for tfds datasets

    if data_dir is None:
        root, origin = default_root()
    else:
        root, origin = _absolute(data_dir), origin or "given as data_dir="
    builder = tfds.builder(name, data_dir=root)
    try:
        return builder.as_dataset(
            split=split_string(name, split),
            as_supervised=True,
            shuffle_files=False,
            read_config=tfds.ReadConfig(try_autocache=False),
        )
    except AssertionError as e:  # tfds raises AssertionError("... could not find data in ...")
        if "could not find data" in str(e) or not builder.is_prepared():
            raise not_available(name, root, origin, builder) from None
        raise
