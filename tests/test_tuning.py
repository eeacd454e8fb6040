"""keras_sgn.tuning and tools/tune.py: the space, the recipe, searches that
complete, resume and run as chief + worker (tiny digits subsets)."""

import dataclasses
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

import keras_tuner
import pytest

from keras_sgn import config as sgn_config
from keras_sgn import data, training, tuning

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HERE = os.path.dirname(os.path.abspath(__file__))
TINY = dict(dataset="digits", epochs=1, n_train=64, n_eval=32, eval_steps=2, verbose=0)
CLI_TINY = ["--dataset=digits", "--max_epochs=1", "--n_train=128", "--n_eval=64",
            "--eval_steps=2", "--verbose=0", "--tensorboard=false"]


def _env(**extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("KERASTUNER_")}
    env.update(PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="2", **extra)
    return env


def _run(args, timeout=300, **env):
    return subprocess.run([sys.executable, *args], capture_output=True, text=True,
                          timeout=timeout, env=_env(**env), cwd=ROOT)


def _tiny_hypermodel(**space):
    return tuning.SGNHyperModel(training.TrainConfig(**TINY), model_kwargs={"width": 8},
                                space=space)



# -- the space -------------------------------------------------------------


def test_default_space_covers_the_feedback_hyperparameters():
    hypermodel = _tiny_hypermodel()
    assert hypermodel.site_names == ("input", "stage1", "stage2", "stage3")
    hp = keras_tuner.HyperParameters()
    hypermodel.declare(hp)
    names = {p.name for p in hp.space}
    assert names == {"sites", "input_step", "normalization", "second_order", "beta_stage1",
                     "beta_stage2", "beta_stage3", "clean_weight", "learning_rate",
                     "weight_decay"}
    sites = next(p for p in hp.space if p.name == "sites")
    assert sites.values == ["input", "input,stage1", "input,stage2", "input,stage3",
                            "input,stage1,stage2,stage3"]
    beta = next(p for p in hp.space if p.name == "beta_stage2")
    assert beta.sampling == "log" and (beta.min_value, beta.max_value) == (1e-3, 1e-1)
    # beta_stage2 only exists where stage2 is a site.
    assert [c.values for c in beta.conditions] == [["input,stage2",
                                                    "input,stage1,stage2,stage3"]]
    lr = next(p for p in hp.space if p.name == "learning_rate")
    assert lr.sampling == "log" and lr.min_value == pytest.approx(2e-3 / 5)


def test_fixed_values_and_ranges_from_strings():
    space = tuning.space.space_from_strings(
        "clean_weight=0|0.1;learning_rate=0.001:0.01", sites="input,stage2",
        beta="stage2=0.02", normalization="sign", second_order="false", weight_decay=None)
    assert space == {"clean_weight": [0.0, 0.1], "learning_rate": (0.001, 0.01),
                     "sites": "input,stage2", "beta_stage2": 0.02, "normalization": "sign",
                     "second_order": False}
    hypermodel = _tiny_hypermodel(**space)
    hp = keras_tuner.HyperParameters()
    values = hypermodel.declare(hp)
    assert {p.name: type(p).__name__ for p in hp.space if p.name != "weight_decay"} == {
        "sites": "Fixed", "input_step": "Choice", "normalization": "Fixed",
        "second_order": "Fixed", "beta_stage2": "Fixed", "clean_weight": "Choice",
        "learning_rate": "Float"}
    config = hypermodel.config_for(values)
    assert (config.sites, config.beta, config.normalization) == ("input,stage2",
                                                                 "stage2=0.02", "sign")


@pytest.mark.parametrize("space,match", [
    ({"sites": "input,stage9"}, "stage9"),
    ({"betta": 0.1}, "betta"),
    ({"clean_weight": [0.0, 2.0]}, "clean_weight"),
    ({"normalization": ["l2_relative", "l3"]}, "normalization"),
    ({"learning_rate": (0.1, 0.01)}, "low < high"),
    ({"sites": "none"}, "at least one site"),
])
def test_bad_space_names_the_problem(space, match):
    with pytest.raises(ValueError, match=match):
        _tiny_hypermodel(**space)


