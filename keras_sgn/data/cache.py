"""A checked on-disk cache of decoded, verified arrays, so that later loads take well under 3 s.

The cache of a source is ``<cache dir>/<name>-<key>.npz`` (uncompressed) with a JSON sidecar
holding the sha256 of that file and the size and mtime of the source files it was built from.
A cache that is stale (the source files changed), unreadable or fails its sha256 is rebuilt
from the source, never trusted. Both files are written atomically (keras_sgn.io_utils). The
cache dir is ``$KERAS_SGN_CACHE``, else ``$XDG_CACHE_HOME/keras_sgn``, else
``~/.cache/keras_sgn``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os

from keras_sgn import io_utils
from keras_sgn.data import idx

CACHE_ENV = "KERAS_SGN_CACHE"
_FORMAT = 1
_log = logging.getLogger(__name__)
# One decoded dataset per name, with the key it was read under (re-read when that changes).
_MEMORY = {}


def cache_dir() -> str:
    """The folder of the cache (read now from the environment)."""
    if os.environ.get(CACHE_ENV):
        return os.path.abspath(os.path.expanduser(os.environ[CACHE_ENV]))
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join("~", ".cache")
    return os.path.abspath(os.path.expanduser(os.path.join(base, "keras_sgn")))


def paths(source) -> tuple:
    """``(npz path, json path)`` of the cache of ``source``: one cache per source place."""
    key = hashlib.sha256(f"{source.kind}:{os.path.realpath(source.path)}".encode())
    stem = os.path.join(cache_dir(), f"{source.name}-{key.hexdigest()[:16]}")
    return stem + ".npz", stem + ".json"


def _fingerprint(source) -> dict:
    files = []
    for path in source.files:
        stat = os.stat(path)
        files.append([os.path.realpath(path), stat.st_size, stat.st_mtime_ns])
    return {"format": _FORMAT, "name": source.name, "kind": source.kind, "files": files}


def _stat(path):
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return stat.st_size, stat.st_mtime_ns


def _read_cache(npz_path: str, json_path: str, fingerprint: dict):
    """The cached arrays, or None (missing, stale, or damaged: then logged)."""
    try:
        with open(json_path, encoding="utf-8") as f:
            meta = json.load(f)
        with open(npz_path, "rb") as f:
            payload = f.read()
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        _log.warning("Unreadable cache %s (%s); rebuilding it.", json_path, e)
        return None
    if not isinstance(meta, dict) or meta.get("source") != fingerprint:
        return None  # built from other files: stale
    if hashlib.sha256(payload).hexdigest() != meta.get("sha256"):
        _log.warning("Cache %s does not match its recorded sha256 (corrupted); rebuilding it "
                     "from the source files.", npz_path)
        return None
    return idx.from_npz_bytes(payload)


def _write_cache(npz_path: str, json_path: str, fingerprint: dict, arrays: dict) -> None:
    payload = idx.to_npz_bytes(arrays)
    try:
        io_utils.atomic_write_bytes(npz_path, payload)
        io_utils.atomic_write_json(json_path, {
            "source": fingerprint, "sha256": hashlib.sha256(payload).hexdigest()})
    except OSError as e:
        _log.warning("Could not write the data cache %s (%s); loading works, but decodes the "
                     "files every time. Set $%s to a writable folder.", npz_path, e, CACHE_ENV)


def arrays(source, read) -> dict:
    """The arrays of ``source``: from memory, else from a valid disk cache, else ``read(source)``
    (which must verify the files), then cached."""
    npz_path, json_path = paths(source)
    fingerprint = _fingerprint(source)
    key = (npz_path, json.dumps(fingerprint, sort_keys=True), _stat(npz_path))
    remembered = _MEMORY.get(source.name)
    if remembered is not None and remembered[0] == key:
        return remembered[1]
    result = _read_cache(npz_path, json_path, fingerprint)
    if result is None:
        result = read(source)
        _write_cache(npz_path, json_path, fingerprint, result)
    _MEMORY[source.name] = ((npz_path, key[1], _stat(npz_path)), result)
    return result


def forget() -> None:
    """Drops the in-memory copies (the disk cache stays)."""
    _MEMORY.clear()
