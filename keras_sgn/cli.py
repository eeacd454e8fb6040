"""Running a command-line tool: a user's mistake is one line, a bug is a traceback.

```python
# tools/some_tool.py
from keras_sgn import cli

def main(argv):
    ...

if __name__ == "__main__":
    cli.run_tool(main)
```

`run_tool` is `absl.app.run` with these rules:

* a bad flag (unknown flag, bad value, a required flag missing), an argument
  that is not a flag (a stray word, or `--second_order false`: a boolean flag
  takes its value as `--second_order=false`) and `absl.app.UsageError` print
  `error: <message>` on stderr, exit code 2;
* so does every `keras_sgn.errors.UserError` (`is_user_error`): what the user gave
  keras-sgn is refused (a bad value, a refused folder, a full disk, a corrupt file, a
  dataset not on this machine, a zoo or publishing error; the messages name the parameter
  and the fix). An error that names its flag (`field`, as `ConfigError`) starts with it,
  and one with a one-line `command_line` form (a dataset not on this machine) shows that;
* below `--verbose=2` the INFO records of Python logging (TensorFlow's, e.g. a
  mirrored strategy's, and absl's) are hidden (`hide_info_logs`);
* anything else (a bug) keeps its traceback. `KERAS_SGN_TRACEBACK=1` shows the
  traceback of user errors too.
"""

import logging
import os
import sys

from absl import app, flags
from absl import logging as absl_logging

from keras_sgn.errors import UserError

#: Exit code of a usage error (as argparse uses).
USAGE_EXIT_CODE = 2
#: Set to 1 to see the traceback of a user error too.
TRACEBACK_VARIABLE = "KERAS_SGN_TRACEBACK"
#: `--verbose` from this value on shows TensorFlow's INFO log records (as
#: tools/quiet_start.py shows its start-up logs from the same value on).
VERBOSE_SHOWS_INFO_LOGS = 2


def is_user_error(error):
    """Whether `error` is about the user's input (print it) rather than a bug: a
    `keras_sgn.errors.UserError`, or absl's `UsageError` (a tool's own refusal)."""
    return isinstance(error, (UserError, app.UsageError))


def error_line(error):
    """`error: <message>` on one line (an error without a message shows its class name);
    an error that says it for the command line too (its `command_line`, e.g. a dataset
    that is not on this machine) shows that, and one naming its flag (`field`, as a
    `ConfigError`) starts with `--<flag>: `."""
    message = getattr(error, "command_line", None) or str(error)
    if isinstance(error, OSError) and error.strerror and error.filename is None:
        message = error.strerror  # keras-sgn's `OSError(errno, message)`: no "[Errno 28] "
    message = " ".join(line.strip() for line in message.splitlines() if line.strip())
    message = message or type(error).__name__
    field = getattr(error, "field", None)
    if field and not message.startswith(f"--{field}"):
        message = f"--{field}: {message}"
    return f"error: {message}"


#: Words a user may mean as the value of a boolean flag.
_BOOLEAN_WORDS = frozenset({"true", "false", "t", "f", "yes", "no", "y", "n", "on", "off",
                            "1", "0"})


def _boolean_flag(token, flag_values):
    """The name of the boolean flag `token` sets without `=` (`--name`, `--noname`), else None."""
    if not token.startswith("-") or "=" in token:
        return None
    name = token.lstrip("-")
    for candidate in (name, name[2:] if name.startswith("no") else None):
        if candidate and candidate in flag_values and flag_values[candidate].boolean:
            return candidate
    return None


def stray_argument_error(argv, stray, flag_values=None):
    """The message for `stray`, an argument of `argv` that is no flag and no flag's value.

    After a boolean flag (`--second_order false`), absl sets the flag to true and leaves
    `false` over: the message says to write `--second_order=false` or `--nosecond_order`.
    """
    flag_values = flags.FLAGS if flag_values is None else flag_values
    args = list(argv[1:])
    end = args.index("--") if "--" in args else len(args)
    for previous, token in zip(args[:end], args[1:end]):
        name = _boolean_flag(previous, flag_values)
        if token == stray and name and token.lower() in _BOOLEAN_WORDS:
            return (f"{previous} {token}: a boolean flag takes no separate value, so this "
                    f"would set --{name} and ignore {token!r}. Write --{name}=true or "
                    f"--{name}=false (or --{name} / --no{name}).")
    return (f"unexpected argument {stray!r}: the tools take only flags, written "
            "--name=value (quote a value with spaces).")


def _parse_flags(argv):
    """absl's flag parsing, with one `error:` line instead of its FATAL block; an argument
    left over (not a flag, not a flag's value) is an error too, never ignored."""
    program = os.path.basename(argv[0]) if argv else "the tool"
    try:
        rest = flags.FLAGS(argv)
    except flags.Error as error:
        message = str(error)
    else:
        if len(rest) <= 1:
            return rest
        message = stray_argument_error(argv, rest[1])
    print(f"error: {message} (python {program} --helpshort lists the flags)", file=sys.stderr)
    sys.exit(USAGE_EXIT_CODE)


def hide_info_logs(flag_values=None):
    """Hide the INFO records of Python logging (TensorFlow's, absl's) below
    `--verbose=2`, and in a tool without `--verbose`.

    `absl.app` logs at INFO by default, so a run with `--strategy=mirrored`
    printed some 46 lines ("Using MirroredStrategy with devices ...", "Reduce
    to ... then broadcast to ...") even at `--verbose=0`. Warnings still show;
    a `--verbosity` the user gives (absl's own flag) is left as given.
    """
    flag_values = flags.FLAGS if flag_values is None else flag_values
    if "verbosity" in flag_values and flag_values["verbosity"].present:
        return
    verbose = flag_values["verbose"].value if "verbose" in flag_values else None
    if isinstance(verbose, int) and verbose >= VERBOSE_SHOWS_INFO_LOGS:
        return
    absl_logging.set_verbosity(absl_logging.WARNING)
    logging.getLogger("tensorflow").setLevel(logging.WARNING)


def run_tool(main, argv=None):
    """Run `main(argv)` under `absl.app.run`; a user error is one `error:` line.

    Args:
        main: the tool's `main(argv)`.
        argv: the command line (default `sys.argv`).

    Exits with code 2 after a user error (see the module docstring), with the
    traceback and code 1 after any other exception, else as `main` does.
    """
    def guarded_main(args):
        hide_info_logs()
        try:
            return main(args)
        except Exception as error:
            if os.environ.get(TRACEBACK_VARIABLE, "") not in ("", "0") or not is_user_error(
                    error):
                raise
            print(error_line(error), file=sys.stderr)
            if getattr(error, "exit_at_once", False):  # see io_utils.OutOfSpaceError
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(USAGE_EXIT_CODE)
            sys.exit(USAGE_EXIT_CODE)

    app.run(guarded_main, argv=argv, flags_parser=_parse_flags)