def test_only_self_gradient_methods_are_tuned():
    with pytest.raises(ValueError, match="method"):
        tuning.SGNHyperModel(training.TrainConfig(**{**TINY, "method": "pgd"}))


def test_the_input_step_follows_the_method():
    # A single-step input attack searches steps near epsilon, a PGD one fractions of it.
    assert tuning.hypermodel.METHODS == ("sgn", "sgn-pgd")
    sgn = _tiny_hypermodel()
    assert sgn.space["input_step"] == [0.5, 0.75, 1.0, 1.25]
    assert sgn.default_values()["input_step"] == 1.25
    pgd = tuning.SGNHyperModel(training.TrainConfig(**{**TINY, "method": "sgn-pgd"}),
                               model_kwargs={"width": 8})
    assert pgd.space["input_step"] == [0.1, 0.25, 0.5]
    assert pgd.default_values()["input_step"] == 0.25


def test_a_trial_is_a_train_config_and_its_recipe_is_train_py_flags():
    hypermodel = _tiny_hypermodel()
    values = {"sites": "input,stage1,stage3", "beta_stage1": 0.02, "beta_stage3": 0.004,
              "normalization": "sign", "input_step": 0.75, "clean_weight": 0.1,
              "second_order": True, "learning_rate": 0.003, "weight_decay": 1e-4,
              "tuner/epochs": 1}
    config = hypermodel.config_for(values)
    assert config == training.TrainConfig(
        **{**TINY, "sites": "input,stage1,stage3", "beta": "stage1=0.02,stage3=0.004",
           "normalization": "sign", "step_size": 0.75 * 0.1, "clean_weight": 0.1,
           "second_order": True, "learning_rate": 0.003, "weight_decay": 1e-4}).resolved()
    flags = tuning.results.recipe_flags(config, comment="winner\nline two").splitlines()
    assert flags[:2] == ["# winner", "# line two"]
    parsed = dict(line[2:].split("=", 1) for line in flags[2:])
    # Every set recipe field (each method option a flag), no runtime one (where and how
    # to run is the user's).
    assert set(parsed) == {k for k, v in sgn_config.flat_settings(config.recipe()).items()
                           if v is not None}
    assert {"clean_weight", "second_order"} <= set(parsed) and "options" not in parsed
    assert not set(parsed) & set(sgn_config.runtime_fields())
    assert {"output_dir", "verbose", "data_dir", "strategy", "jit_compile"} <= set(
        sgn_config.runtime_fields())
    assert {"dataset", "model", "method", "epochs", "seed", "eval_steps"} <= set(parsed)
    assert parsed["beta"] == "stage1=0.02,stage3=0.004" and parsed["second_order"] == "true"
    assert float(parsed["step_size"]) == config.step_size
    # The base setting is the search's default point.
    assert hypermodel.config_for(hypermodel.default_values()) == dataclasses.replace(
        config.__class__(**TINY).resolved(), sites="input,stage1,stage2,stage3",
        beta="stage1=0.01,stage2=0.01,stage3=0.01", step_size=1.25 * 0.1)


def test_every_trial_reads_the_training_data_as_train_py_does():
    hypermodel = _tiny_hypermodel()
    config = hypermodel.config
    reference = next(iter(data.load("digits", "train", config.batch_size, seed=config.seed,
                                    n_examples=config.n_train, drop_remainder=True)))
    for _ in range(2):  # a fresh pipeline per trial: the same first epoch every time
        first = next(iter(hypermodel.train_data()))
        assert (first[1].numpy() == reference[1].numpy()).all()
    assert hypermodel.steps_per_epoch() == config.n_train // config.batch_size


# -- searches -----------------------------------------------------------------


