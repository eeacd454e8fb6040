"""Hide TensorFlow's start-up logs in the command-line tools (unless `--verbose=2` or more).

Importing this module is the call: every tool imports it first, before anything
that imports TensorFlow (`keras_sgn` does), because the logs are printed then:

    # First, before anything imports TensorFlow (keras_sgn does): ...
    import quiet_start  # noqa: F401

    # isort: split
    import json

TensorFlow's C++ start-up lines ("oneDNN custom operations are on", "Could not
find cuda drivers", "failed call to cuInit" on a machine without a GPU, "All
log messages before absl::InitializeLog() is called...") are written straight
to file descriptor 2 before its logging is set up, so `TF_CPP_MIN_LOG_LEVEL`
does not reach them. `quiet_tensorflow_startup` therefore sets
`TF_CPP_MIN_LOG_LEVEL=3` (for everything logged later) and imports keras-sgn
and TensorFlow and lists the devices with file descriptor 2 sent to a
temporary file; afterwards it restores stderr and prints back whatever was not
one of those log lines (a Python warning, an error message), so a real problem
still shows. If the import fails, everything captured is printed back.

`--help` (and `--helpshort`, `--helpfull`, `--helpxml`, `-?`) imports no TensorFlow at all:
the flags are made from modules that import none, and `KERAS_SGN_LAZY_IMPORT=1` keeps
`import keras_sgn` from importing it (see keras_sgn/__init__.py), so help answers in a second.

What is left alone: `TF_ENABLE_ONEDNN_OPTS` (it changes the numerics) and
`CUDA_VISIBLE_DEVICES` (GPUs keep working); a `TF_CPP_MIN_LOG_LEVEL` the user
set; TensorFlow's Python warnings; everything printed after start-up. A tool
that dies during start-up without a message (TensorFlow aborting in C++) shows
it with `--verbose=2`.
"""

import contextlib
import os
import re
import sys
import tempfile

#: `--verbose` from this value on shows TensorFlow's start-up logs.
VERBOSE_SHOWS_TENSORFLOW_LOGS = 2

# A record of TensorFlow's C++ logging (absl format, from a C++ source file):
# "I0000 00:00:1796094486.610066   16804 port.cc:153] oneDNN custom operations...".
# Python's absl records ("W1201 ... polymorphic_function.py:157]") do not match.
_TENSORFLOW_LOG_LINE = re.compile(
    r"[IWEF]\d{4} [\d:.]+\s+\d+ \S+\.(?:cc|cpp|h):\d+\] "
    r"|WARNING: All log messages before absl::InitializeLog\(\) is called"
    # The second line of cpu_feature_guard.cc's record.
    r"|To enable the following instructions: .*rebuild TensorFlow")


def verbose_from_argv(argv):
    """The value of `--verbose` in `argv` (`--verbose=N` or `--verbose N`), else None.

    A cheap look before absl parses the flags (the last occurrence wins, as in
    absl; nothing after `--` is a flag). A value that is not an integer gives
    None: absl reports it when it parses the flags.
    """
    value = None
    args = list(argv[1:])
    for i, arg in enumerate(args):
        if arg == "--":
            break
        name, equals, given = arg.lstrip("-").partition("=")
        if not arg.startswith("-") or name != "verbose":
            continue
        if not equals:
            given = args[i + 1] if i + 1 < len(args) else ""
        try:
            value = int(given)
        except ValueError:
            value = None
    return value


#: The flags with which absl prints help and exits.
HELP_FLAGS = ("help", "helpshort", "helpfull", "helpxml", "?")


def asks_for_help(argv):
    """Whether `argv` asks for help (absl prints it and exits before `main`)."""
    for arg in argv[1:]:
        if arg == "--":
            break
        name, _, value = arg.lstrip("-").partition("=")
        if arg.startswith("-") and name in HELP_FLAGS and value.lower() not in (
                "false", "f", "0", "no"):
            return True
    return False


def shows_tensorflow_logs(argv):
    """Whether `argv` asks for TensorFlow's logs (`--verbose=2` or more)."""
    verbose = verbose_from_argv(argv)
    return verbose is not None and verbose >= VERBOSE_SHOWS_TENSORFLOW_LOGS


def drop_tensorflow_logs(text):
    """`text` without the lines of TensorFlow's C++ logging."""
    return "".join(line for line in text.splitlines(keepends=True)
                   if not _TENSORFLOW_LOG_LINE.match(line))


@contextlib.contextmanager
def tensorflow_logs_hidden():
    """Send file descriptor 2 to a temporary file; then print back what was not a
    TensorFlow log line (everything, if the block raised)."""
    sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:  # no stderr to protect
        yield
        return
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        succeeded = False
        try:
            yield
            succeeded = True
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            text = captured.read().decode(errors="replace")
            kept = drop_tensorflow_logs(text) if succeeded else text
            if kept:
                sys.stderr.write(kept)
                sys.stderr.flush()


def quiet_tensorflow_startup(argv=None):
    """Import keras-sgn and TensorFlow without their start-up logs.

    Args:
        argv: the command line (default `sys.argv`); with `--verbose=2` or more
            nothing is hidden.

    Returns:
        True if the logs were hidden, False if `argv` asked for them or for help (then
        nothing imports TensorFlow: see the module docstring).
    """
    argv = sys.argv if argv is None else argv
    if asks_for_help(argv):
        os.environ.setdefault("KERAS_SGN_LAZY_IMPORT", "1")
        return False
    if shows_tensorflow_logs(argv):
        return False
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    with tensorflow_logs_hidden():
        # keras_sgn first, as the tools import it: it picks the Keras backend.
        import keras_sgn  # noqa: F401

        # isort: split
        import tensorflow as tf

        # The first look at the devices prints "failed call to cuInit" without a GPU.
        tf.config.list_physical_devices()
    return True


quiet_tensorflow_startup()
