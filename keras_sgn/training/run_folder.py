"""A run folder belongs to one run at a time, and a finished run is never
overwritten by accident.

`RunFolder(output_dir).open(settings, may_differ, overwrite)` (the chief's
first step in `train()`):

* the folder must be a writable folder (else `RunFolderError` naming `--output_dir`);
* `RunLock`: another live run holds it -> `RunFolderBusyError` naming its pid,
  host and command. The lock is an OS lock (`flock`) on `.lock`, so the kernel
  drops it when its process dies, SIGKILL included: a lock file left behind is
  taken over. A lock written on another host counts as live while its owner
  refreshes it (every `RunLock.HEARTBEAT_SECONDS`), and as stale after
  `RunLock.STALE_SECONDS` without a refresh (on file systems whose locks do not
  span hosts);
* `.tmp-*` files of writes killed half-way are removed from the folders a run
  writes (under the lock, so they cannot belong to a live writer);
* the folder holds a *finished* run (`summary.json`): same settings ->
  `"complete"` (nothing is touched) once checked: `config.json` and
  `summary.json` are JSON objects and `model.keras` is there and a whole Keras
  archive (else `RunFolderError` saying what is wrong; `overwrite` archives it);
  other settings -> refused unless `overwrite`, which moves the old outputs,
  their evaluations (`eval/`) included, to `previous/<time>/` (nothing is
  deleted; refused while an evaluation holds `eval/`). An unfinished run (a
  backup) with other settings is refused the same way; with the same settings
  it is resumed (`"resume"`), `overwrite` or not.
"""

import collections
import errno
import fcntl
import json
import os
import socket
import sys
import threading
import time
import zipfile

from keras_sgn.config import saved_settings
from keras_sgn.errors import UserError
from keras_sgn.io_utils import TEMPORARY_PREFIX, atomic_write_json, read_json_object

LOCK_NAME = ".lock"
ARCHIVE_DIR = "previous"
# What a run writes at the top of its folder; `overwrite` moves them to previous/<time>/.
# `eval` (tools/evaluate.py's report of model.keras) goes with them: it is of the old model.
EVAL_DIR = "eval"
OUTPUTS = ("model.keras", "summary.json", "config.json", "history.json",
           "training_curves.png", "checkpoints", "backup", "logs", EVAL_DIR)
# What every Keras archive (`model.keras`) holds.
_KERAS_ARCHIVE_MEMBERS = ("config.json", "metadata.json", "model.weights.h5")
# What the folder holds for a run of given settings: "new", "resume" or "complete".
FolderState = collections.namedtuple("FolderState", "status saved_settings archived")


class RunFolderError(UserError, ValueError):
    """The output folder cannot be used as asked; the message says what to do."""


class RunFolderBusyError(RunFolderError):
    """Another live run holds the folder's lock."""


def check_writable_folder(path, flag="--output_dir"):
    """`path` is (or can become) a folder this process can write into."""
    if os.path.exists(path) and not os.path.isdir(path):
        raise RunFolderError(f"{flag} must be a folder, but {path!r} is a file. Received: "
                             f"{flag}={path}. Pick another {flag} or move the file away.")
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as error:
        raise RunFolderError(f"{flag}={path} cannot be created ({error.strerror}). Pick a "
                             f"{flag} under a folder you can write to.") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise RunFolderError(f"{flag}={path} is not writable by this user. Pick a {flag} you "
                             "can write to, or fix its permissions.")


# The folders of a run where its atomic writes put their temporary files.
_WRITTEN_FOLDERS = ("", "backup", "checkpoints")


def clean_stale_temporaries(path):
    """Remove the `.tmp-*` files that writes killed half-way left in the
    folders a run writes (`path`, its `backup/` and `checkpoints/`); returns
    their paths. Call it only while holding the folder's lock."""
    removed = []
    for folder in (os.path.join(path, name) for name in _WRITTEN_FOLDERS):
        names = os.listdir(folder) if os.path.isdir(folder) else ()
        for name in names:
            full = os.path.join(folder, name)
            if name.startswith(TEMPORARY_PREFIX) and os.path.isfile(full):
                try:
                    os.remove(full)
                    removed.append(full)
                except FileNotFoundError:
                    pass
    return removed


def _pid_alive(pid):
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError, TypeError):
        return True  # alive under another user, or unreadable: assume alive
    return True


