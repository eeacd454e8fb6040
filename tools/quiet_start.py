"""Start the command-line tools quickly and quietly.

Importing this module is the first thing every tool does, before anything imports
keras_sgn:

    # First, before anything imports keras_sgn: ...
    import quiet_start

    # isort: split
    import json
    ...

    def main(argv):
        ...  # check the flags (no TensorFlow yet)
        quiet_start.start_tensorflow()

It imports keras_sgn without TensorFlow (`KERAS_SGN_LAZY_IMPORT=1`, for that import
only: a program the tool starts imports keras_sgn as usual), so parsing the flags,
`--help` and the checks of the flags' values take about a second, and a mistake is
refused before TensorFlow's 5-15 s start. Once its flags are checked, the tool calls
`start_tensorflow()`: TensorFlow and every part of keras_sgn are imported, and the
C++ start-up lines TensorFlow writes straight to file descriptor 2 ("failed call to
cuInit", "oneDNN custom operations are on") are hidden (`keras_sgn.startup`, which
prints back anything that was not one of them). `TF_CPP_MIN_LOG_LEVEL=3` is set for
everything logged later. With `--verbose=2` or more nothing is hidden
(`TF_CPP_MIN_LOG_LEVEL=0`, which keras_sgn reads as "show everything").

What is left alone: `TF_ENABLE_ONEDNN_OPTS` (it changes the numerics) and
`CUDA_VISIBLE_DEVICES` (GPUs keep working); a `TF_CPP_MIN_LOG_LEVEL` the user
set; TensorFlow's Python warnings; everything printed after start-up. A tool
that dies during start-up without a message (TensorFlow aborting in C++) shows
it with `--verbose=2`.
"""

import os
import sys

#: `--verbose` from this value on shows TensorFlow's start-up logs.
VERBOSE_SHOWS_TENSORFLOW_LOGS = 2
# keras_sgn/__init__.py reads it; named here because importing keras_sgn is what it changes.
_LAZY_IMPORT_VARIABLE = "KERAS_SGN_LAZY_IMPORT"


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


def shows_tensorflow_logs(argv):
    """Whether `argv` asks for TensorFlow's logs (`--verbose=2` or more)."""
    verbose = verbose_from_argv(argv)
    return verbose is not None and verbose >= VERBOSE_SHOWS_TENSORFLOW_LOGS


def prepare(argv=None):
    """Set `TF_CPP_MIN_LOG_LEVEL` from `argv` and import keras_sgn without TensorFlow.

    Args:
        argv: the command line (default `sys.argv`); with `--verbose=2` or more
            TensorFlow's logs will show.

    Returns:
        True if TensorFlow's start-up logs will be hidden, False if `argv` asked for them.
    """
    argv = sys.argv if argv is None else argv
    hidden = not shows_tensorflow_logs(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3" if hidden else "0")
    given = os.environ.get(_LAZY_IMPORT_VARIABLE)
    os.environ[_LAZY_IMPORT_VARIABLE] = "1"
    try:
        import keras_sgn  # noqa: F401
    finally:
        if given is None:
            del os.environ[_LAZY_IMPORT_VARIABLE]
        else:
            os.environ[_LAZY_IMPORT_VARIABLE] = given
    return hidden


def start_tensorflow():
    """Import TensorFlow and every part of keras_sgn, its start-up lines hidden unless
    the command line asked for them; call it once the flags are checked (again: free)."""
    from keras_sgn import startup

    startup.import_everything()


prepare()
