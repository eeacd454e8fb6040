"""Where MNIST and Fashion-MNIST are found on this machine, in a fixed search order.

For ``name`` in :data:`LOCAL_FILE_DATASETS`, :func:`locate` looks in, in this order:

1. ``data_dir``: a prepared tfds folder (holding ``<name>/<version>/``), or a folder with the
   four IDX files (``train-images-idx3-ubyte.gz`` ...), or (MNIST) Keras' ``mnist.npz``;
2. ``$TFDS_DATA_DIR`` (else ``~/tensorflow_datasets``): a prepared tfds folder;
3. the Keras cache, ``$KERAS_HOME/datasets/...`` then ``~/.keras/datasets/...``
   (``fashion-mnist/`` with the IDX files; ``mnist.npz``);
4. system folders (:data:`SYSTEM_DIRS`; Debian's ``dataset-fashion-mnist`` package).

The first place holding a complete copy is used; a complete but damaged copy is an error (it is
never skipped silently). :func:`locate` only searches; when no place has a copy,
:func:`keras_sgn.data.load` downloads Keras' files into the Keras cache (place 3, see
:mod:`keras_sgn.data.download`) unless ``download=False``.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Tuple

from keras_sgn.data import idx, tfds_source
from keras_sgn.data.errors import DatasetNotAvailableError
from keras_sgn.errors import ArgumentError

#: The datasets that can be read from local files without tensorflow-datasets.
LOCAL_FILE_DATASETS: Tuple[str, ...] = ("mnist", "fashion_mnist")

#: Folders where system packages install the IDX files (searched last).
SYSTEM_DIRS = {"fashion_mnist": ("/usr/share/datasets/fashion-mnist",), "mnist": ()}

#: Where ``keras.datasets.<name>.load_data()`` caches its files, below the Keras home.
KERAS_CACHE_SUBDIRS = {"fashion_mnist": os.path.join("datasets", "fashion-mnist"),
                       "mnist": "datasets"}


@dataclasses.dataclass(frozen=True)
class Source:
    """Where :func:`keras_sgn.data.load` reads a dataset from.

    Attributes:
        name: The dataset name.
        kind: ``"tfds"`` (``path`` is the root folder holding ``<name>/<version>/``),
            ``"idx"`` (``path`` is the folder of the four IDX files) or ``"npz"`` (``path`` is
            Keras' ``.npz`` file).
        path: Absolute path, as above.
        place: Which place of the search found it, e.g. ``"data_dir="``.
        files: The data files read (empty for ``"tfds"``).
    """

    name: str
    kind: str
    path: str
    place: str
    files: Tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class _Place:
    label: str
    path: str
    kinds: Tuple[str, ...]


def _absolute(path) -> str:
    return os.path.abspath(os.path.expanduser(os.fspath(path)))


def _places(name: str, data_dir) -> list:
    places = []
    if data_dir is not None:
        places.append(_Place("data_dir=", _absolute(data_dir), ("tfds", "idx", "npz")))
    root, _ = tfds_source.default_root()
    tfds_label = ("$TFDS_DATA_DIR" if os.environ.get("TFDS_DATA_DIR")
                  else "~/tensorflow_datasets (the tfds default; $TFDS_DATA_DIR is unset)")
    places.append(_Place(tfds_label, root, ("tfds",)))
    homes = [("$KERAS_HOME", os.environ["KERAS_HOME"])] if os.environ.get("KERAS_HOME") else []
    for label, home in homes + [("~/.keras", os.path.join("~", ".keras"))]:
        folder = os.path.join(_absolute(home), KERAS_CACHE_SUBDIRS[name])
        if all(folder != p.path for p in places):
            places.append(_Place(f"{label}/{KERAS_CACHE_SUBDIRS[name]} (Keras cache)", folder,
                                 ("idx", "npz")))
    for folder in SYSTEM_DIRS[name]:
        places.append(_Place("system folder", folder, ("idx",)))
    return places


def _probe(name: str, place: _Place):
    """A :class:`Source` if ``place`` holds a complete copy, else None."""
    for kind in place.kinds:
        if kind == "tfds" and tfds_source.looks_prepared(place.path, name):
            return Source(name, "tfds", place.path, place.label)
        if kind == "idx":
            files = tuple(idx.find(place.path, stem) for stem in idx.ALL_FILES)
            if all(files):
                return Source(name, "idx", place.path, place.label, files)
        if kind == "npz" and name in idx.NPZ_FILES:
            path = os.path.join(place.path, idx.NPZ_FILES[name])
            if os.path.isfile(path):
                return Source(name, "npz", path, place.label, (path,))
    return None


def _what_is_there(name: str, place: _Place) -> str:
    """Why ``place`` did not count, in a few words."""
    if not os.path.isdir(place.path):
        return "no such folder"
    notes = []
    if "tfds" in place.kinds and tfds_source.versions(place.path, name):
        notes.append(f"'{name}/' has versions {tfds_source.versions(place.path, name)} but "
                     "none is prepared (no dataset_info.json)")
    if "idx" in place.kinds:
        missing = [s for s in idx.ALL_FILES if not idx.find(place.path, s)]
        if len(missing) < len(idx.ALL_FILES):
            notes.append("incomplete IDX files, missing " + ", ".join(missing))
    if os.path.basename(place.path.rstrip(os.sep)) == name:
        notes.append(f"note: a tfds data_dir is the folder that *contains* {name!r}/, i.e. "
                     f"{os.path.dirname(place.path.rstrip(os.sep))!r}")
    return "; ".join(notes) or "no data files"


def how_to_get(name: str) -> str:
    """The ways to put ``name`` on this machine, one per line."""
    stems = ", ".join(stem + ".gz" for stem in idx.ALL_FILES)
    keras_file = idx.NPZ_FILES.get(name, os.path.join("fashion-mnist", "*.gz"))
    ways = [f"where a network is there, keras_sgn.data.load({name!r}) downloads it (download=True, "
            "the default; --download on the command line) into the Keras cache"]
    if name == "fashion_mnist":
        ways.append("Debian/Ubuntu: `sudo apt-get install dataset-fashion-mnist` (or `make data` "
                    "in a keras-sgn checkout) installs the IDX files in "
                    "/usr/share/datasets/fashion-mnist")
    ways += [
        f"on a machine with network, `python -c \"import keras; "
        f"keras.datasets.{name}.load_data()\"` caches ~/.keras/datasets/{keras_file}; copy it "
        "to the same place here (or into $KERAS_HOME/datasets/), or pass its folder as "
        "data_dir= (--data_dir)",
        f"tensorflow-datasets: `tfds build {name}` on a machine with network, then copy "
        f"~/tensorflow_datasets/{name} and pass the folder that contains it as data_dir= or "
        "$TFDS_DATA_DIR",
        f"or put the four IDX files ({stems}) in a folder and pass it as data_dir=",
    ]
    return "\n".join("  - " + way for way in ways)


def locate(name: str, data_dir=None) -> Source:
    """Finds a local copy of ``name`` (no data is read; see the module docstring for the order).

    Args:
        name: ``"mnist"`` or ``"fashion_mnist"``.
        data_dir: A folder searched first (see above), or None.

    Returns:
        The :class:`Source` that :func:`keras_sgn.data.load` reads.

    Raises:
        DatasetNotAvailableError: if no place holds a complete copy; the message lists every
            place looked in and the ways to get the data.
        ValueError: for a dataset that is not read from local files.
    """
    if name not in LOCAL_FILE_DATASETS:
        raise ArgumentError(f"name={name!r}: only {', '.join(LOCAL_FILE_DATASETS)} are read from "
                            "local files; other datasets are read with tensorflow-datasets from "
                            "data_dir (see keras_sgn.data.load).")
    places = _places(name, data_dir)
    for place in places:
        source = _probe(name, place)
        if source is not None:
            return source
    looked = "\n".join(f"  {i}. {p.label} {p.path!r}: {_what_is_there(name, p)}"
                       for i, p in enumerate(places, 1))
    raise DatasetNotAvailableError(
        f"Dataset {name!r} was not found on this machine (locate() searches, it does not "
        f"download).\nLooked in, in this order:\n{looked}\nTo get it:\n{how_to_get(name)}")


def read(source: Source) -> dict:
    """The verified arrays of an ``"idx"`` or ``"npz"`` source, in tfds order:
    ``{"train": (uint8 (N, 28, 28, 1), int32 (N,)), "test": (...)}``."""
    hint = (f"This copy of {source.name!r} (found via {source.place}) is damaged: replace it, "
            "or move it away to use the next place of the search. To get a good copy:\n"
            + how_to_get(source.name))
    if source.kind == "idx":
        arrays = idx.read_folder(source.name, source.path, hint)
    elif source.kind == "npz":
        arrays = idx.read_npz(source.name, source.path, hint)
    else:
        raise ArgumentError(f"source.kind={source.kind!r}: only 'idx' and 'npz' sources hold "
                            "arrays; read 'tfds' sources with tensorflow-datasets.")
    return idx.in_tfds_order(arrays)
