"""The newcomer's path, as a user types it: tools/train.py -> tools/evaluate.py
--run_dir -> tools/publish.py --run_dir, each ending with one line saying what
it wrote where; mistakes are one `error:` line naming the fix, never a traceback."""

import json
import os
import subprocess
import sys

import pytest

from tests.helpers import run_tool as _run

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY_TRAINING = ["--dataset=digits", "--method=sgn", "--epochs=1", "--n_train=64",
                 "--n_eval=32", "--eval_steps=1", "--test_steps=1", "--verbose=0"]
CHEAP_EVALUATION = ["--n_examples=32", "--attacks=pgd-ce:steps=2", "--sanity_examples=16",
                    "--square_queries=20"]




def _last_line(result):
    return result.stdout.strip().splitlines()[-1]


def _error_lines(result):
    """The tool's own complaint: its `error:` lines (TensorFlow's start-up logs aside)."""
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    return [line for line in result.stderr.splitlines() if line.startswith("error:")]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    run = tmp_path_factory.mktemp("newcomer") / "run"
    result = _run("train.py", f"--output_dir={run}", *TINY_TRAINING)
    assert result.returncode == 0, result.stderr[-3000:]
    return run


@pytest.mark.slow  # end to end: a run of 20-60 s (make test-slow, which CI runs)
def test_publish_before_evaluate_names_the_evaluate_command(run_dir, tmp_path):
    result = _run("publish.py", f"--run_dir={run_dir}", f"--local_dir={tmp_path / 'out'}")
    assert _error_lines(result) == [
        f"error: no evaluation report at {run_dir}/eval/report.json: run "
        f"`python tools/evaluate.py --run_dir={run_dir}` first, then publish again."]
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_evaluate_then_publish_the_run(run_dir, tmp_path):
    result = _run("evaluate.py", f"--run_dir={run_dir}", *CHEAP_EVALUATION)
    assert result.returncode == 0, result.stderr[-3000:]
    eval_dir = run_dir / "eval"
    assert _last_line(result) == (f"Wrote report.json, report.md, accuracy_vs_epsilon.png, "
                                  f"adversarial_examples.png to {eval_dir}")
    report = json.loads((eval_dir / "report.json").read_text())
    config = json.loads((run_dir / "config.json").read_text())
    assert (report["dataset"], report["protocol"]["epsilon"], report["protocol"]["norm"]) == (
        config["dataset"], config["epsilon"], config["norm"])  # read from the run
    assert report["model"] == str(run_dir / "model.keras") and report["n_examples"] == 32
    assert report["provenance"]["keras_sgn"] and "git_commit" in report["provenance"]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert report["clean_accuracy"] == pytest.approx(summary["clean_accuracy"])  # same 32 images

    out = tmp_path / "export"
    result = _run("publish.py", f"--run_dir={run_dir}", f"--local_dir={out}")  # no --name
    assert result.returncode == 0, result.stderr[-3000:]
    assert _last_line(result) == (
        f"Wrote the model folder of sgn-small-cnn-digits to {out} (config.json, "
        "model.weights.h5, metadata.json, README.md); nothing uploaded, zoo entry untouched.")
    metadata = json.loads((out / "metadata.json").read_text())
    assert metadata["name"] == "sgn-small-cnn-digits"
    assert metadata["versions"]["git_commit"] == report["provenance"]["git_commit"]
    assert metadata["metrics"]["provenance"] == report["provenance"]
    card = (out / "README.md").read_text()
    assert f"keras-sgn {report['provenance']['keras_sgn']}" in card
    # The run is outside the working directory: the commands retrain into runs/NAME and
    # evaluate and publish that same folder. The card's loader loads this folder: run
    # as a reader would (another process, `images` the only thing added).
    assert "--output_dir=runs/sgn-small-cnn-digits" in card
    assert "--run_dir=runs/sgn-small-cnn-digits" in card and str(run_dir) not in card
    snippet = card.split("```python\n")[1].split("```")[0]
    assert "load_pretrained" not in snippet and "hf://" not in snippet
    probe = ("import numpy as np\nimages = np.zeros((2, 8, 8, 1), 'float32')\n" + snippet
             + "\nprint('logits', logits.shape)\n")
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}, timeout=300)
    assert loaded.returncode == 0, loaded.stderr[-2000:]
    assert "logits (2, 10)" in loaded.stdout


@pytest.mark.slow  # end to end: a run of 20-60 s (make test-slow, which CI runs)
def test_evaluate_mistakes_are_one_line(tmp_path):
    result = _run("evaluate.py")
    assert _error_lines(result) == ["error: give --run_dir=RUN_DIR (a tools/train.py output "
                                    "dir) or --model=PATH_OR_ZOO_NAME."]
    result = _run("evaluate.py", f"--run_dir={tmp_path}")
    assert _error_lines(result) == [f"error: --run_dir: no model.keras in '{tmp_path}'. Give "
                                    "the --output_dir of a finished tools/train.py run."]
    result = _run("evaluate.py", "--model=sgn-cnn-digits", "--norm=l3")
    (line,) = _error_lines(result)
    assert line.startswith("error: flag --norm=l3: value should be one of <linf|l2>")


def test_evaluate_a_recipe_only_name_says_not_published():
    # CIFAR-10 is not on this machine either: the model is checked first.
    result = _run("evaluate.py", "--model=sgn-resnet18-cifar10")
    lines = _error_lines(result)
    assert lines[0].startswith("error: sgn-resnet18-cifar10 is not published yet")
    assert "python tools/train.py --dataset=cifar10" in result.stderr
    assert "DatasetNotAvailable" not in result.stderr
