"""File integrity: sha256 of a file, and refusing (and evicting) a bad copy."""

import hashlib
import logging
import os

from keras_sgn.zoo.errors import ChecksumMismatchError

logger = logging.getLogger("keras_sgn.zoo")


def sha256_file(path, chunk_size=1 << 20):
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(chunk_size), b""):
            digest.update(chunk)
    return digest.hexdigest()


def evict(path):
    """Delete a cached file: the snapshot link and the blob it points to.
    Returns the paths removed."""
    removed = []
    for target in {os.path.realpath(path), path}:
        try:
            if os.path.lexists(target):
                os.remove(target)
                removed.append(target)
        except OSError as error:  # a read-only cache: say so, still refuse
            logger.warning("could not delete bad cached file %s: %s", target, error)
    return removed


def _mismatch(expected, path):
    """What is wrong with `path` against `{"sha256", "size"}`, or None."""
    size = os.path.getsize(path)
    if size != expected["size"]:
        return (f"has {size} bytes, expected {expected['size']}"
                + (" (truncated)" if size < expected["size"] else ""))
    actual = sha256_file(path)
    if actual == expected["sha256"]:
        return None
    return f"sha256 {actual}, expected {expected['sha256']} (modified)"


def verify_file(entry, filename, path, where, evict_bad):
    """Raise `ChecksumMismatchError` unless `path` matches `entry.files[filename]`.

    `evict_bad`: delete a bad file (a download cache) rather than keep it (the
    installed package, whose damage the user must repair by reinstalling).
    """
    problem = _mismatch(entry.files[filename], path)
    if problem is None:
        return
    action = (f"The cached copy was deleted ({path}); the next call downloads it again."
              if evict_bad and evict(path) else
              "Nothing was loaded." if evict_bad else
              "The installed package is damaged: reinstall keras-sgn.")
    raise ChecksumMismatchError(
        f"{entry.name}: {filename} from {where} failed verification: {problem}. "
        f"Refusing to load it. {action}")
