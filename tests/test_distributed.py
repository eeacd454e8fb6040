"""Distribution: MirroredStrategy on 2 logical CPUs gives the same training as 1
replica (random starts included), strategy selection, TPU fail-fast."""

import json
import os
import socket
import subprocess
import sys

import pytest

from keras_sgn import training

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("mirrored") / "report.json"
    env = dict(os.environ, PYTHONPATH=ROOT)
    result = subprocess.run([sys.executable, os.path.join(HERE, "mirrored_check.py"), str(out)],
                            capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(out.read_text())


@pytest.mark.slow
def test_two_replicas(report):
    assert report["replicas"] == 2


@pytest.mark.parametrize("method", ["standard", "pgd", "sgn", "pgd-uneven", "sgn-batchnorm",
                                    "pgd-xla"])
@pytest.mark.slow
def test_mirrored_equals_one_replica(report, method):
    """pgd and sgn with their default random starts; an uneven last batch;
    synchronized BatchNorm; the attack XLA-compiled per replica."""
    result = report["methods"][method]
    assert result["max_weight_change"] > 0.01  # it did train
    assert result["max_weight_difference"] < 1e-4, result
    # Metrics are not divided by the replica count.
    assert abs(result["loss"][0] - result["loss"][1]) < 1e-3, result
    assert abs(result["eval_loss"][0] - result["eval_loss"][1]) < 1e-3, result
    assert abs(result["accuracy"][0] - result["accuracy"][1]) < 1e-6, result
    # The validation attack's random start is replica-independent too.
    assert abs(result["robust_accuracy"][0] - result["robust_accuracy"][1]) < 1e-6, result


@pytest.mark.slow
def test_replicas_draw_different_random_starts(report):
    assert report["random_starts_differ"]
    # ... which are exactly the rows of one draw for the global batch ...
    assert report["random_starts_match_global"] < 1e-6
    # ... which with one replica is attacks.random_start itself.
    assert report["single_replica_unchanged"] == 0.0


@pytest.mark.slow
def test_batch_not_divisible_by_replicas_is_refused(report):
    assert "batch_size" in report["batch_error"] and "divisible" in report["batch_error"]


@pytest.mark.parametrize("tpu,gpus,tasks,expected", [
    ("my-tpu", 8, 0, "tpu"),
    (None, 0, 2, "multi_worker"),
    (None, 4, 0, "mirrored"),
    (None, 1, 0, "one_device"),
    (None, 0, 0, "default"),
    (None, 0, 1, "default"),  # a one-task TF_CONFIG is not a cluster
])
def test_auto_picks_the_best_local_strategy(tpu, gpus, tasks, expected):
    assert training.distribute.resolve_strategy_name("auto", tpu, num_gpus=gpus,
                                                     tf_config_tasks=tasks) == expected
    assert training.distribute.resolve_strategy_name("mirrored", tpu, num_gpus=gpus) == "mirrored"
    with pytest.raises(ValueError, match="strategy"):
        training.distribute.resolve_strategy_name("everything")


def test_tf_config_tasks(monkeypatch):
    monkeypatch.setenv("TF_CONFIG", json.dumps({
        "cluster": {"chief": ["a:1"], "worker": ["b:1", "c:1"]},
        "task": {"type": "worker", "index": 0}}))
    assert training.distribute.tf_config_task_count() == 3
    monkeypatch.delenv("TF_CONFIG")
    assert training.distribute.tf_config_task_count() == 0


class _Resolver:
    def __init__(self, cluster, task_type, task_id):
        self._cluster, self.task_type, self.task_id = cluster, task_type, task_id

    def cluster_spec(self):
        import tensorflow as tf

        return tf.train.ClusterSpec(self._cluster)


@pytest.mark.parametrize("cluster,task_type,task_id,chief", [
    ({"worker": ["a:1", "b:1"]}, "worker", 0, True),
    ({"worker": ["a:1", "b:1"]}, "worker", 1, False),
    ({"chief": ["a:1"], "worker": ["b:1"]}, "chief", 0, True),
    ({"chief": ["a:1"], "worker": ["b:1"]}, "worker", 0, False),  # the chief task is chief
])
def test_only_the_chief_writes(monkeypatch, cluster, task_type, task_id, chief):
    import tensorflow as tf

    strategy = object.__new__(tf.distribute.MultiWorkerMirroredStrategy)
    monkeypatch.setattr(tf.distribute.MultiWorkerMirroredStrategy, "cluster_resolver",
                        property(lambda self: _Resolver(cluster, task_type, task_id)))
    info = training.distribute.worker_info(strategy)
    assert info == (task_type, task_id, 2, chief)
    assert training.distribute.worker_info(tf.distribute.get_strategy()) == (None, 0, 1, True)


def _closed_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_tpu_fails_fast_naming_the_flag():
    with pytest.raises(training.distribute.StrategyError, match="--tpu=grpc://127.0.0.1"):
        training.get_strategy("tpu", tpu=f"grpc://127.0.0.1:{_closed_port()}")
    with pytest.raises(training.distribute.StrategyError, match="--tpu"):
        training.get_strategy("tpu")


def test_tool_refuses_tpu_strategy_without_a_tpu(tmp_path):
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, "tools", "train.py"), "--dataset=digits",
         "--strategy=tpu", f"--output_dir={tmp_path / 'run'}"],
        capture_output=True, text=True, timeout=120, env=dict(os.environ, PYTHONPATH=ROOT))
    assert result.returncode != 0
    assert "--tpu" in result.stderr
    assert not (tmp_path / "run").exists()
