"""Hide TensorFlow's start-up logs in the command-line tools (unless `--verbose=2` or more).

Importing this module is the call: every tool imports it first, before anything
that imports TensorFlow (`keras_sgn` does), because the logs are printed then:

    # First, before anything imports TensorFlow (keras_sgn does): ...
    import quiet_start  # noqa: F401

    # isort: split
    import json

TensorFlow's C++ start-up lines are written straight to file descriptor 2
before its logging is set up; `import keras_sgn` hides them
(`keras_sgn.startup`, which prints back anything that was not one of them).
`quiet_tensorflow_startup` sets `TF_CPP_MIN_LOG_LEVEL=3` (for everything logged
later), imports keras-sgn, and lists the devices the same way (the first look
prints "failed call to cuInit" on a machine without a GPU). With `--verbose=2`
it sets `TF_CPP_MIN_LOG_LEVEL=0`, which keras_sgn reads as "show everything".

`--help` (and `--helpshort`, `--helpfull`, `--helpxml`, `-?`) imports no TensorFlow at all:
the flags are made from modules that import none, and `KERAS_SGN_LAZY_IMPORT=1` keeps
`import keras_sgn` from importing it (see keras_sgn/__init__.py), so help answers in a second.

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
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "0")  # keras_sgn then hides nothing
        return False
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    # keras_sgn first, as the tools import it: it picks the Keras backend, and hides
    # TensorFlow's start-up lines itself (keras_sgn.startup).
    import keras_sgn  # noqa: F401
    from keras_sgn.startup import tensorflow_logs_hidden

    with tensorflow_logs_hidden():
        import tensorflow as tf

        # The first look at the devices prints "failed call to cuInit" without a GPU.
        tf.config.list_physical_devices()
    return True

quiet_tensorflow_startup()
