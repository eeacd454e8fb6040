"""The errors keras-sgn raises on purpose, in one hierarchy.

```
KerasSGNError                    every error keras-sgn raises on purpose
 +-- UserError                   about what the caller gave: the tools print it as one line
 |    +-- ArgumentError          an argument value refused (also a ValueError)
 |    +-- MissingFileError       a file the caller named is not there (a FileNotFoundError)
 |    +-- ConfigError, RunFolderError, OutOfSpaceError, CorruptFileError, StrategyError,
 |        TrainingDiverged, DatasetNotAvailableError, DatasetIntegrityError, ZooError,
 |        PublishError, ...     (each in its own module, most also a ValueError/OSError)
 +-- TrainingPreempted          a run stopped by SIGTERM after saving (not a mistake)
```

A `UserError`'s message names the parameter and the fix; the tools (`keras_sgn.cli`) print
`error: <message>` and exit with code 2. Anything else raised out of a tool is a bug and
keeps its traceback. The typed errors keep `ValueError`, `OSError`, ... as second bases, so
code that catches those still does.

This module imports only the standard library (no TensorFlow): the tools' `--help` stays
quick.
"""

import contextlib


class KerasSGNError(Exception):
    """Base of every error keras-sgn raises on purpose."""


class UserError(KerasSGNError):
    """What the caller gave cannot be used (an argument, a file, a folder, a disk, a
    dataset); the message says which and how to fix it. The tools print it as one line."""


class ArgumentError(UserError, ValueError):
    """An argument's value is refused (out of range, unknown name, wrong shape)."""


class MissingFileError(UserError, FileNotFoundError):
    """A file the caller named (or that a folder should hold) is not there."""


class MissingExtraError(UserError, ImportError):
    """A part of keras-sgn needs a package its optional extra installs (`pip install
    "keras-sgn[tune]"`); the core (layers, models, methods, attacks, evaluation, training,
    data, zoo) needs none."""


def require_extra(extra, package, module, part):
    """Raise `MissingExtraError` naming the extra to install unless `module` imports.

    Args:
        extra: the `setup.py` extra that installs it (`"tune"`).
        package: its name on PyPI (`"keras-tuner"`).
        module: its import name (`"keras_tuner"`).
        part: what needs it (`"keras_sgn.tuning"`).
    """
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise MissingExtraError(
            f"{part} needs {package}, which is not installed. Install it with "
            f"pip install \"keras-sgn[{extra}]\" (make install installs every extra).")


@contextlib.contextmanager
def checked_arguments():
    """Inside, a plain `ValueError` is a refused argument: it is raised again as an
    `ArgumentError` with the same message. For a call that only checks arguments (parses
    a string, compares numbers) in code that raises the built-in kind (`keras_sgn.attacks`);
    never around computation, where a `ValueError` is a bug."""
    try:
        yield
    except KerasSGNError:
        raise
    except ValueError as error:
        raise ArgumentError(str(error)) from error
