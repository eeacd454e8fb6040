"""Files written so that a crash or a reader never sees half of them."""

import json
import os
import tempfile


def _temporary_beside(path, suffix):
    """A temporary file in `path`'s folder with the permissions a plain `open`
    would give (mkstemp makes 0600 files, unreadable to a shared cluster)."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=suffix)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    return fd, tmp


def fsync_directory(directory):
    """Make a rename in `directory` durable (where the platform allows it)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _commit(tmp, path):
    """fsync `tmp`, rename it over `path`, fsync the folder: all or nothing."""
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_directory(os.path.dirname(os.path.abspath(path)))


def atomic_write_bytes(path, payload):
    """Write `payload` to a temporary file beside `path`, fsync, then rename."""
    fd, tmp = _temporary_beside(path, os.path.basename(path))
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
        _commit(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def atomic_write_text(path, text):
    """`atomic_write_bytes` of `text` encoded as UTF-8."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path, obj):
    """`atomic_write_text` of `obj` as indented JSON."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def atomic_save_model(model, path):
    """Save to a temporary file in the same folder, then rename: a reader (or a
    crash) never sees a half-written model at `path`."""
    suffix = ".weights.h5" if path.endswith(".weights.h5") else os.path.splitext(path)[1]
    fd, tmp = _temporary_beside(path, suffix)
    os.close(fd)
    try:
        if suffix == ".weights.h5":
            model.save_weights(tmp, overwrite=True)
        else:
            model.save(tmp, overwrite=True)
        _commit(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
