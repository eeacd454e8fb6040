"""Two worker processes on localhost, each with its own TF_CONFIG, train one
epoch of a digits subset together with MultiWorkerMirroredStrategy."""

import json
import os
import socket
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TIMEOUT = 300


def free_ports(n):
    """Ports nobody listens on now (bound to port 0, then released)."""
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("localhost", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _run_cluster(command, tmp_path, tag):
    """`command` on two local workers (each its own TF_CONFIG and TMPDIR);
    returns `(return codes, outputs, temporary folders)`."""
    ports = free_ports(2)
    cluster = {"worker": [f"localhost:{port}" for port in ports]}
    processes, temp_dirs = [], []
    try:
        for index in range(2):
            temp = tmp_path / f"{tag}-tmp{index}"
            temp.mkdir()
            temp_dirs.append(temp)
            env = dict(os.environ, PYTHONPATH=ROOT, TMPDIR=str(temp), TF_CONFIG=json.dumps(
                {"cluster": cluster, "task": {"type": "worker", "index": index}}))
            processes.append(subprocess.Popen(command, env=env, cwd=ROOT, text=True,
                                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT))
        outputs = [p.communicate(timeout=TIMEOUT)[0] for p in processes]
    finally:
        for p in processes:
            if p.poll() is None:
                p.kill()
                p.wait()
    return [p.returncode for p in processes], outputs, temp_dirs


@pytest.mark.slow
def test_two_workers_train_together_and_only_the_chief_writes(tmp_path):
    out = tmp_path / "run"
    command = [sys.executable, os.path.join(ROOT, "tools", "train.py"), "--dataset=digits",
               "--method=sgn", "--strategy=multi_worker", "--epochs=1", "--batch_size=32",
               "--n_train=128", "--n_eval=32", "--eval_steps=2", "--test_steps=2",
               "--verbose=2", f"--output_dir={out}"]
    codes, outputs, temp_dirs = _run_cluster(command, tmp_path, "first")
    for code, output in zip(codes, outputs):
        assert code == 0, output[-4000:]
    chief, worker = outputs
    for output in outputs:
        assert "2 replica(s) over 2 worker(s)" in output
        assert "global batch 32 (16 per replica)" in output
    assert "(chief)" in chief and "(chief)" not in worker
    assert "the chief writes the model" in worker
    summary = json.loads((out / "summary.json").read_text())
    assert summary["epochs"] == 1 and summary["workers"] == 2 and summary["replicas"] == 2
    assert (out / "model.keras").stat().st_size > 0
    assert not (out / "backup").exists()
    # The non-chief wrote into a temporary folder, removed at the end.
    assert not [p for p in temp_dirs[1].iterdir() if p.name.startswith("keras_sgn-")]
    # Both workers logged the same (globally reduced) epoch metrics (their own clocks aside).
    epoch_line = [line for line in chief.splitlines() if "step - " in line and "loss" in line]
    metrics = epoch_line[-1].split("step - ")[-1].split(" - train_seconds")[0] if epoch_line else ""
    assert metrics and "val_robust_accuracy" in metrics and metrics in worker

    # The same command again: the chief finds the run complete, and the worker
    # learns it from the chief (nobody trains, nobody waits for the other).
    codes, outputs, _ = _run_cluster(command, tmp_path, "again")
    assert codes == [0, 0], outputs
    assert "already holds this run" in outputs[0] and "nothing written" in outputs[0]
    assert "the run was already complete" in outputs[1]
    assert json.loads((out / "summary.json").read_text()) == summary
