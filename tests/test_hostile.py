"""The hostile suite: a user who misuses the tools gets a clear refusal, never a
wrong answer. One test per misuse the probe found; each
failed before its fix."""

import dataclasses
import json
import os
import shutil
import sys

import keras
import numpy as np
import pytest

from keras_sgn import attacks, evaluation, hub, io_utils, models, training, zoo
from keras_sgn.reporting.robustness_report import write_report
from keras_sgn.training import run_folder
from tests.helpers import run_tool as _tool

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))




def _error_line(result):
    """The tool's one `error:` line (exit code 2, no traceback)."""
    assert result.returncode == 2, result.stdout[-2000:] + result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    return line


def _linear_digits_model():
    return keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(),
                             keras.layers.Dense(10)])


def _write_run(run_dir, width=4, seed=0):
    """A finished tools/train.py-like run folder of a tiny SGN (model.keras,
    config.json, summary.json); returns the model."""
    keras.utils.set_random_seed(seed)
    run_dir.mkdir(parents=True, exist_ok=True)
    model = models.get("sgn_small_cnn", width=width)
    model.compile(optimizer="adam", method="sgn", epsilon=0.1)
    model.save(run_dir / "model.keras")
    config = training.TrainConfig(dataset="digits", method="sgn", epochs=1, seed=seed,
                                  output_dir=str(run_dir)).resolved()
    (run_dir / "config.json").write_text(json.dumps(dataclasses.asdict(config)))
    (run_dir / "summary.json").write_text(json.dumps({"epochs": 1, "best_epoch": 1,
                                                      "best_val_robust_accuracy": 0.1}))
    return model


def _write_report(model, model_path, eval_dir, digits_arrays):
    """A tools/evaluate.py-like report of `model` (2-step PGD on 16 images)."""
    x, y = digits_arrays("test", 16)
    report = evaluation.evaluate_robustness(model, [(x, y)], epsilon=0.1,
                                            attacks="pgd-ce:steps=2", run_sanity_checks=False,
                                            verbose=False)
    report.update(model=str(model_path), dataset="digits", split="test")
    write_report(report, str(eval_dir))
    return report


@pytest.fixture(scope="module")
def evaluated_run(tmp_path_factory, digits_arrays):
    """A finished run folder with its evaluation report in eval/."""
    run_dir = tmp_path_factory.mktemp("hostile") / "run"
    model = _write_run(run_dir)
    _write_report(model, run_dir / "model.keras", run_dir / "eval", digits_arrays)
    return run_dir


SETTINGS = {"dataset": "digits", "method": "sgn", "seed": 0}


def _finished_folder(folder, settings=SETTINGS):
    """A folder as a finished tools/train.py run leaves it, with a real model.keras."""
    folder.mkdir(parents=True, exist_ok=True)
    _linear_digits_model().save(folder / "model.keras")
    (folder / "config.json").write_text(json.dumps(settings))
    (folder / "summary.json").write_text(json.dumps({"robust_accuracy": 0.5}))
    return folder


def _open(folder, settings=SETTINGS, overwrite=False):
    handle = run_folder.RunFolder(str(folder))
    try:
        return handle.open(settings, overwrite=overwrite)
    finally:
        handle.close()


# -- 1. two evaluations into one output folder -------------------------------------------

CHEAP_EVALUATION = ["--dataset=digits", "--n_examples=8", "--attacks=pgd-ce:steps=1",
                    "--nosanity_checks", "--verbose=0"]


