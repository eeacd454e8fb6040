"""Files written so that a crash or a reader never sees half of them, a full
disk named before it costs anything, and model files read with clear errors."""

import contextlib
import errno
import gc
import json
import os
import shutil
import sys
import tempfile
import zipfile

import numpy as np

from keras_sgn.errors import MissingFileError, UserError

# Prefix of the temporary files of the atomic writes (a process killed while
# writing leaves one behind; `keras_sgn.training.run_folder` removes them).
TEMPORARY_PREFIX = ".tmp-"
# Room kept free beyond a model file's own size (HDF5 and zip bookkeeping):
# HDF5 can crash the process (a segfault) when the disk fills up mid-write.
_SAVE_MARGIN_BYTES = 1 << 20


class OutOfSpaceError(UserError, OSError):
    """The disk of a folder has too little room for a file about to be written.
    Nothing was written: the previous files are intact."""

    #: The tools exit without the interpreter's teardown (`keras_sgn.cli`): an HDF5 file
    #: that could not be closed on the full disk would be flushed there again (error
    #: stacks, a crash) after the one-line error.
    exit_at_once = True


class CorruptFileError(UserError, ValueError):
    """A file exists but cannot be read as what it should be (truncated,
    overwritten, or of another kind)."""


def check_free_space(directory, needed_bytes, flag=None):
    """Raise `OutOfSpaceError`, naming `directory` (and the flag that chose it),
    when its disk has less than `needed_bytes` free."""
    free = shutil.disk_usage(directory).free
    if free < needed_bytes:
        where = f"{flag} {directory!r}" if flag else repr(directory)
        raise OutOfSpaceError(
            errno.ENOSPC,
            f"Out of disk space: {free / 2**20:.1f} MiB free on the disk of {where}, and "
            f"about {needed_bytes / 2**20:.1f} MiB are needed for the next file. Nothing was "
            "written (the previous files are intact): free some space and rerun the same "
            "command, which resumes from the last backup.")


def _temporary_beside(path, suffix):
    """A temporary file in `path`'s folder with the permissions a plain `open`
    would give (mkstemp makes 0600 files, unreadable to a shared cluster)."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=TEMPORARY_PREFIX, suffix=suffix)
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


def close_hdf5_files(path):
    """Close the HDF5 files open on `path`; returns how many. A Keras weights file whose
    write failed half-way stays open, and at exit HDF5 would flush it again: on a full
    disk that printed HDF5 error stacks after the one-line error, and crashed."""
    h5py = sys.modules.get("h5py")
    if h5py is None:
        return 0
    path = os.path.abspath(path)
    open_files = [o for o in gc.get_objects() if isinstance(o, h5py.File)]
    closed = 0
    for handle in open_files:
        try:
            if handle.id.valid and os.path.abspath(handle.filename) == path:
                handle.close()
                closed += 1
        except (OSError, RuntimeError, ValueError):
            pass  # its disk refuses the flush too: the tools then exit at once
    return closed


@contextlib.contextmanager
def _writing(tmp, path):
    """Around the write of `tmp` (committed to `path`): a full disk becomes an
    `OutOfSpaceError` naming the folder; `tmp` never outlives the write."""
    try:
        yield
    except OSError as error:
        close_hdf5_files(tmp)
        if error.errno != errno.ENOSPC or isinstance(error, OutOfSpaceError):
            raise
        folder = os.path.dirname(os.path.abspath(path))
        raise OutOfSpaceError(errno.ENOSPC, f"Out of disk space writing {path} (folder "
                              f"{folder!r}). The previous version of the file is intact: free "
                              "some space and rerun the same command.") from error
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def atomic_write_bytes(path, payload):
    """Write `payload` to a temporary file beside `path`, fsync, then rename."""
    fd, tmp = _temporary_beside(path, os.path.basename(path))
    with _writing(tmp, path):
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
        _commit(tmp, path)


def atomic_write_text(path, text):
    """`atomic_write_bytes` of `text` encoded as UTF-8."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path, obj):
    """`atomic_write_text` of `obj` as indented JSON."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def read_json_object(path, fix, error=CorruptFileError):
    """The JSON object (`{...}`) in `path`; `error` (a `CorruptFileError` unless given)
    when the file is not valid JSON or holds another value, its message ending with `fix`
    (what the user does about it). A missing file raises `FileNotFoundError`."""
    try:
        with open(path, encoding="utf-8") as f:
            value = json.load(f)
    except ValueError:  # JSONDecodeError, or bytes that are not UTF-8
        problem = "not valid JSON"
    else:
        if isinstance(value, dict):
            return value
        problem = f"not a JSON object (it holds a {type(value).__name__})"
    raise error(f"{path} is {problem}: damaged, or not written by keras_sgn. {fix}")


def model_file_bytes(model):
    """About how many bytes a saved file of `model` takes: its variables and
    its optimizer's, which both `.keras` and `.weights.h5` files hold."""
    variables = list(model.weights)
    optimizer = getattr(model, "optimizer", None)
    if optimizer is not None and getattr(optimizer, "built", False):
        variables += list(optimizer.variables)
    # From shapes and dtypes: reading distributed variables could be collective.
    return sum(int(np.prod(v.shape)) * np.dtype(getattr(v.dtype, "as_numpy_dtype", v.dtype))
               .itemsize for v in variables)


def atomic_save_model(model, path):
    """Save to a temporary file in the same folder, then rename: a reader (or a
    crash) never sees a half-written model at `path`. A disk without room for
    the file is refused first (`OutOfSpaceError`), as HDF5 may crash on it."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    check_free_space(directory, model_file_bytes(model) + _SAVE_MARGIN_BYTES)
    suffix = ".weights.h5" if path.endswith(".weights.h5") else os.path.splitext(path)[1]
    fd, tmp = _temporary_beside(path, suffix)
    os.close(fd)
    with _writing(tmp, path):
        if suffix == ".weights.h5":
            model.save_weights(tmp, overwrite=True)
        else:
            model.save(tmp, overwrite=True)
        _commit(tmp, path)


def load_model_file(path, flag=None):
    """`keras.saving.load_model(path)` with errors that say what is wrong: a
    missing file is `FileNotFoundError`, a file that is not a readable `.keras`
    archive (truncated, random bytes, another format) is `CorruptFileError`
    (Keras itself calls both "File not found")."""
    import keras  # here: io_utils stays importable without TensorFlow

    name = f"{flag}={path}" if flag else str(path)
    if not os.path.exists(path):
        raise MissingFileError(errno.ENOENT, f"{name}: no such file. Give the path of a "
                               "saved .keras model (e.g. RUN_DIR/model.keras).")
    if os.path.isdir(path) or not zipfile.is_zipfile(path):
        raise CorruptFileError(
            f"{name} is corrupt: not a .keras archive ({os.path.getsize(path)} bytes; "
            "truncated, overwritten, or another format). Use an intact copy, or retrain.")
    try:
        return keras.saving.load_model(path)
    except (zipfile.BadZipFile, KeyError, OSError, EOFError) as error:
        raise CorruptFileError(
            f"{name} is corrupt: its .keras archive cannot be read ({type(error).__name__}: "
            f"{error}). Use an intact copy, or retrain.") from error
