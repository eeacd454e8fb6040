"""TensorFlow's start-up lines kept off the screen: `import keras_sgn` and the tools.

TensorFlow's C++ start-up lines ("Could not find cuda drivers", "failed call to
cuInit" on a machine without a GPU, "oneDNN custom operations are on", "All log
messages before absl::InitializeLog() is called...") are written straight to
file descriptor 2 before its logging is set up, so `TF_CPP_MIN_LOG_LEVEL` does
not reach them. `tensorflow_logs_hidden` sends file descriptor 2 to a temporary
file around the import and prints back whatever was not one of those lines (a
Python warning, an error message), so a real problem still shows; if the block
fails, everything captured is printed back.

`import keras_sgn` hides them unless `TF_CPP_MIN_LOG_LEVEL=0` (the setting that
asks for every log) or TensorFlow was imported before keras_sgn: it calls
`import_everything`, which a program that imported keras_sgn lazily
(`KERAS_SGN_LAZY_IMPORT=1`, as the tools do until their flags are checked) calls itself.
Standard library only at import: nothing here imports TensorFlow until that call.
"""

import contextlib
import importlib
import os
import re
import sys
import tempfile

# A record of TensorFlow's C++ logging (absl format, from a C++ source file):
# "I0000 00:00:1796094486.610066   16804 port.cc:153] oneDNN custom operations...".
# Python's absl records ("W1201 ... polymorphic_function.py:157]") do not match.
_TENSORFLOW_LOG_LINE = re.compile(
    r"[IWEF]\d{4} [\d:.]+\s+\d+ \S+\.(?:cc|cpp|h):\d+\] "
    r"|WARNING: All log messages before absl::InitializeLog\(\) is called"
    # The second line of cpu_feature_guard.cc's record.
    r"|To enable the following instructions: .*rebuild TensorFlow")



def wants_tensorflow_logs():
    """Whether the environment asks for TensorFlow's start-up logs (`TF_CPP_MIN_LOG_LEVEL=0`)."""
    return os.environ.get("TF_CPP_MIN_LOG_LEVEL", "").strip() == "0"


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


def import_everything():
    """Import Keras (checking its backend), TensorFlow and every part of keras_sgn,
    registering the layers, models and schedules with Keras (what `import keras_sgn`
    does without `KERAS_SGN_LAZY_IMPORT=1`). TensorFlow's start-up lines are hidden
    when this is what starts TensorFlow, unless `wants_tensorflow_logs()`. Calling it
    again costs nothing."""
    import keras_sgn

    hide = "tensorflow" not in sys.modules and not wants_tensorflow_logs()
    with tensorflow_logs_hidden() if hide else contextlib.nullcontext():
        import keras

        if keras.config.backend() != "tensorflow":
            raise ImportError(
                "keras_sgn needs the TensorFlow backend of Keras (it uses tf.GradientTape "
                f"and tf.distribute); KERAS_BACKEND is {keras.config.backend()!r}. "
                "Set KERAS_BACKEND=tensorflow.")
        import tensorflow as tf

        # The first look at the devices prints "failed call to cuInit" without a GPU.
        tf.config.list_physical_devices()
        for part in keras_sgn._PARTS:
            importlib.import_module(f"keras_sgn.{part}")