@pytest.mark.slow  # end to end: a run of 20-60 s (make test-slow, which CI runs)
def test_two_evaluations_into_one_folder_are_refused(tmp_path):
    model_path = tmp_path / "model.keras"
    _linear_digits_model().save(model_path)
    out = tmp_path / "eval"
    checkpoints = out / evaluation.checkpoints.CHECKPOINTS_FOLDER
    checkpoints.mkdir(parents=True)
    (checkpoints / "settings.json").write_text("{}")  # the first evaluation's
    # The first evaluation holds the folder (as tools/evaluate.py does, from this process).
    with run_folder.RunLock(str(out), what="evaluation"):
        result = _tool("evaluate.py", f"--model={model_path}", f"--output_dir={out}",
                       "--noresume", *CHEAP_EVALUATION)
    line = _error_line(result)
    assert line.startswith(f"error: --output_dir={out} is in use by the evaluation with pid "
                           f"{os.getpid()} on host")
    assert sys.argv[0] in line  # its command
    assert (checkpoints / "settings.json").exists()  # --noresume deleted nothing
    assert not (out / "report.json").exists()
    # Once the first is gone, the same command runs, and leaves no lock behind.
    result = _tool("evaluate.py", f"--model={model_path}", f"--output_dir={out}",
                   "--noresume", *CHEAP_EVALUATION)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (out / "report.json").exists() and not (out / run_folder.LOCK_NAME).exists()


# -- 2. train --overwrite leaves the old model's eval/ behind ----------------------------

def test_overwrite_archives_the_old_models_evaluation(tmp_path):
    run = _finished_folder(tmp_path / "run")
    (run / "eval").mkdir()
    (run / "eval" / "report.json").write_text(json.dumps({"robust_accuracy": 0.44}))
    other = {**SETTINGS, "seed": 1}
    lock = run_folder.RunLock(str(run / "eval")).acquire()  # an evaluation writes there
    try:
        with pytest.raises(run_folder.RunFolderBusyError, match=(
                r"--overwrite cannot move the outputs of .* while an evaluation writes into "
                rf"its eval/ folder: .*pid {os.getpid()}")):
            _open(run, other, overwrite=True)
    finally:
        lock.release()
    assert (run / "eval" / "report.json").exists() and (run / "summary.json").exists()
    state = _open(run, other, overwrite=True)
    assert state.status == "new" and not (run / "eval").exists()
    archived = run / "previous" / os.path.basename(state.archived)
    assert json.loads((archived / "eval" / "report.json").read_text()) == {
        "robust_accuracy": 0.44}


# -- 3. publish --eval_dir=<another model's report>; publish an interrupted run ----------

@pytest.mark.slow  # end to end: a run of 20-60 s (make test-slow, which CI runs)
def test_publish_refuses_another_models_report_and_an_unfinished_run(evaluated_run, tmp_path,
                                                                     digits_arrays):
    other_dir = tmp_path / "other"
    other = _write_run(other_dir, seed=1)  # same architecture, other weights
    # Its report names the published path (it was evaluated there before a retraining, or
    # the folder was copied): the path check alone let it through.
    _write_report(other, evaluated_run / "model.keras", other_dir / "eval", digits_arrays)
    result = _tool("publish.py", f"--run_dir={evaluated_run}", f"--eval_dir={other_dir / 'eval'}",
                   f"--local_dir={tmp_path / 'out'}")
    line = _error_line(result)
    assert "was measured on other weights than" in line and "Received: a report of" in line
    assert not (tmp_path / "out").exists()
    # A report that does not say which weights it measured is refused too.
    report = json.loads((evaluated_run / "eval" / "report.json").read_text())
    del report["model_fingerprint"]
    with pytest.raises(hub.PublishError, match="does not record which weights"):
        hub.export_folder(str(evaluated_run), str(tmp_path / "x"), "tiny", report)
    # An interrupted run (no summary.json): its model.keras is an intermediate checkpoint.
    (other_dir / "summary.json").unlink()
    with pytest.raises(hub.PublishError, match="holds no summary.json: its training did not"):
        hub.export_folder(str(other_dir), str(tmp_path / "y"), "tiny", str(other_dir / "eval"))
    # The report of the model published is accepted.
    exported = hub.export_folder(str(evaluated_run), str(tmp_path / "z"), "tiny",
                                 str(evaluated_run / "eval"))
    assert exported["metadata"]["metrics"]["n_examples"] == 16


