"""A training run's hyperparameters and final metrics in its TensorBoard logs
(the HParams dashboard), read back from the event file."""

import pytest
from tensorboard.backend.event_processing import event_accumulator
from tensorboard.plugins.hparams import metadata
from tensorboard.util import tensor_util

from keras_sgn import training
from keras_sgn.training.callbacks.hparams import FINAL_METRICS, run_hparams


def _read_logs(log_dir):
    """`(hyperparameters, {tag: value})` of the event file(s) at the root of `log_dir`."""
    events = event_accumulator.EventAccumulator(str(log_dir), size_guidance={"tensors": 0})
    events.Reload()
    content = events.PluginTagToContent(metadata.PLUGIN_NAME)[metadata.SESSION_START_INFO_TAG]
    start = metadata.parse_session_start_info_plugin_data(content)
    hparams = {name: value.WhichOneof("kind") and getattr(value, value.WhichOneof("kind"))
               for name, value in start.hparams.items()}
    scalars = {tag: float(tensor_util.make_ndarray(events.Tensors(tag)[-1].tensor_proto))
               for tag in events.Tags()["tensors"] if tag in FINAL_METRICS.values()}
    return hparams, scalars


@pytest.mark.slow  # end to end: a run of 20-60 s (make test-slow, which CI runs)
def test_a_training_run_writes_its_hparams_and_final_metrics(tmp_path):
    out = tmp_path / "run"
    summary = training.train(training.TrainConfig(
        dataset="digits", method="sgn", epochs=1, batch_size=16, n_train=32, n_eval=16,
        eval_steps=1, test_steps=1, beta="0.02", verbose=0, output_dir=str(out)))
    hparams, scalars = _read_logs(out / "logs")
    assert hparams["method"] == "sgn" and hparams["dataset"] == "digits"
    assert hparams["model"] == summary["model"] and hparams["beta"] == "0.02"
    assert hparams["epsilon"] == pytest.approx(summary["epsilon"])
    assert hparams["epochs"] == 1 and hparams["batch_size"] == 16
    assert "learning_rate" in hparams and "clean_weight" in hparams
    assert "trades_beta" not in hparams  # another method's option
    assert scalars == {
        "final/test_clean_accuracy": pytest.approx(summary["clean_accuracy"]),
        "final/test_robust_accuracy": pytest.approx(summary["robust_accuracy"]),
        "final/best_val_robust_accuracy": pytest.approx(summary["best_val_robust_accuracy"]),
    }
    # The epoch curves stay beside them, where the dashboard finds them.
    assert any((out / "logs" / "validation").glob("*tfevents*"))


def test_hparams_are_the_recipe_with_the_method_own_options():
    trades = run_hparams(training.TrainConfig(dataset="digits", method="trades").resolved())
    assert trades["trades_beta"] == 6.0 and trades["method"] == "trades"
    assert "free_replays" not in trades and "output_dir" not in trades
    sgn = run_hparams(training.TrainConfig(dataset="digits", second_order=True).resolved())
    assert sgn["second_order"] is True and sgn["sites"] == "default"
    assert all(isinstance(v, (bool, int, float, str)) for v in sgn.values())