class RunLock:
    """An exclusive lock on `folder/.lock`, which names its owner (pid, host,
    start time, command, and `what` it is: a training "run", an "evaluation").
    `acquire()` raises `RunFolderBusyError` if a live owner holds it;
    `took_over` is the owner of a stale lock replaced, if any."""

    HEARTBEAT_SECONDS = 30.0
    STALE_SECONDS = 300.0

    def __init__(self, folder, flag="--output_dir", what="run"):
        self.path = os.path.join(folder, LOCK_NAME)
        self.flag = flag
        self.what = what
        self.took_over = None
        self._fd = None
        self._stop = threading.Event()

    def acquire(self):
        for _ in range(10):  # the previous holder may remove the file as we open it
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            os_lock = self._try_os_lock(fd)
            if not (os.path.exists(self.path)
                    and os.path.samestat(os.fstat(fd), os.stat(self.path))):
                os.close(fd)  # released and removed meanwhile: lock the new file
                continue
            owner = self._read_owner()
            if self._owner_alive(owner, os_lock):
                os.close(fd)
                raise RunFolderBusyError(self._busy_message(owner))
            self._fd, self.took_over = fd, owner
            self._write_owner()
            self._start_heartbeat()
            return self
        raise RunFolderBusyError(self._busy_message(self._read_owner()))

    def _try_os_lock(self, fd):
        """Take the OS lock of `fd`: True if taken, False if the file system has
        no locks; `RunFolderBusyError` if another process holds it."""
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            owner = self._read_owner()
            os.close(fd)
            raise RunFolderBusyError(self._busy_message(owner)) from None
        except OSError as error:
            if error.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
                return False
            raise

    def _owner_alive(self, owner, os_lock):
        """Whether the owner recorded in the file still runs (we hold the OS lock
        if `os_lock`: an owner on this host would hold it if it were alive)."""
        if not owner:
            return False
        if owner.get("host") == socket.gethostname():
            return (not os_lock) and owner.get("pid") != os.getpid() and _pid_alive(
                owner.get("pid"))
        try:
            age = time.time() - os.path.getmtime(self.path)
        except FileNotFoundError:
            return False
        return age < self.STALE_SECONDS

    def _read_owner(self):
        try:
            with open(self.path) as f:
                return json.load(f)
        except (OSError, ValueError):
            return None

    def _write_owner(self):
        owner = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time(),
                 "command": " ".join(sys.argv)[:500], "what": self.what}
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, json.dumps(owner).encode(), 0)
        os.fsync(self._fd)

    def _start_heartbeat(self):
        """Refresh the lock's time while held: other hosts see the run alive."""
        def beat():
            while not self._stop.wait(self.HEARTBEAT_SECONDS):
                try:
                    os.utime(self.path)
                except OSError:
                    pass

        self._stop.clear()
        threading.Thread(target=beat, name="keras_sgn-run-lock", daemon=True).start()

    def _busy_message(self, owner):
        folder = os.path.dirname(self.path)
        what = (owner or {}).get("what") or "run"
        who = f"another {what}"
        if owner:
            started = time.strftime("%Y-%m-%d %H:%M:%S",
                                    time.localtime(owner.get("started", 0)))
            who = (f"the {what} with pid {owner.get('pid')} on host {owner.get('host')} "
                   f"(started {started}: {owner.get('command', '?')})")
        return (f"{self.flag}={folder} is in use by {who}. Wait for it to finish or pick "
                f"another {self.flag}; if that {what} is gone (its machine was lost), delete "
                f"{self.path}.")

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc_info):
        self.release()

    def release(self):
        """Give the folder back (removes the lock file)."""
        if self._fd is None:
            return
        self._stop.set()
        try:
            if os.path.samestat(os.fstat(self._fd), os.stat(self.path)):
                os.remove(self.path)
        except OSError:
            pass
        os.close(self._fd)  # drops the OS lock
        self._fd = None

    @property
    def held(self):
        return self._fd is not None


def _read_json(path, flag):
    """The JSON object in `path` (None if there is no file); a `RunFolderError`
    if it is not valid JSON or not an object (`{...}`)."""
    try:
        return read_json_object(
            path, f"Received: {flag}={os.path.dirname(path)}. Move that file away, pick "
            f"another {flag}, or pass --overwrite to move this folder's outputs to "
            f"{ARCHIVE_DIR}/<time>/.", error=RunFolderError)
    except FileNotFoundError:
        return None


def keras_archive_problem(path):
    """What is wrong with the Keras archive `path` (missing, not a whole zip,
    damaged, not a Keras model), or None if it is whole. Reads every member's
    CRC, not the model: no Keras needed."""
    if not os.path.exists(path):
        return "is missing"
    try:
        with zipfile.ZipFile(path) as archive:
            missing = [m for m in _KERAS_ARCHIVE_MEMBERS if m not in archive.namelist()]
            if missing:
                return f"is not a Keras model file (no {', '.join(missing)} inside)"
            damaged = archive.testzip()
            if damaged is not None:
                return f"is damaged ({damaged} fails its checksum)"
    except (zipfile.BadZipFile, OSError, EOFError) as error:
        return f"is not a whole Keras model file (truncated or damaged: {error})"
    return None