def test_evaluating_an_unfinished_run_folder_is_refused_naming_the_file_override(tmp_path):
    """A run still training (or killed) has a model.keras: its best epoch so far. Evaluated
    by --run_dir it passed for the run's result without a word; now refused in one line,
    before any attack, naming the way to evaluate that file as it is."""
    run_dir = tmp_path / "run"
    _write_run(run_dir)
    (run_dir / "summary.json").unlink()
    result = _tool("evaluate.py", f"--run_dir={run_dir}", "--attacks=pgd-ce:steps=1",
                   "--n_examples=8", "--nosanity_checks")
    line = _error_line(result)
    assert "holds no summary.json: its training has not finished" in line
    assert f"--model={run_dir / 'model.keras'}" in line
    assert not (run_dir / "eval").exists()
    with pytest.raises(evaluation.sources.UnfinishedRunError, match="best epoch so far"):
        evaluation.sources.resolve_model(str(run_dir))  # a folder given as --model too
    source = evaluation.sources.resolve_model(str(run_dir / "model.keras"))  # the override
    assert source.path == str(run_dir / "model.keras")


# -- 4. a diverged run (NaN loss) ended with exit 0 and numbers ---------------------------

TINY_TRAINING = dict(dataset="digits", method="standard", batch_size=16, n_train=32, n_eval=16,
                     eval_steps=1, test_steps=1, verbose=0)


@pytest.mark.slow  # end to end: a run of 20-60 s (make test-slow, which CI runs)
def test_a_diverged_run_stops_with_an_error_and_keeps_the_last_good_state(tmp_path,
                                                                          monkeypatch):
    for bad in (float("inf"), float("nan")):
        with pytest.raises(training.ConfigError, match=(
                rf"learning_rate must be a finite number > 0. Received: {bad}")):
            training.TrainConfig(**TINY_TRAINING, learning_rate=bad).resolved()

    class WeightsGoNaNInEpoch2(training.callbacks.SafeCheckpoint):
        """Epoch 1 trains well; then the weights diverge (as a too large step makes them)."""

        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 1:
                kernel = self.model.trainable_weights[0]
                kernel.assign(np.full(kernel.shape, np.nan, kernel.dtype))

    from keras_sgn.training import run as run_module

    monkeypatch.setattr(run_module, "SafeCheckpoint", WeightsGoNaNInEpoch2)
    out = tmp_path / "run"
    config = training.TrainConfig(**TINY_TRAINING, epochs=2, output_dir=str(out))
    with pytest.raises(training.callbacks.TrainingDiverged, match=(
            r"Training diverged: the training loss is nan at epoch 2, step 1. Received: "
            r"--learning_rate=.*--overwrite")) as info:
        training.train(config)
    assert isinstance(info.value, ValueError)  # tools print it as one line, exit code 2
    assert not (out / "summary.json").exists() and not (out / ".lock").exists()
    assert json.loads((out / "backup" / "state.json").read_text())["epoch"] == 1
    best = keras.saving.load_model(out / "model.keras")  # epoch 1's, not NaN weights
    assert all(np.isfinite(np.asarray(w)).all() for w in best.weights)

    # From the command line: a step size that makes the loss NaN at once.
    result = _tool("train.py", f"--output_dir={tmp_path / 'cli'}", "--learning_rate=1e30",
                   "--epochs=1", *(f"--{k}={v}" for k, v in TINY_TRAINING.items()))
    assert _error_line(result).startswith("error: Training diverged: the training loss is ")
    assert not (tmp_path / "cli" / "summary.json").exists()
    assert not (tmp_path / "cli" / "model.keras").exists()


# -- 5. "already complete" over a missing or damaged model.keras or config.json -----------

