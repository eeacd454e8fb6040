"""keras_sgn.tuning at a fixed training-time budget per trial (`time_budget_minutes`,
`tools/tune.py --time_budget_minutes`): epochs from each trial's measured epoch time,
the safety stop, the spending in the trial table; unchanged without a budget."""

import math
import os
import subprocess
import sys

import keras_tuner
import pytest

from keras_sgn import training, tuning
from keras_sgn.errors import ArgumentError
from keras_sgn.training.callbacks import TrainingClock
from keras_sgn.tuning import budget

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# digits' batch size is 64: two training steps per epoch.
TINY = dict(dataset="digits", epochs=2, n_train=128, n_eval=32, eval_steps=2, verbose=0)
SPACE = {"second_order": False, "sites": ["input", "input,stage2"]}


def _hypermodel(**kwargs):
    return tuning.SGNHyperModel(training.TrainConfig(**TINY), model_kwargs={"width": 8},
                                space=SPACE, **kwargs)


def _search(tmp_path, hypermodel, max_trials=2):
    tuner = tuning.make_tuner(hypermodel, "random", max_trials=max_trials,
                              directory=str(tmp_path), project_name="budget", tensorboard=False)
    tuning.search(tuner, verbose=0)
    return tuner, tuning.results.trial_rows(tuner, hypermodel)


def _no_timing(*args, **kwargs):
    raise AssertionError("the epoch time was measured")


@pytest.mark.parametrize("minutes", [0, -1, math.nan, math.inf, "five", True])
def test_a_bad_budget_is_refused_before_anything_is_built(minutes, tmp_path, monkeypatch):
    monkeypatch.setattr(budget, "measure_epoch_seconds", _no_timing)
    monkeypatch.setattr(tuning.SGNHyperModel, "_build_model", _no_timing)
    with pytest.raises(ArgumentError, match="--time_budget_minutes"):
        _hypermodel(time_budget_minutes=minutes)
    with pytest.raises(ArgumentError, match="time_budget_minutes"):
        tuning.tune(training.TrainConfig(**TINY), tuner="random",
                    directory=str(tmp_path / "search"), time_budget_minutes=minutes)
    assert not (tmp_path / "search").exists()


def test_hyperband_sets_its_own_epochs_so_a_budget_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(tuning.SGNHyperModel, "_build_model", _no_timing)
    with pytest.raises(ArgumentError, match="--tuner=random"):
        tuning.tune(training.TrainConfig(**TINY), tuner="hyperband",
                    directory=str(tmp_path / "search"), time_budget_minutes=5)
    assert not (tmp_path / "search").exists()


def test_epochs_are_the_whole_epochs_that_fit_the_budget():
    assert budget.budget_epochs(300.0, 60.0) == 5
    assert budget.budget_epochs(300.0, 61.0) == 4
    assert budget.budget_epochs(300.0, 700.0) == 1  # at least one
    with pytest.raises(ArgumentError):
        budget.budget_epochs(300.0, 0.0)


def test_the_epoch_time_is_measured_on_the_compiled_model():
    hypermodel = _hypermodel(time_budget_minutes=1)
    model = hypermodel._compiled(hypermodel.config_for(hypermodel.default_values()))
    seconds = budget.measure_epoch_seconds(model, hypermodel.train_data(),
                                           hypermodel.steps_per_epoch(), warmup=1, repeats=2)
    assert 0 < seconds < 60


@pytest.mark.slow
def test_each_trial_trains_the_epochs_its_epoch_time_fits(tmp_path, monkeypatch):
    # 1 minute at 20 s per epoch: 3 epochs (max_epochs, 2, is not used).
    timed = []

    def fake(model, data, steps_per_epoch, **kwargs):
        timed.append(steps_per_epoch)
        return 20.0

    monkeypatch.setattr(budget, "measure_epoch_seconds", fake)
    hypermodel = _hypermodel(time_budget_minutes=1)
    # The trial's schedule spans its own 3 epochs (2 steps each).
    hp = keras_tuner.HyperParameters()
    hypermodel.declare(hp)
    model = hypermodel.build(hp)
    assert model.optimizer._learning_rate.decay_steps == 3 * 2

    tuner, rows = _search(tmp_path, hypermodel)
    # The probe above, then once per trial setting (trial 1, the default, may reuse it).
    assert set(timed) == {2} and 2 <= len(timed) <= 3
    assert [r["status"] for r in rows] == ["COMPLETED"] * 2
    for row in rows:
        assert (row["epochs"], row["planned_epochs"]) == (3, 3)
        assert row["epoch_seconds"] == 20.0 and not row["budget_stopped"]
        assert 0 < row["train_cpu_seconds"] < 75 and row["train_seconds"] > 0
    table = tuning.report.format_table(rows, epsilon=0.1)
    assert "| epochs | train s |" in table
    assert all(f"/3 | {r['train_cpu_seconds']:.0f} |" in table for r in rows)
    result = tuning.write_outputs(tuner, hypermodel, str(tmp_path / "out"), "random")
    assert result["best"]["epochs"] == 3
    summary = tuning.load_best(str(tmp_path / "out" / "best_hyperparameters.json"))
    assert summary["time_budget_minutes"] == 1.0 and summary["planned_epochs"] == 3
    markdown = (tmp_path / "out" / "results.md").read_text()
    assert "same training time, 1 min" in markdown


def test_the_safety_stop_ends_a_trial_whose_clock_overruns(tmp_path, monkeypatch):
    monkeypatch.setattr(budget, "measure_epoch_seconds", lambda *a, **k: 20.0)
    ticks = iter(range(0, 10**6, 100))

    def fake_now():  # every reading 100 s later: the first step already overruns 75 s
        t = float(next(ticks))
        return t, t

    monkeypatch.setattr(TrainingClock, "_now", staticmethod(fake_now))
    hypermodel = _hypermodel(time_budget_minutes=1)
    tuner, rows = _search(tmp_path, hypermodel, max_trials=1)
    (row,) = rows
    assert row["status"] == "COMPLETED" and row["val_robust_accuracy"] is not None
    assert (row["epochs"], row["planned_epochs"], row["budget_stopped"]) == (1, 3, True)
    assert row["train_cpu_seconds"] > budget.OVERRUN * 60
    assert "/1 of 3 (stopped) |" in tuning.report.format_table(rows)


def test_without_a_budget_trials_train_max_epochs_as_before(tmp_path, monkeypatch):
    monkeypatch.setattr(budget, "measure_epoch_seconds", _no_timing)
    hypermodel = _hypermodel()
    assert hypermodel.time_budget_minutes is None
    _, rows = _search(tmp_path, hypermodel, max_trials=1)
    (row,) = rows
    assert row["epochs"] == 2 and "planned_epochs" not in row
    assert "train_cpu_seconds" not in row
    assert "train s" not in tuning.report.format_table(rows)


def test_tune_py_refuses_a_zero_budget_naming_the_flag():
    env = {k: v for k, v in os.environ.items() if not k.startswith("KERASTUNER_")}
    env.update(PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="2")
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, "tools", "tune.py"), "--dataset=digits",
         "--tuner=random", "--time_budget_minutes=0", "--directory=/nonexistent/never"],
        capture_output=True, text=True, timeout=300, env=env, cwd=ROOT)
    assert result.returncode == 2, result.stderr[-3000:]
    assert "--time_budget_minutes" in result.stderr and "Received: 0.0" in result.stderr
