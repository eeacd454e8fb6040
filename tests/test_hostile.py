"""The hostile suite: a user who misuses the tools gets a clear refusal, never a
wrong answer (issue 23, point 4). One test per misuse the probe found; each
failed before its fix."""

import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from keras_sgn import attacks

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _tool(tool, *args, timeout=300):
    """Run `tools/<tool>` as a user does (no traceback switch)."""
    env = dict(os.environ, PYTHONPATH=ROOT)
    env.pop("KERAS_SGN_TRACEBACK", None)
    return subprocess.run([sys.executable, os.path.join(ROOT, "tools", tool), *args],
                          capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT)


def _error_line(result):
    """The tool's one `error:` line (exit code 2, no traceback)."""
    assert result.returncode == 2, result.stdout[-2000:] + result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    return line


def _linear_digits_model():
    return keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(),
                             keras.layers.Dense(10)])


# -- 8. a NaN pixel given to an attack ---------------------------------------------------

def test_an_attack_refuses_a_nan_pixel():
    model = _linear_digits_model()
    x = np.random.default_rng(0).random((4, 8, 8, 1), dtype=np.float32)
    y = np.arange(4, dtype=np.int32)
    x[1, 3, 3, 0] = np.nan
    with pytest.raises(ValueError, match=r"x must be finite.*Received: 1 NaN or infinite"):
        attacks.pgd(model, x, y, epsilon=0.1, steps=2)
    x[1, 3, 3, 0] = np.inf
    with pytest.raises(ValueError, match="must be finite"):
        attacks.fgsm(model, x, y, epsilon=0.1)
    x[1, 3, 3, 0] = 0.5
    assert np.isfinite(np.asarray(attacks.pgd(model, x, y, epsilon=0.1, steps=2))).all()
