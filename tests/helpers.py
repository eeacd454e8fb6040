"""Shared test helpers: accuracy, threat-model checks, exact linear ground truth."""

import importlib.util
import json
import os
import subprocess
import sys

import numpy as np

TOOLS_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tools")


def tool_command(tool, *args, prelude=None):
    """The command line that runs `tools/<tool>`; with `prelude`, Python code run first in
    the tool's process (a test's monkeypatch), then the tool as `python tools/<tool>`."""
    path = os.path.join(TOOLS_DIR, tool)
    if prelude is None:
        return [sys.executable, path, *args]
    start = (f"{prelude}\nimport runpy, sys\nsys.argv = sys.argv[1:]\n"
             f"sys.path.insert(0, {TOOLS_DIR!r})\nrunpy.run_path(sys.argv[0], run_name='__main__')")
    return [sys.executable, "-c", start, path, *args]


def tool_environment():
    """The environment a tool runs in: the project importable, no traceback switch."""
    env = dict(os.environ, PYTHONPATH=os.path.dirname(TOOLS_DIR))
    env.pop("KERAS_SGN_TRACEBACK", None)
    return env


def run_tool(tool, *args, timeout=300, prelude=None):
    """Run `tools/<tool>` as a user does, from the project root (no traceback switch);
    `prelude`: as `tool_command` takes it."""
    return subprocess.run(tool_command(tool, *args, prelude=prelude), capture_output=True,
                          text=True, timeout=timeout, env=tool_environment(),
                          cwd=os.path.dirname(TOOLS_DIR))


def tool_module(file_name, module_name):
    """The module of `tools/<file_name>` (tools/ is not a package), executed."""
    spec = importlib.util.spec_from_file_location(module_name,
                                                  os.path.join(TOOLS_DIR, file_name))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def collect(dataset):
    """All `(images, labels)` of a batched tf.data dataset as two NumPy arrays."""
    xs, ys = [], []
    for x, y in dataset:
        xs.append(np.asarray(x))
        ys.append(np.asarray(y))
    return np.concatenate(xs), np.concatenate(ys)


def accuracy(model, x, y):
    return float(np.mean(np.argmax(model(x, training=False), -1) == y))


def assert_in_ball(x_adv, x, epsilon, norm):
    """Adversarial images lie in the norm ball around `x` and in [0, 1]."""
    x_adv = np.asarray(x_adv)
    assert x_adv.shape == x.shape and x_adv.dtype == np.float32
    assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0
    delta = (x_adv - x).reshape(len(x), -1)
    if norm == "linf":
        assert np.abs(delta).max() <= epsilon + 1e-6
    else:
        assert np.linalg.norm(delta, axis=1).max() <= epsilon + 1e-5
    return delta


def exact_linf_worst_case(weights, bias, x, y, epsilon):
    """Exact L-inf worst case of a linear classifier, the [0, 1] box included.

    For each wrong class j the margin `(w_y - w_j).x' + b_y - b_j` is linear, so
    its minimum over the ball intersected with the box is attained coordinate-wise
    at `lo = max(-eps, -x)` or `hi = min(eps, 1 - x)`. Returns `(margin, vertex)`:
    the smallest margin per example (robust iff > 0) and the point attaining it.
    """
    weights, bias = np.asarray(weights, np.float64), np.asarray(bias, np.float64)
    flat = x.reshape(len(x), -1).astype(np.float64)
    lo = np.maximum(-epsilon, -flat)
    hi = np.minimum(epsilon, 1.0 - flat)
    margin = np.full(len(flat), np.inf)
    vertex = flat.copy()
    for j in range(weights.shape[1]):
        c = weights[:, y].T - weights[:, j][None]
        m_j = (c * flat).sum(1) + bias[y] - bias[j] + np.minimum(c * lo, c * hi).sum(1)
        m_j[y == j] = np.inf
        worse = m_j < margin
        vertex[worse] = (flat + np.where(c > 0, lo, hi))[worse]
        margin = np.minimum(margin, m_j)
    return margin, vertex


def run_check_script(file_name, timeout=600):
    """Run `tests/<file_name>` in a fresh process (e.g. one that splits the CPU
    into logical devices before TensorFlow starts) from the project root; it
    must succeed, and its last line is JSON: returns it."""
    root = os.path.dirname(TOOLS_DIR)
    result = subprocess.run([sys.executable, os.path.join(root, "tests", file_name)],
                            capture_output=True, text=True, timeout=timeout, cwd=root,
                            env=dict(os.environ, PYTHONPATH=root))
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def train_through_sigterms(config, steps, interrupt_at, check_backup):
    """Train `config` stopped by SIGTERM during each global step of `steps` (each
    rerun resuming from the backup), then to its end; `check_backup(state,
    arrays, step)` sees each backup's `state.json` and its own variables (the
    `.npz` of the training methods' state)."""
    from keras_sgn import training

    backup = os.path.join(config.output_dir, "backup")
    for step in steps:
        interrupt_at(step, "sigterm")
        try:
            training.train(config)
        except training.callbacks.TrainingPreempted:
            pass
        else:
            raise AssertionError(f"the run was not stopped at step {step}")
        with open(os.path.join(backup, "state.json")) as f:
            state = json.load(f)
        with np.load(os.path.join(backup, state["variables"])) as arrays:
            check_backup(state, dict(arrays), step)
    training.train(config)