@pytest.mark.slow
def test_tiny_hyperband_runs_the_default_first_continues_trials_and_writes_results(
        tmp_path, capsys):
    # The recipe's feedback values are in the space: sites input,stage2, beta 0.01,
    # input step 1.25 x epsilon, clean_weight 0, weight decay 0, the recipe's lr.
    hypermodel = tuning.SGNHyperModel(  # max_epochs=2
        training.TrainConfig(**{**TINY, "epochs": 2, "sites": "input,stage2"}),
        model_kwargs={"width": 8},
        space={"second_order": False, "sites": ["input", "input,stage2"]})
    recipe = hypermodel.config_for(hypermodel.default_values())
    assert (recipe.sites, recipe.beta, recipe.normalization, recipe.options["clean_weight"]) == (
        "input,stage2", "stage2=0.01", "l2_relative", 0.0)
    assert recipe.step_size == pytest.approx(1.25 * 0.1) and recipe.learning_rate == 2e-3
    # max_trials=3: the first bracket (two 1-epoch trials, then the better one continued).
    tuner = tuning.make_tuner(hypermodel, "hyperband", max_trials=3, factor=2,
                              directory=str(tmp_path), project_name="hb")
    tuning.search(tuner, verbose=1)
    log = capsys.readouterr().out
    trials = sorted(tuner.oracle.trials.values(), key=lambda t: int(t.trial_id))
    assert [t.status for t in trials] == ["COMPLETED"] * 3
    # The baseline: trial 1 is the recipe's setting, with the bracket's 1-epoch budget.
    assert hypermodel.config_for(trials[0].hyperparameters) == recipe
    assert trials[0].hyperparameters.values["tuner/epochs"] == 1
    assert hypermodel.config_for(trials[1].hyperparameters) != recipe
    # Successive halving: the 2-epoch trial continued a 1-epoch one from its checkpoint.
    continued = trials[2].hyperparameters.values
    assert continued["tuner/initial_epoch"] == 1 and continued["tuner/epochs"] == 2
    result = tuning.write_outputs(tuner, hypermodel, str(tmp_path / "out"), "hyperband")
    best = json.loads((tmp_path / "out" / "best_hyperparameters.json").read_text())
    assert best["objective"] == "val_robust_accuracy"
    assert best["score"] == max(t.score for t in trials)
    assert best["hyperparameters"]["sites"] in ("input", "input,stage2")
    assert "| trial | val robust | val clean |" in result["table"]
    assert (tmp_path / "out" / "trials_objective.png").stat().st_size > 1000
    # TensorBoard logs with the HParams plugin's summaries, one folder per trial.
    assert any((tmp_path / "hb" / "logs").rglob("*tfevents*"))

    # One numbering, from 1: KerasTuner's log, the table, the JSON rows, the plot.
    assert [int(n) for n in re.findall(r"Running Trial #(\d+)", log)] == [1, 2, 3]
    assert [int(n) for n in re.findall(r"Trial (\d+) Complete", log)] == [1, 2, 3]
    cells = [line.split("|")[1].strip() for line in result["table"].splitlines()[2:]]
    assert sorted(int(cell.split()[0]) for cell in cells) == [1, 2, 3]
    assert "1 (default)" in cells
    parent = 1 + int(continued["tuner/trial_id"])
    assert any(cell.startswith("3 (") and f"continues {parent})" in cell for cell in cells)
    rows = result["rows"]
    assert sorted(r["trial"] for r in rows) == [1, 2, 3]
    assert sorted(r["trial"] for r in rows if r["default"]) == [1] + ([3] if parent == 1 else [])
    assert best["trial"] == rows[0]["trial"]
    axis = tuning.report.trials_figure(rows).axes[0]
    trial_points, default_circles = axis.collections[0], axis.collections[1]
    assert list(trial_points.get_offsets()[:, 0]) == [1, 2, 3]
    assert list(trial_points.get_offsets()[:, 1]) == [
        r["val_robust_accuracy"] for r in sorted(rows, key=lambda r: r["trial"])]
    assert 1 in list(default_circles.get_offsets()[:, 0])
    assert re.match(r"default setting \(trials? 1\b", axis.get_legend().get_texts()[-1].get_text())


