"""The tools print no TensorFlow start-up logs unless `--verbose=2` (tools/quiet_start.py),
and the compiled attacks raise no false "retracing" warnings."""

import logging
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from keras_sgn import attacks, startup
from tests.helpers import tool_module

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# What TensorFlow prints at start-up ("I0000 ... port.cc:153] oneDNN custom operations
# are on", "E0000 ... failed call to cuInit", "WARNING: All log messages before
# absl::InitializeLog() ...") and the retracing warning.
NOISE = ("I0000", "E0000", "W0000", "cuInit", "oneDNN", "absl::InitializeLog", "retracing")


quiet_start = tool_module("quiet_start.py", "quiet_start")


def _run(tool, *args):
    """`tools/<tool> args` as a user runs it: stdout + stderr, and the exit code."""
    # As in a user's shell: without the TF_CPP_MIN_LOG_LEVEL the test session sets.
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    result = subprocess.run([sys.executable, os.path.join(ROOT, "tools", tool), *args],
                            capture_output=True, text=True, timeout=120, cwd=ROOT,
                            env=dict(env, PYTHONPATH=ROOT))
    return result.stdout + result.stderr, result.returncode


def _noise(output):
    return [line for line in output.splitlines() if any(word in line for word in NOISE)]


def test_verbose_is_read_from_the_command_line_before_absl():
    verbose = quiet_start.verbose_from_argv
    assert verbose(["tool.py"]) is None
    assert verbose(["tool.py", "--verbose=2"]) == 2
    assert verbose(["tool.py", "--verbose", "3", "--epochs=1"]) == 3
    assert verbose(["tool.py", "-verbose=0"]) == 0
    assert verbose(["tool.py", "--verbose=2", "--verbose=1"]) == 1  # the last wins, as in absl
    assert verbose(["tool.py", "--verbose=high"]) is None  # absl reports the bad value
    assert verbose(["tool.py", "--verbose"]) is None
    assert verbose(["tool.py", "--verbosity=2", "--verbose_log=3"]) is None  # other flags
    assert verbose(["tool.py", "--", "--verbose=2"]) is None  # not a flag after --
    assert verbose(["tool.py", "--run_dir", "--verbose=2"]) == 2
    assert quiet_start.shows_tensorflow_logs(["tool.py", "--verbose=2"])
    assert not quiet_start.shows_tensorflow_logs(["tool.py", "--verbose=1"])
    assert not quiet_start.shows_tensorflow_logs(["tool.py"])
    # With --verbose=2 nothing is hidden.
    assert quiet_start.prepare(["tool.py", "--verbose", "2"]) is False
    assert quiet_start.prepare(["tool.py", "--verbose=1"]) is True


def test_only_tensorflow_log_lines_are_dropped():
    captured = (
        "WARNING: All log messages before absl::InitializeLog() is called are written to "
        "STDERR\n"
        "I0000 00:00:1796094486.610066   16804 port.cc:153] oneDNN custom operations are on.\n"
        "E0000 00:00:1796094496.961249   16804 cuda_platform.cc:52] failed call to cuInit\n"
        "I0000 00:00:1796094646.177690   18384 cpu_feature_guard.cc:227] This TensorFlow binary "
        "is optimized\n"
        "To enable the following instructions: AVX2 FMA, in other operations, rebuild "
        "TensorFlow with the appropriate compiler flags.\n"
        "/home/me/lib.py:3: UserWarning: a real warning\n"
        "  warnings.warn('a real warning')\n"
        "W1201 03:09:47.117079 140618831825792 polymorphic_function.py:157] a Python record\n")
    assert startup.drop_tensorflow_logs(captured) == (
        "/home/me/lib.py:3: UserWarning: a real warning\n"
        "  warnings.warn('a real warning')\n"
        "W1201 03:09:47.117079 140618831825792 polymorphic_function.py:157] a Python record\n")


def test_what_is_printed_while_hidden_comes_back_without_the_logs(capfd):
    with startup.tensorflow_logs_hidden():
        os.write(2, b"I0000 00:00:1.5   7 port.cc:153] oneDNN custom operations are on\n")
        print("a real warning", file=sys.stderr)
    os.write(2, b"error: printed after start-up\n")  # stderr is back
    assert capfd.readouterr().err == "a real warning\nerror: printed after start-up\n"
    with pytest.raises(ImportError):  # a failed start-up shows everything it printed
        with startup.tensorflow_logs_hidden():
            os.write(2, b"E0000 00:00:1.5   7 loader.cc:1] why the import failed\n")
            raise ImportError("no module")
    assert "why the import failed" in capfd.readouterr().err


def test_an_evaluation_prints_no_tensorflow_logs(tmp_path):
    output, code = _run("evaluate.py", "--model=sgn-cnn-digits", "--attacks=pgd-ce:steps=2",
                        "--n_examples=32", "--sanity_checks=false", "--verbose=0",
                        f"--output_dir={tmp_path}")
    assert code == 0, output
    assert "robust accuracy" in output and (tmp_path / "report.json").exists()
    assert _noise(output) == []


def test_verbose_2_shows_the_tensorflow_logs():
    # The same start-up, not hidden: the lines the test above looks for are there (a usage
    # error after the start-up; --help would not start TensorFlow at all).
    output, code = _run("evaluate.py", "--verbose=2")
    assert code == 2 and "error: give --run_dir" in output, output[-2000:]
    assert "I0000" in output or "absl::InitializeLog" in output, output[:2000]


def test_importing_keras_sgn_prints_no_tensorflow_logs():
    # TensorFlow prints its start-up lines twice at import; a library user sees none,
    # unless TF_CPP_MIN_LOG_LEVEL=0 asks for every log.
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    code = "import warnings, sys\nimport keras_sgn\nprint('a real warning', file=sys.stderr)"
    quiet = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           timeout=300, cwd=ROOT, env=env)
    assert quiet.returncode == 0, quiet.stderr[-2000:]
    assert _noise(quiet.stdout + quiet.stderr) == [] and "a real warning" in quiet.stderr
    loud = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300, cwd=ROOT, env=dict(env, TF_CPP_MIN_LOG_LEVEL="0"))
    assert loud.returncode == 0 and _noise(loud.stderr), loud.stderr[-2000:]


def test_a_tool_starting_tensorflow_after_its_flags_prints_no_logs(tmp_path):
    # train.py starts TensorFlow once the values of its flags are checked; an unknown
    # dataset is refused after that (the dataset catalogue needs it).
    output, code = _run("train.py", "--dataset=cifar11", f"--output_dir={tmp_path / 'run'}")
    assert code == 2 and output.startswith("error: ") and "cifar10" in output, output[-2000:]
    assert len(output.strip().splitlines()) == 1, output[-2000:]
    assert _noise(output) == []


def test_distinct_compiled_attacks_are_no_retracing(caplog):
    """Six attack settings are six functions traced once each: no retracing warning
    (TensorFlow keyed them all on one lambda's code and warned "5 out of the last 6")."""
    # A plain linear model: the warning depends on the functions, not the model,
    # and six traces of an SGN's while-loop took 45 s.
    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(),
                              keras.layers.Dense(10)])
    x = np.random.default_rng(0).random((4, 8, 8, 1), np.float32)
    y = np.arange(4, dtype=np.int32)
    with caplog.at_level(logging.WARNING, logger="tensorflow"):
        for steps in range(1, 7):
            attacks.pgd(model, x, y, epsilon=0.1, steps=steps)
    assert not [r for r in caplog.records if "retracing" in r.getMessage()]