def differences(saved, current, ignore=()):
    """`{field: (saved, current)}` of the settings both have that differ. A setting
    that holds settings (a config's method `options`) differs by its entries, each
    under its own name (None where one side has none)."""
    changed = {}
    for key in sorted(saved):
        if key not in current or key in ignore or saved[key] == current[key]:
            continue
        old, new = saved[key], current[key]
        if isinstance(old, dict) and isinstance(new, dict):
            changed.update({name: (old.get(name), new.get(name)) for name in sorted(
                set(old) | set(new)) if name not in old or name not in new
                or old[name] != new[name]})
        else:
            changed[key] = (old, new)
    return changed


def describe_differences(changed):
    return ", ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in changed.items())


def archive_outputs(folder):
    """Move the outputs of the run in `folder` to `folder/previous/<time>/`;
    returns that folder."""
    target = base = os.path.join(folder, ARCHIVE_DIR, time.strftime("%Y%m%d-%H%M%S"))
    suffix = 0
    while os.path.exists(target):
        suffix += 1
        target = f"{base}-{suffix}"
    eval_dir = os.path.join(folder, EVAL_DIR)
    if os.path.isdir(eval_dir):  # an evaluation running there would write into the archive
        try:
            RunLock(eval_dir).acquire().release()
        except RunFolderBusyError as busy:
            raise RunFolderBusyError(
                f"--overwrite cannot move the outputs of {folder} while an evaluation writes "
                f"into its {EVAL_DIR}/ folder: {busy}") from None
    os.makedirs(target)
    for name in OUTPUTS:
        if os.path.lexists(os.path.join(folder, name)):
            os.replace(os.path.join(folder, name), os.path.join(target, name))
    return target


class RunFolder:
    """The output folder of one run, held under its `RunLock` from `open` to `close`.

    Args:
        path: the folder (`--output_dir`).
        flag: how errors name it.
    """

    def __init__(self, path, flag="--output_dir"):
        self.path = path
        self.flag = flag
        self.lock = RunLock(path, flag)
        self.cleaned = []

    def _file(self, name):
        return os.path.join(self.path, name)

    def open(self, settings, may_differ=(), overwrite=False):
        """Take the folder for a run of `settings` (a dict: its `config.json`);
        `may_differ` lists the settings a rerun may change. Returns a
        `FolderState`; raises `RunFolderError` (the lock released) if refused."""
        check_writable_folder(self.path, self.flag)
        self.lock.acquire()
        try:
            self.cleaned = clean_stale_temporaries(self.path)
            return self._state(settings, may_differ, overwrite)
        except BaseException:
            self.lock.release()
            raise

    def _state(self, settings, may_differ, overwrite):
        try:
            saved = _read_json(self._file("config.json"), self.flag)
        except RunFolderError:
            if overwrite:  # a damaged config.json: archived with the rest
                return FolderState("new", None, archive_outputs(self.path))
            raise
        finished = os.path.exists(self._file("summary.json"))
        unfinished = os.path.exists(self._file(os.path.join("backup", "state.json")))
        foreign = saved is None and (finished or os.path.exists(self._file("model.keras")))
        # saved_settings: a config.json of an older layout compares as today's.
        changed = {} if saved is None else differences(saved_settings(saved), settings,
                                                        ignore=may_differ)
        if overwrite and (foreign or finished or (unfinished and changed)):
            return FolderState("new", None, archive_outputs(self.path))
        if foreign:
            raise RunFolderError(
                f"{self.flag}={self.path} holds a model.keras or summary.json but no "
                "config.json: not a folder of a keras_sgn training run (or a damaged one). "
                f"Pick another {self.flag}, or pass --overwrite to move those files to "
                f"{ARCHIVE_DIR}/<time>/.")
        if changed and (finished or unfinished):
            what = ("a finished run" if finished else
                    "a backup of an unfinished run")
            resume = "" if finished else "Rerun the same command to resume it, "
            raise RunFolderError(
                f"{self.path} holds {what} with other settings "
                f"({describe_differences(changed)}). {resume}"
                f"{'P' if finished else 'p'}ick another {self.flag}, or pass --overwrite to "
                f"move its outputs to {ARCHIVE_DIR}/<time>/ and train afresh.")
        if finished:
            self._check_complete()
        status = "complete" if finished else "resume" if unfinished else "new"
        return FolderState(status, saved, None)

    def _check_complete(self):
        """A finished run is "complete" only if its outputs are whole: a valid
        `summary.json` and a `model.keras` that is a whole Keras archive."""
        self.summary()  # a RunFolderError if it is not a JSON object
        problem = keras_archive_problem(self._file("model.keras"))
        if problem:
            raise RunFolderError(
                f"{self.path} holds a finished run (summary.json) whose model.keras {problem}. "
                f"Received: {self.flag}={self.path}. Pass --overwrite to move its outputs to "
                f"{ARCHIVE_DIR}/<time>/ and train afresh, or pick another {self.flag}.")

    def summary(self):
        """The finished run's `summary.json` (None if there is none)."""
        return _read_json(self._file("summary.json"), self.flag)

    def write_settings(self, settings):
        atomic_write_json(self._file("config.json"), settings)

    def close(self):
        self.lock.release()
