"""Getting a dataset that is not on this machine, the way tensorflow-datasets and Keras do.

:func:`prepare` is what :func:`keras_sgn.data.load` calls first (and a training run calls
before it creates its output folder): it finds the dataset on this machine, else, with
``download=True``, downloads it, else raises :class:`DatasetNotAvailableError`.

* ``mnist``, ``fashion_mnist``: the files ``keras.datasets.<name>.load_data()`` downloads
  (:data:`KERAS_FILES`), into the Keras cache where :func:`keras_sgn.data.sources.locate` finds them
  (``$KERAS_HOME/datasets/...``, else ``~/.keras/datasets/...``). They are downloaded into a
  temporary folder beside their final place, checked in full (the sha256 of their decompressed
  bytes, see :mod:`keras_sgn.data.idx`), and only then renamed into place. A download that
  fails or does not match is removed and never used.
* ``cifar10``, ``cifar100``, ``svhn_cropped``: tensorflow-datasets' ``download_and_prepare``
  into ``data_dir`` (else ``$TFDS_DATA_DIR``, else ``~/tensorflow_datasets``); tfds checks
  the downloads against its registered checksums and prepares into a temporary folder that it
  renames when complete.
* ``digits``: bundled with scikit-learn, always there.

Without a network a download fails within :data:`TIMEOUT_SECONDS` (the host name is looked up
under the same limit), and the error says how to get the data another way. :func:`fetch` is
the one function here that opens a connection.
"""

from __future__ import annotations

import http.client
import os
import shutil
import socket
import tempfile
import threading
import types
import urllib.parse
import urllib.request

from keras_sgn.data import idx, sources, tfds_source
from keras_sgn.data.errors import DatasetNotAvailableError
from keras_sgn.errors import ArgumentError, UserError

#: Seconds a connection may wait for an answer (and a host name lookup may take).
TIMEOUT_SECONDS = 10

#: Where ``keras.datasets`` downloads its files from.
KERAS_ORIGIN = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/"
#: ``{name: {file name in the Keras cache folder: url}}``.
KERAS_FILES = {
    "fashion_mnist": {stem + ".gz": KERAS_ORIGIN + stem + ".gz" for stem in idx.ALL_FILES},
    "mnist": {idx.NPZ_FILES["mnist"]: KERAS_ORIGIN + idx.NPZ_FILES["mnist"]},
}
#: Where tensorflow-datasets downloads each dataset from (checked to be reachable first, so
#: that an offline machine fails in seconds rather than after tfds' retries).
TFDS_URLS = {
    "cifar10": "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz",
    "cifar100": "https://www.cs.toronto.edu/~kriz/cifar-100-binary.tar.gz",
    "svhn_cropped": "http://ufldl.stanford.edu/housenumbers/",
}


class DownloadFailed(UserError, OSError):
    """A download could not be done (no network, host unknown, an HTTP error)."""


def _resolve(host: str, timeout: float):
    """Looks ``host`` up, giving up after ``timeout`` seconds (a lookup with no name server
    answering may otherwise wait much longer)."""
    outcome = {}

    def look_up():
        try:
            socket.getaddrinfo(host, None)
        except OSError as error:
            outcome["error"] = error
        except BaseException as error:  # noqa: BLE001 (re-raised in the caller's thread)
            outcome["bug"] = error
        outcome["done"] = True

    thread = threading.Thread(target=look_up, daemon=True)
    thread.start()
    thread.join(timeout)
    if "bug" in outcome:
        raise outcome["bug"]
    if "error" in outcome:
        raise DownloadFailed(f"cannot look up {host}: {outcome['error']}")
    if "done" not in outcome:
        raise DownloadFailed(f"looking up {host} took more than {timeout:g} s")


def fetch(url: str, path: str, timeout: float = TIMEOUT_SECONDS):
    """Writes the bytes at ``url`` to the file ``path``; raises :class:`DownloadFailed`."""
    _resolve(urllib.parse.urlsplit(url).hostname, timeout)
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, \
                open(path, "wb") as out:
            shutil.copyfileobj(response, out, 1 << 20)
    except (OSError, http.client.HTTPException) as error:
        raise DownloadFailed(f"{url}: {error}") from None


def check_reachable(url: str, timeout: float = TIMEOUT_SECONDS):
    """Raises :class:`DownloadFailed` unless a connection to the host of ``url`` opens."""
    parts = urllib.parse.urlsplit(url)
    _resolve(parts.hostname, timeout)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        socket.create_connection((parts.hostname, port), timeout=timeout).close()
    except OSError as error:
        raise DownloadFailed(f"cannot connect to {parts.hostname}: {error}") from None


def keras_cache_folder(name: str) -> str:
    """Where ``keras.datasets.<name>`` keeps its files (and where they are downloaded to)."""
    home = os.environ.get("KERAS_HOME") or os.path.join("~", ".keras")
    return os.path.abspath(os.path.join(os.path.expanduser(home),
                                        sources.KERAS_CACHE_SUBDIRS[name]))