@pytest.mark.slow
def test_bayesian_trials_run_under_the_distribution_strategy(tmp_path):
    import tensorflow as tf

    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    seen = []

    class Recording(tuning.SGNHyperModel):
        def fit(self, hp, model, *args, **kwargs):
            seen.append(model.distribute_strategy)
            return super().fit(hp, model, *args, **kwargs)

    hypermodel = Recording(training.TrainConfig(**TINY), model_kwargs={"width": 8},
                           space={"second_order": False})
    # Bayesian: trial 1 is the default setting, trial 2 the Gaussian process's proposal.
    tuner = tuning.make_tuner(hypermodel, "bayesian", max_trials=2, num_initial_points=1,
                              directory=str(tmp_path), distribution_strategy=strategy,
                              tensorboard=False)
    tuning.search(tuner, verbose=0)
    assert seen == [strategy, strategy]
    trials = sorted(tuner.oracle.trials.values(), key=lambda t: t.trial_id)
    assert [t.status for t in trials] == ["COMPLETED", "COMPLETED"]
    assert hypermodel.config_for(trials[0].hyperparameters) == hypermodel.config_for(
        hypermodel.default_values())
    assert trials[1].hyperparameters.values != trials[0].hyperparameters.values


@pytest.fixture(scope="module")
def cli_search(tmp_path_factory):
    """tools/tune.py: a 2-trial random search, as a user runs it."""
    base = tmp_path_factory.mktemp("tune")
    out = base / "out"
    result = _run([os.path.join(ROOT, "tools", "tune.py"), "--tuner=random", "--max_trials=2",
                   f"--directory={base / 'search'}", "--project_name=digits",
                   f"--output_dir={out}", "--second_order=false", *CLI_TINY])
    assert result.returncode == 0, result.stderr[-3000:]
    return base, out, result


@pytest.mark.slow
def test_random_search_writes_table_json_recipe_and_plot(cli_search):
    base, out, result = cli_search
    assert "| trial | val robust | val clean |" in result.stdout
    assert "| 1 (default) |" in result.stdout  # trial 1 is the default setting
    best = json.loads((out / "best_hyperparameters.json").read_text())
    assert f"Best: trial {best['trial']}" in result.stdout and best["trial"] in (1, 2)
    assert best["trials_completed"] == 2 and 0.0 <= best["score"] <= 1.0
    rows = json.loads((out / "trials.json").read_text())
    assert len(rows) == 2 and rows[0]["val_robust_accuracy"] == best["score"]
    assert sorted(r["trial"] for r in rows) == [1, 2]
    assert [r["trial"] for r in rows if r["default"]] == [1]
    for name in ("best_recipe.flags", "default_recipe.flags", "results.md"):
        assert (out / name).stat().st_size > 100
    # The search's budget is not the winner's recipe: train.py's dataset defaults apply.
    recipe = (out / "best_recipe.flags").read_text()
    flag_lines = [line for line in recipe.splitlines() if line.startswith("--")]
    assert not [line for line in flag_lines if line.split("=")[0] in (
        "--epochs", "--n_train", "--n_eval")], flag_lines
    assert "Left out, the search's budget" in recipe and "--n_eval=64" in recipe
    assert (out / "trials_objective.png").stat().st_size > 1000


def test_a_lead_within_sampling_noise_is_said_so():
    from keras_sgn.tuning.results import noise_note

    def rows(*scores):
        return [{"status": "COMPLETED", "val_robust_accuracy": s} for s in scores]

    # 3 of 90 images apart at ~0.6: two standard errors are 0.103.
    note = noise_note(rows(0.6333, 0.6, 0.5), 90)
    assert "by 3 of 90 validation images" in note and "noise" in note
    assert noise_note(rows(0.9, 0.5), 90) == ""  # a clear lead
    assert noise_note(rows(0.6333, 0.6), 10_000) == ""  # 333 of 10,000 images apart
    assert noise_note(rows(0.6), 90) == ""  # one trial: nothing to compare