def test_a_damaged_finished_run_is_not_complete(tmp_path):
    run = _finished_folder(tmp_path / "run")
    assert _open(run).status == "complete"
    model = (run / "model.keras").read_bytes()
    (run / "model.keras").write_bytes(model[: len(model) // 2])  # truncated
    with pytest.raises(run_folder.RunFolderError, match=(
            r"holds a finished run \(summary.json\) whose model.keras is not a whole Keras "
            r"model file \(truncated.*Received: --output_dir=.*Pass --overwrite")):
        _open(run)
    (run / "model.keras").unlink()
    with pytest.raises(run_folder.RunFolderError, match="whose model.keras is missing"):
        _open(run)
    (run / "model.keras").write_bytes(model)
    (run / "config.json").write_text("[1, 2]")
    with pytest.raises(run_folder.RunFolderError, match=(
            r"config.json is not a JSON object \(it holds a list\).*--overwrite")):
        _open(run)
    (run / "config.json").write_text(json.dumps(SETTINGS))
    (run / "summary.json").write_text("[1, 2]")
    with pytest.raises(run_folder.RunFolderError, match="summary.json is not a JSON object"):
        _open(run)
    (run / "config.json").write_text("[1, 2]")  # --overwrite archives what is damaged
    state = _open(run, overwrite=True)
    assert state.status == "new" and not (run / "model.keras").exists()


# -- 6. publish --ship --name=../../escaped ----------------------------------------------

def test_publish_refuses_a_name_that_escapes_before_writing(evaluated_run, tmp_path):
    escaped = os.path.join(zoo.catalog.PRETRAINED_DIR, "..", "..", f"hostile-escaped-{os.getpid()}")
    name = os.path.relpath(escaped, zoo.catalog.PRETRAINED_DIR)
    assert name.startswith("../../")
    try:
        result = _tool("publish.py", f"--run_dir={evaluated_run}", "--ship", f"--name={name}",
                       f"--entry={tmp_path / 'entry.json'}")
        line = _error_line(result)
        assert line.startswith("error: --name must be a plain model name") and (
            f"Received: --name='{name}'" in line)
        assert not os.path.exists(escaped) and not (tmp_path / "entry.json").exists()
        assert not [n for n in os.listdir(os.path.dirname(os.path.abspath(escaped)))
                    if n.startswith(".tmp-export-")]
    finally:
        shutil.rmtree(escaped, ignore_errors=True)
    with pytest.raises(hub.PublishError, match="Received: name='a/b'"):
        hub.export_folder(str(evaluated_run), str(tmp_path / "out"), "a/b",
                          str(evaluated_run / "eval"))
    assert not (tmp_path / "out").exists()


# -- 6b. a boolean flag with a separate value; a stray positional argument ---------------

@pytest.mark.parametrize("args, expected", [
    (["--second_order", "false"],
     "error: --second_order false: a boolean flag takes no separate value"),
    (["--nosecond_order", "true"],
     "error: --nosecond_order true: a boolean flag takes no separate value"),
    (["runs/elsewhere"], "error: unexpected argument 'runs/elsewhere'"),
])
def test_train_refuses_a_separate_boolean_value_and_a_stray_argument(args, expected, tmp_path):
    # absl read `--second_order false` as --second_order (true) and left `false` over, and
    # ignored a leftover word: the run trained with settings the user did not write.
    out = tmp_path / "run"
    result = _tool("train.py", f"--output_dir={out}", "--epochs=1",
                   *(f"--{k}={v}" for k, v in {**TINY_TRAINING, "method": "sgn"}.items()),
                   *args)
    line = _error_line(result)
    assert line.startswith(expected), line
    assert not out.exists()


# -- 7. summarize_runs over copies of one run ---------------------------------------------

def test_summarize_runs_refuses_copies_of_one_run(tmp_path):
    config = training.TrainConfig(dataset="digits", method="sgn", seed=0).resolved().to_dict()
    summary = {"method": "sgn", "model": config["model"], "dataset": "digits",
               "clean_accuracy": 0.9, "robust_accuracy": 0.5, "per_attack": {"pgd-ce": 0.5},
               "train_seconds": 1.0}
    for copy in range(5):
        folder = tmp_path / "runs" / f"copy{copy}"
        folder.mkdir(parents=True)
        (folder / "config.json").write_text(json.dumps(config))
        (folder / "summary.json").write_text(json.dumps(summary))
    result = _tool("summarize_runs.py", f"--runs={tmp_path / 'runs' / '*'}")
    line = _error_line(result)
    assert "matches 5 folders holding the same run (same settings, seed 0)" in line
    assert "Received: 5 folders of repeated runs" in line and "copy4" in line
    assert not result.stdout  # no table
    for copy in range(1, 4):
        shutil.rmtree(tmp_path / "runs" / f"copy{copy}")
    (tmp_path / "runs" / "copy4" / "config.json").write_text(json.dumps({**config, "seed": 1}))
    result = _tool("summarize_runs.py", f"--runs={tmp_path / 'runs' / '*'}")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "| 2 (0, 1) |" in result.stdout


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


# --------------------------------------------------------------------------- unclear cases


@pytest.mark.parametrize("seeds", ["abc", "-1", "0,,x"])
def test_reproduce_bad_seeds_are_one_line(seeds, tmp_path):
    result = _tool("reproduce.py", "--dataset=digits", f"--seeds={seeds}",
                   f"--output_dir={tmp_path / 'out'}")
    line = _error_line(result)
    assert "--seeds must be integers >= 0" in line and f"Received: --seeds={seeds}" in line
    assert not (tmp_path / "out").exists()


def test_a_negative_seed_is_refused_naming_the_flag(tmp_path):
    from keras_sgn import training

    with pytest.raises(training.ConfigError, match="seed must be an integer >= 0") as error:
        training.TrainConfig(dataset="digits", seed=-1).resolved()
    assert error.value.field == "seed"
    result = _tool("train.py", "--dataset=digits", "--seed=-1",
                   f"--output_dir={tmp_path / 'run'}")
    assert "--seed" in _error_line(result) and not (tmp_path / "run").exists()


# -- tools/evaluate.py: damaged inputs and bad flags, one line each ----------------------

def _damaged_evaluation(case, tmp_path):
    """The arguments of a tools/evaluate.py call on a damaged input, and what its one line
    says; `case` names the damage."""
    run = _finished_folder(tmp_path / "run", {**SETTINGS, "epsilon": 0.1, "norm": "linf"})
    model = run / "model.keras"
    out = f"--output_dir={tmp_path / 'eval'}"
    if case == "model_is_config_json":
        return [f"--model={run / 'config.json'}", out], (
            f"error: --model={run / 'config.json'} is corrupt: not a .keras archive")
    if case == "truncated_model":
        model.write_bytes(model.read_bytes()[:3000])
        return [f"--model={model}", out], f"error: --model={model} is corrupt"
    if case == "garbage_config_json":
        (run / "config.json").write_text("{garbage")
        return [f"--run_dir={run}", out], (
            f"error: {run / 'config.json'} is not valid JSON: damaged, or not written by "
            f"keras_sgn. Received: --run_dir={run}.")
    if case == "garbage_settings_json":
        checkpoints = tmp_path / "eval" / evaluation.checkpoints.CHECKPOINTS_FOLDER
        checkpoints.mkdir(parents=True)
        (checkpoints / "settings.json").write_text("[1, 2]")
        return [f"--model={model}", out], (
            f"error: {checkpoints / 'settings.json'} is not a JSON object (it holds a list)")
    assert case == "file_as_output_dir"
    (tmp_path / "a_file").write_text("x")
    return [f"--model={model}", f"--output_dir={tmp_path / 'a_file'}"], (
        f"error: --output_dir must be a folder, but '{tmp_path / 'a_file'}' is a file.")


@pytest.mark.parametrize("case", ["model_is_config_json", "truncated_model",
                                  "garbage_config_json", "garbage_settings_json",
                                  "file_as_output_dir"])
def test_evaluate_refuses_a_damaged_input_in_one_line(case, tmp_path):
    args, expected = _damaged_evaluation(case, tmp_path)
    result = _tool("evaluate.py", *args, *CHEAP_EVALUATION)
    assert _error_line(result).startswith(expected)
    assert not (tmp_path / "eval" / "report.json").exists()


@pytest.mark.parametrize("flag", ["--sanity_examples", "--square_queries", "--n_examples",
                                  "--batch_size"])
def test_evaluate_refuses_a_zero_count_before_the_suite(flag, tmp_path):
    # Refused when the flags are parsed: before any model, data or attack (it used to
    # fail after the whole suite, or name the attacks' internal option n_queries).
    result = _tool("evaluate.py", "--model=sgn-cnn-digits", f"{flag}=0",
                   f"--output_dir={tmp_path / 'eval'}")
    assert _error_line(result).startswith(f"error: flag {flag}=0: 0 is not a positive integer")
    assert not (tmp_path / "eval").exists()


def test_evaluate_names_a_bad_attack_list_in_one_line(tmp_path):
    model = _finished_folder(tmp_path / "run") / "model.keras"
    result = _tool("evaluate.py", f"--model={model}", "--attacks=pgd-ce;bogus",
                   f"--output_dir={tmp_path / 'eval'}", "--dataset=digits")
    assert _error_line(result).startswith("error: attacks: unknown attack 'bogus'")


# -- a read-only output folder -------------------------------------------------------------

def test_a_read_only_output_folder_is_refused_before_any_write(evaluated_run, tmp_path,
                                                               monkeypatch):
    read_only = tmp_path / "read_only"
    read_only.mkdir()
    access = os.access

    def as_a_user_without_write_permission(path, mode, *args, **kwargs):
        inside = os.path.abspath(path).startswith(str(read_only))
        return access(path, mode, *args, **kwargs) and not (inside and mode & os.W_OK)

    monkeypatch.setattr(os, "access", as_a_user_without_write_permission)
    with pytest.raises(run_folder.RunFolderError, match=(
            rf"--output_dir={read_only / 'eval'} is not writable by this user")) as error:
        run_folder.check_writable_folder(str(read_only / "eval"))  # as tools/evaluate.py
    from keras_sgn import cli

    assert cli.is_user_error(error.value)
    with pytest.raises(run_folder.RunFolderError, match=(
            rf"the folder of the export \(--local_dir\)={read_only} is not writable")):
        hub.export_folder(str(evaluated_run), str(read_only / "export"), "tiny",
                          str(evaluated_run / "eval"))
    assert os.listdir(read_only) == ["eval"]  # nothing of the export


# -- tools/publish.py over a damaged JSON file --------------------------------------------

@pytest.mark.parametrize("damaged", ["summary.json", "config.json", "eval/report.json"])
def test_publish_refuses_a_damaged_json_file_in_one_line(damaged, evaluated_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(evaluated_run, run)
    (run / damaged).write_text("{garbage")
    result = _tool("publish.py", f"--run_dir={run}", f"--local_dir={tmp_path / 'out'}")
    assert _error_line(result).startswith(
        f"error: {run / damaged} is not valid JSON: damaged, or not written by keras_sgn. "
        "Restore it")
    assert not (tmp_path / "out").exists()


# -- tools/summarize_runs.py over damaged or unfinished runs ------------------------------

@pytest.mark.parametrize("damage", ["garbage_summary", "garbage_config", "unfinished_summary"])
def test_summarize_runs_refuses_a_damaged_run_in_one_line(damage, tmp_path):
    folder = tmp_path / "runs" / "run0"
    folder.mkdir(parents=True)
    summary = {"method": "sgn", "model": "sgn_small_cnn", "dataset": "digits",
               "clean_accuracy": 0.9, "robust_accuracy": 0.5, "train_seconds": 1.0}
    (folder / "summary.json").write_text(json.dumps(summary))
    (folder / "config.json").write_text(json.dumps(SETTINGS))
    expected = {"garbage_summary": f"{folder / 'summary.json'} is not valid JSON",
                "garbage_config": f"{folder / 'config.json'} is not a JSON object",
                "unfinished_summary": f"{folder}/summary.json has no clean_accuracy, "
                                      "robust_accuracy, train_seconds: not the summary"}[damage]
    if damage == "garbage_summary":
        (folder / "summary.json").write_text("{garbage")
    elif damage == "garbage_config":
        (folder / "config.json").write_text("[1]")
    else:
        (folder / "summary.json").write_text(json.dumps(  # an interrupted final test
            {key: summary[key] for key in ("method", "model", "dataset")}))
    result = _tool("summarize_runs.py", f"--runs={tmp_path / 'runs' / '*'}")
    line = _error_line(result)
    assert line.startswith(f"error: {expected}") and "Received: --runs=" in line
    assert not result.stdout


# -- tools/benchmark.py through the tools' one-line runner ---------------------------------

@pytest.mark.parametrize("args, expected", [
    (["--methods=", "--attacks=bogus", "--dataset=digits", "--model=sgn_small_cnn"],
     "error: attacks: unknown attack 'bogus'"),
    (["--methods=", "--attacks=quick", "--zoo=no-such-model"],
     "error: --zoo: no saved model at 'no-such-model', and not a zoo name either."),
])
def test_benchmark_mistakes_are_one_line(args, expected):
    assert _error_line(_tool("benchmark.py", *args)).startswith(expected)


@pytest.mark.parametrize("flag", ["--batch_size", "--attack_steps", "--repeats", "--n_examples",
                                  "--eval_batch_size", "--threads"])
def test_benchmark_refuses_a_zero_count_when_parsing_flags(flag):
    # Refused before TensorFlow starts: --repeats=0 used to time nothing and then fail on an
    # empty median, --n_examples=0 only after loading the model.
    result = _tool("benchmark.py", f"{flag}=0", "--methods=standard")
    assert _error_line(result).startswith(f"error: flag {flag}=0: 0 is not a positive integer")


def test_zero_examples_are_refused_before_any_data_or_attack():
    # tools/benchmark.py --n_examples=0 reached the suite's own check only after loading
    # its model and warming the attacks up.
    from keras_sgn import errors

    with pytest.raises(errors.ArgumentError, match=(
            r"n_examples must be an integer >= 1, or None for every example. Received: "
            r"n_examples=0")):
        evaluation.evaluate_robustness(_linear_digits_model(), "no-such-dataset", 0.1,
                                       n_examples=0)


# -- a truncated model file ----------------------------------------------------------------

def test_a_truncated_model_is_corrupt_not_missing(tmp_path):

    path = _finished_folder(tmp_path / "run") / "model.keras"
    whole = path.read_bytes()
    path.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(io_utils.CorruptFileError, match=rf"{path} is corrupt: not a .keras"):
        io_utils.load_model_file(str(path))
    path.unlink()
    with pytest.raises(FileNotFoundError, match="no such file"):
        io_utils.load_model_file(str(path))


# -- one damaged zoo entry -----------------------------------------------------------------

def test_one_damaged_zoo_entry_leaves_the_others_usable(tmp_path):
    entries_dir = tmp_path / "entries"
    entries_dir.mkdir()
    shutil.copy(os.path.join(zoo.catalog.ENTRIES_DIR, "sgn-cnn-digits.json"), entries_dir)
    (entries_dir / "garbage.json").write_text("{not json")
    (entries_dir / "wrong-types.json").write_text(json.dumps({
        "name": "wrong-types", "status": "recipe-only", "dataset": "digits",
        "threat_model": {}, "architecture": {}, "recipe": {"train_command": "x"},
        "repo_id": None, "revision": None, "notes": "n", "files": ["not", "a", "dict"],
        "metrics": None}))
    with pytest.warns(UserWarning, match=r"garbage.json: not valid JSON.*left out of the zoo"):
        rows = zoo.catalog.list_pretrained(str(entries_dir))
    assert [row["name"] for row in rows] == ["sgn-cnn-digits"]
    assert zoo.get_entry("sgn-cnn-digits", str(entries_dir)).dataset == "digits"
    with pytest.raises(zoo.InvalidEntryError, match="garbage.json: not valid JSON"):
        zoo.get_entry("garbage", str(entries_dir))
    with pytest.raises(zoo.InvalidEntryError, match="wrong-types.json: a value has the wrong"):
        zoo.get_entry("wrong-types", str(entries_dir))
    with pytest.raises(zoo.UnknownModelError, match="Did you mean 'sgn-cnn-digits'"):
        zoo.get_entry("sgn-cnn-digit", str(entries_dir))


# -- epsilon as text, and evaluate_pretrained at another threat model ---------------------

def test_epsilon_as_text_and_another_threat_model_are_refused(digits_arrays):
    x, y = digits_arrays("test", 4)
    with pytest.raises(ValueError, match=(
            r"epsilon must be a number, not a str. Received: epsilon='0.1'")) as error:
        evaluation.evaluate_robustness(_linear_digits_model(), [(x, y)], epsilon="0.1",
                                       attacks="pgd-ce:steps=1", run_sanity_checks=False)
    from keras_sgn import errors

    assert isinstance(error.value, errors.UserError)
    with pytest.raises(errors.ArgumentError, match=(
            r"evaluates 'sgn-cnn-digits' at its own threat model \(linf eps=0.1\), so it "
            r"takes no other epsilon. Received: epsilon=0.3.*load_pretrained")):
        evaluation.runs.evaluate_pretrained("sgn-cnn-digits", epsilon=0.3)
    with pytest.raises(errors.ArgumentError, match="takes no other norm. Received: norm='l2'"):
        evaluation.runs.evaluate_pretrained("sgn-cnn-digits", norm="l2")
    report = evaluation.runs.evaluate_pretrained("sgn-cnn-digits", attacks="pgd-ce:steps=1",
                                                 n_examples=8, epsilon=0.1, run_sanity_checks=False,
                                                 verbose=False)  # its own radius, given again
    assert report["protocol"]["epsilon"] == pytest.approx(0.1)


# -- a full disk during a backup -------------------------------------------------------------

FULL_DISK_IN_BACKUPS = """
import errno, h5py
_create_dataset = h5py.Group.create_dataset
def create_dataset(self, name, *args, **kwargs):
    if "/backup/" in self.file.filename:
        raise OSError(errno.ENOSPC, "No space left on device")
    return _create_dataset(self, name, *args, **kwargs)
h5py.Group.create_dataset = create_dataset
"""


@pytest.mark.slow  # end to end: a run of 20-60 s (make test-slow, which CI runs)
def test_a_full_disk_during_a_backup_ends_with_the_one_line_only(tmp_path, monkeypatch):
    import h5py


    # In this process: the weights file a failed write leaves open is closed (HDF5 flushed
    # it again at exit, on the full disk: error stacks and a crash after the one line).
    monkeypatch.setattr(h5py.Group, "create_dataset", h5py.Group.create_dataset)  # undone
    exec(FULL_DISK_IN_BACKUPS, {})  # patches h5py.Group.create_dataset, as in the run below
    backup = tmp_path / "backup"
    with pytest.raises(io_utils.OutOfSpaceError, match="Out of disk space writing"):
        io_utils.atomic_save_model(_linear_digits_model(), str(backup / "w.weights.h5"))
    assert not [f for f in _open_hdf5_files(h5py) if str(backup) in f]
    assert os.listdir(backup) == []
    # A training run: the one line, nothing after it.
    result = _tool("train.py", f"--output_dir={tmp_path / 'run'}", "--epochs=1",
                   *(f"--{k}={v}" for k, v in TINY_TRAINING.items()),
                   prelude=FULL_DISK_IN_BACKUPS)
    assert _error_line(result).startswith("error: Out of disk space writing ")
    for needle in ("HDF5", "Exception ignored", "Segmentation fault"):
        assert needle not in result.stderr, result.stderr[-3000:]
    assert not (tmp_path / "run" / "summary.json").exists()


def _open_hdf5_files(h5py):
    import gc

    return [o.filename for o in gc.get_objects() if isinstance(o, h5py.File) and o.id.valid]


# -- SIGTERM during the final test of tools/train.py ---------------------------------------

@pytest.mark.slow
def test_sigterm_during_the_final_test_exits_with_the_preemption_code(tmp_path):
    import signal
    import subprocess
    import time

    from keras_sgn import names
    from tests.helpers import tool_command, tool_environment

    out = tmp_path / "run"
    command = tool_command("train.py", f"--output_dir={out}", "--epochs=1",
                           *(f"--{k}={v}" for k, v in {**TINY_TRAINING, "test_steps": 200,
                                                        "verbose": 1}.items()))
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, env=tool_environment(), cwd=ROOT)
    try:
        deadline = time.monotonic() + 240
        while not (out / "history.json").exists():  # written as the final test starts
            assert process.poll() is None and time.monotonic() < deadline, process.poll()
            time.sleep(0.05)
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == names.PREEMPTION_EXIT_CODE, stderr[-3000:]
    assert "Termination requested during the final test: training is complete" in stdout
    assert "Traceback" not in stderr and not (out / "summary.json").exists()
    assert not (out / run_folder.LOCK_NAME).exists()
    # The same command runs what was left: the final test.
    result = subprocess.run(command, capture_output=True, text=True, env=tool_environment(),
                            cwd=ROOT, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads((out / "summary.json").read_text())["epochs"] == 1