def download_keras_files(name: str) -> str:
    """Downloads ``KERAS_FILES[name]`` into the Keras cache: into a temporary folder first,
    checked in full, then renamed into place. Returns the Keras cache folder.

    Raises:
        DownloadFailed: the files could not be downloaded (nothing is kept).
        DatasetIntegrityError: a downloaded file is not the published one (nothing is kept).
    """
    folder = keras_cache_folder(name)
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as error:
        raise DownloadFailed(f"cannot create {folder}: {error}") from None
    hint = ("The download was removed; nothing of it was used. Try again, or get the files "
            "another way:\n" + sources.how_to_get(name))
    with tempfile.TemporaryDirectory(prefix=".download-", dir=folder) as partial:
        for filename, url in KERAS_FILES[name].items():
            fetch(url, os.path.join(partial, filename))
        if name in idx.NPZ_FILES:
            idx.read_npz(name, os.path.join(partial, idx.NPZ_FILES[name]), hint)
        else:
            idx.read_folder(name, partial, hint)
        for filename in KERAS_FILES[name]:
            os.replace(os.path.join(partial, filename), os.path.join(folder, filename))
    return folder


def alternative(name: str) -> str:
    """A dataset other than ``name`` that this machine has, for error messages:
    ``fashion_mnist`` when a copy is found, else ``digits`` (bundled)."""
    if name != "fashion_mnist":
        try:
            sources.locate("fashion_mnist")
            return "fashion_mnist"
        except DatasetNotAvailableError:
            pass
    return "digits"


def command_line_message(name: str, why: str) -> str:
    """The one line a command-line user reads when ``name`` cannot be had (``why``: e.g.
    ``could not be downloaded (...)``), in flag terms."""
    other = alternative(name)
    has = "which is on this machine" if other == "fashion_mnist" else "bundled, no download"
    return (f"dataset {name!r} is not on this machine and {why}. Point --data_dir at a copy "
            f"of it, run `make data` (installs Fashion-MNIST), or use --dataset={other} "
            f"({has}).")


def _not_available(name: str, detail: str, why: str, why_here=None) -> DatasetNotAvailableError:
    """The error of :func:`prepare`: ``why`` first, then ``detail`` (what was looked at and the
    ways to get the data), and its one-line command-line form (``why_here``: ``why`` in flag
    terms, if it differs)."""
    if detail.startswith(f"Dataset {name!r} was not found") and "\n" in detail:
        detail = detail.split("\n", 1)[1]  # the search's first line says what ours says
    return DatasetNotAvailableError(
        f"Dataset {name!r} is not on this machine and {why}.\n{detail}",
        command_line=command_line_message(name, why_here or why))


_FORBIDDEN = ("download=False forbids downloading it", "--nodownload forbids downloading it")


def _why(error: DownloadFailed) -> str:
    return f"could not be downloaded (no network? {error})"


def _local_files(name: str, data_dir, download: bool) -> sources.Source:
    try:
        return sources.locate(name, data_dir)
    except DatasetNotAvailableError as missing:
        if not download:
            raise _not_available(name, str(missing), *_FORBIDDEN) from None
        try:
            download_keras_files(name)
        except DownloadFailed as error:
            raise _not_available(name, str(missing), _why(error)) from None
    return sources.locate(name, data_dir)


def _tfds(name: str, data_dir, download: bool) -> sources.Source:
    if data_dir is None:
        root, origin = tfds_source.default_root()
    else:
        root = os.path.abspath(os.path.expanduser(os.fspath(data_dir)))
        origin = "given as data_dir="
    if not tfds_source.looks_prepared(root, name):
        import tensorflow_datasets as tfds  # local import: only needed for tfds datasets

        version = str(tfds.builder_cls(name).VERSION)  # no builder yet: it logs about `root`
        expected = types.SimpleNamespace(data_dir=os.path.join(root, name, version),
                                         version=version)
        missing = tfds_source.not_available(name, root, origin, expected)
        if not download:
            raise _not_available(name, str(missing), *_FORBIDDEN)
        try:
            check_reachable(TFDS_URLS[name])
        except DownloadFailed as error:
            raise _not_available(name, str(missing), _why(error)) from None
        tfds.builder(name, data_dir=root).download_and_prepare()
    return sources.Source(name, "tfds", root, origin)


def prepare(name: str, data_dir=None, download: bool = True) -> sources.Source:
    """Makes sure ``name`` can be loaded: finds it on this machine or downloads it.

    Args:
        name: One of :data:`keras_sgn.data.DATASETS`.
        data_dir: As :func:`keras_sgn.data.load` takes it.
        download: Download the dataset when no copy is found (default, as tensorflow-datasets
            and ``keras.datasets`` do). False: never open a connection.

    Returns:
        The :class:`Source` that :func:`keras_sgn.data.load` reads (``kind="bundled"`` for
        ``digits``).

    Raises:
        DatasetNotAvailableError: no copy here, and it could not (or must not) be downloaded.
            ``error.command_line`` is the same on one line, in command-line flag terms.
        DatasetIntegrityError: a copy found, or a download, is damaged (nothing of it is used).
    """
    from keras_sgn.data import catalog

    name = catalog.check_name(name)
    if not isinstance(download, bool):
        raise ArgumentError(f"download must be True or False, got {download!r}.")
    if name == "digits":
        return sources.Source(name, "bundled", "scikit-learn", "scikit-learn")
    if name in sources.LOCAL_FILE_DATASETS:
        return _local_files(name, data_dir, download)
    return _tfds(name, data_dir, download)