@pytest.mark.slow
def test_training_from_the_recipe_runs_and_reproduces_the_trial(cli_search, tmp_path):
    _, out, _ = cli_search
    best = json.loads((out / "best_hyperparameters.json").read_text())
    result = _run([os.path.join(ROOT, "tools", "train.py"),
                   f"--flagfile={out / 'best_recipe.flags'}", "--epochs=1", "--n_train=128",
                   "--n_eval=64", "--test_steps=3", "--verbose=0",
                   f"--output_dir={tmp_path / 'winner'}"])
    assert result.returncode == 0, result.stderr[-3000:]
    config = sgn_config.flat_settings(
        json.loads((tmp_path / "winner" / "config.json").read_text()))
    winner = sgn_config.flat_settings(best["train_config"])
    for name in ("sites", "beta", "normalization", "clean_weight", "second_order",
                 "learning_rate", "weight_decay", "step_size"):
        assert config[name] == winner[name], name
    # Same recipe, same seed, same data: the run measures what the trial measured.
    history = json.loads((tmp_path / "winner" / "history.json").read_text())
    assert history["val_robust_accuracy"][0] == pytest.approx(best["score"])
    assert history["val_accuracy"][0] == pytest.approx(best["val_accuracy"])
    summary = json.loads((tmp_path / "winner" / "summary.json").read_text())
    assert 0.0 <= summary["robust_accuracy"] <= summary["clean_accuracy"] <= 1.0


@pytest.mark.slow
def test_an_interrupted_search_resumes_without_redoing_finished_trials(tmp_path):
    fit_log = tmp_path / "fits.jsonl"
    script = os.path.join(HERE, "tuning_search.py")
    # Dies (os._exit) inside its second trial: trial 0 done, trial 1 RUNNING.
    first = _run([script, str(tmp_path), "3", str(fit_log), "2"])
    assert first.returncode == 3, first.stderr[-3000:]
    project = tmp_path / "resume"
    assert json.loads((project / "trial_0" / "trial.json").read_text())["status"] == "COMPLETED"
    assert json.loads((project / "trial_1" / "trial.json").read_text())["status"] == "RUNNING"
    checkpoint = project / "trial_0" / "checkpoint.weights.h5"
    stamp = checkpoint.stat().st_mtime_ns

    second = _run([script, str(tmp_path), "3", str(fit_log)])
    assert second.returncode == 0, second.stderr[-3000:]
    fits = [json.loads(line) for line in fit_log.read_text().splitlines()]
    before = [f["values"] for f in fits if f["pid"] == fits[0]["pid"]]
    after = [f["values"] for f in fits if f["pid"] != fits[0]["pid"]]
    assert len(before) == 2 and len(after) == 2
    assert before[0] not in after  # the finished trial was not trained again
    assert after[0] == before[1]  # the interrupted one was rerun
    assert checkpoint.stat().st_mtime_ns == stamp
    statuses = [json.loads((project / f"trial_{i}" / "trial.json").read_text())["status"]
                for i in range(3)]
    assert statuses == ["COMPLETED"] * 3
    assert json.loads((tmp_path / "out" / "best_hyperparameters.json").read_text())[
        "trials_completed"] == 3


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_chief_and_one_worker_complete_a_search_together(tmp_path):
    args = [os.path.join(ROOT, "tools", "tune.py"), "--tuner=random", "--max_trials=2",
            f"--directory={tmp_path}", "--project_name=dist", f"--output_dir={tmp_path / 'out'}",
            "--second_order=false", *CLI_TINY]
    common = dict(KERASTUNER_ORACLE_IP="127.0.0.1", KERASTUNER_ORACLE_PORT=str(_free_port()))
    procs = {}
    try:
        for tuner_id in ("chief", "tuner0"):
            procs[tuner_id] = subprocess.Popen(
                [sys.executable, *args], env=_env(KERASTUNER_TUNER_ID=tuner_id, **common),
                cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                start_new_session=True)
        deadline = time.monotonic() + 300
        outputs = {}
        for tuner_id, proc in procs.items():
            outputs[tuner_id] = proc.communicate(timeout=max(1, deadline - time.monotonic()))
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    for tuner_id, proc in procs.items():
        assert proc.returncode == 0, (tuner_id, outputs[tuner_id][1][-3000:])
    assert "Worker finished" in outputs["tuner0"][0]
    assert "| trial | val robust |" in outputs["chief"][0]
    # The chief runs no trial: both completed trials came from the worker.
    oracle = json.loads((tmp_path / "dist" / "oracle.json").read_text())
    assert sorted(oracle["end_order"]) == ["0", "1"] and oracle["ongoing_trials"] == {}
    assert (tmp_path / "dist" / "tuner0.json").exists()
    best = json.loads((tmp_path / "out" / "best_hyperparameters.json").read_text())
    assert best["trials_completed"] == 2
