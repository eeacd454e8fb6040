"""What a published model folder says about itself: `metadata.json`, its
metrics block, and the commands that reproduce the run and its evaluation."""

import datetime
import math
import os
import re
import shlex

import numpy as np

from keras_sgn import config as run_config
from keras_sgn import method_options, provenance, recipes
from keras_sgn.attacks import parse_attacks
from keras_sgn.attacks import registry as attack_registry
from keras_sgn.errors import UserError
from keras_sgn.io_utils import read_json_object
from keras_sgn.reporting.model_card import validation_label

FORMAT = "keras-sgn-model-folder/1"
DEFAULT_NAMESPACE = "keras-sgn"
# Flags every train command writes even at their default: they name the run.
_ALWAYS_WRITTEN = ("dataset", "method", "seed")
# The settings that describe the feedback, shown in the architecture block (the
# method options among them read from `options`, or from a key of their own in an
# older config).
_FEEDBACK_FIELDS = ("method", "sites", "beta", "normalization", "clean_weight", "second_order",
                    "feedback_at_inference", "step_size", "attack_steps")
# What the `training` block copies from the run's summary.json, as it is at export
# time: each number with what says how it was measured (the final test's
# `protocol`, the validation estimate that picked the kept epoch).
_TRAINING_SUMMARY = ("epochs", "best_epoch", "best_val_robust_accuracy",
                     "validation_estimate", "validation_protocol", "train_seconds",
                     "replicas", "resumed_from_epoch", "clean_accuracy", "robust_accuracy",
                     "per_attack", "protocol", "n_test_examples")


class PublishError(UserError):
    """Publishing cannot go on (missing inputs, no token, a mismatched report)."""


# A zoo name is a file name (zoo_entries/NAME.json, pretrained/NAME/) and a Hub
# repository name: letters, digits, '.', '_', '-', starting and ending with a
# letter or digit; no path separators, no '..'.
_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?")


def check_name(name, flag="--name"):
    """Refuse a zoo name that is not a plain file name (before anything is written:
    `pretrained/NAME` and `zoo_entries/NAME.json` must stay in their folders)."""
    if not (isinstance(name, str) and _NAME.fullmatch(name) and ".." not in name):
        raise PublishError(
            f"{flag} must be a plain model name: letters, digits, '.', '_' or '-', starting "
            f"and ending with a letter or digit, at most 96 characters, no '/' or '..'. "
            f"Received: {flag}={name!r}. Give a name like sgn-small-cnn-digits.")
    return name


def read_json(path):
    """The JSON object in `path`; a `PublishError` naming the file when it is damaged."""
    return read_json_object(path, "Restore it (rerun the tool that wrote it), then publish "
                            "again.", error=PublishError)


def read_run(run_dir):
    """`{"model_path", "train_config", "summary"}` of a `tools/train.py` output dir."""
    model_path = os.path.join(run_dir, "model.keras")
    config_path = os.path.join(run_dir, "config.json")
    if not (os.path.exists(model_path) and os.path.exists(config_path)):
        raise PublishError(
            f"{run_dir} is not a tools/train.py output dir (needs model.keras and config.json).")
    summary_path = os.path.join(run_dir, "summary.json")
    if not os.path.exists(summary_path):
        raise PublishError(
            f"{run_dir} holds no summary.json: its training did not finish (interrupted or "
            "still running), so model.keras is an intermediate checkpoint. Received: an "
            f"unfinished run. Rerun its tools/train.py command to finish it (it resumes), "
            "evaluate it, then publish.")
    return {"model_path": model_path, "train_config": read_json(config_path),
            "summary": read_json(summary_path)}


def default_name(train_config):
    """A zoo name for a run: `{method}-{model}-{dataset}`, lower case, with the
    models' common `sgn_` prefix dropped, e.g. `sgn-small-cnn-digits`."""
    model = str(train_config.get("model") or "model")
    model = model[len("sgn_"):] if model.startswith("sgn_") else model
    parts = (train_config.get("method") or "sgn", model, train_config.get("dataset") or "data")
    return re.sub(r"[^a-z0-9.]+", "-", "-".join(str(p) for p in parts).lower()).strip("-")


def read_report(report):
    """A `tools/evaluate.py` report: a dict, a `report.json` or its folder."""
    if isinstance(report, dict):
        return report
    path = os.path.join(report, "report.json") if os.path.isdir(report) else report
    if not os.path.exists(path):
        raise PublishError(f"no tools/evaluate.py report at {path}: evaluate the model first "
                           "(python tools/evaluate.py --run_dir=RUN_DIR writes "
                           "RUN_DIR/eval/report.json).")
    return read_json(path)


def epsilon_text(epsilon):
    """`8/255` for multiples of 1/255, else `0.1`."""
    scaled = epsilon * 255
    if 0 < epsilon < 1 and abs(scaled - round(scaled)) < 1e-6:
        return f"{round(scaled)}/255"
    return f"{epsilon:g}"


def _flag(name, value):
    if isinstance(value, bool):
        return f"--{name}" if value else f"--no{name}"
    if isinstance(value, float):
        return f"--{name}={value!r}"
    return f"--{name}={shlex.quote(str(value))}"


def train_command(train_config, output_dir):
    """The one `tools/train.py` command that reproduces a run's recipe: every
    recipe field (`keras_sgn.config.recipe_fields()`) that is set, left out
    where it equals the default (dataset-recipe fields are always written), and
    every method option (a flag of its own) that differs from its default."""
    train_config = run_config.saved_settings(train_config)
    defaults = run_config.TrainConfig()
    flags = []
    for key in run_config.recipe_fields():
        value = train_config.get(key)
        if value is None or key == "options":
            continue
        if key in _ALWAYS_WRITTEN or key in recipes.RECIPE_KEYS or \
                value != getattr(defaults, key):
            flags.append(_flag(key, value))
    declared = {option.field: option.default for option in method_options.declared()}
    for key, value in (train_config.get("options") or {}).items():
        if value is not None and value != declared.get(key, object()):
            flags.append(_flag(key, value))
    return " ".join(["python tools/train.py", *flags, _flag("output_dir", output_dir)])


def _given_attacks(protocol):
    return [{k: v for k, v in a.items() if k not in ("name", "kind")} | {"name": a["name"]}
            for a in protocol["attacks"]]


def attack_suite(protocol):
    """The name of the `keras_sgn.attacks.PRESETS` suite whose attacks (with
    their settings) a report's protocol lists, e.g. `quick`; None if none."""
    given = _given_attacks(protocol)
    for preset, specs in attack_registry.PRESETS.items():
        parsed = [{**s.settings(), "name": s.name} for s in parse_attacks(specs)]
        if parsed == given:
            return preset
    return None


def _attacks_flag(protocol):
    """`--attacks` of a report's protocol: the preset it equals, else the list."""
    preset = attack_suite(protocol)
    if preset:
        return preset
    given = _given_attacks(protocol)
    return ";".join(a["name"] + (":" + ",".join(f"{k}={v}" for k, v in a.items() if k != "name")
                                 if len(a) > 1 else "") for a in given)


def evaluate_command(report, model_path, output_dir):
    """The `tools/evaluate.py` command that produced `report`."""
    from keras_sgn import data

    protocol = report["protocol"]
    run_dir = os.path.dirname(model_path)
    # A run's model evaluated into the run's eval/ folder: the --run_dir form.
    in_run = (os.path.basename(model_path) == "model.keras"
              and os.path.normpath(output_dir) == os.path.join(run_dir, "eval"))
    source = _flag("run_dir", run_dir) if in_run else _flag("model", model_path)
    parts = ["python tools/evaluate.py", source,
             _flag("dataset", report["dataset"]), _flag("split", report.get("split", "test")),
             _flag("norm", protocol["norm"]), _flag("epsilon", float(protocol["epsilon"])),
             _flag("attacks", _attacks_flag(protocol)), _flag("seed", protocol.get("seed", 0))]
    if not protocol.get("cascade", True):
        parts.append("--nocascade")
    if "sanity_checks" not in report:
        parts.append("--nosanity_checks")
    try:
        size = data.info(report["dataset"]).num_examples[report.get("split", "test")]
    except (ValueError, KeyError):
        size = None
    if size is not None and report["n_examples"] < size:
        parts.append(_flag("n_examples", report["n_examples"]))
    if not in_run:
        parts.append(_flag("output_dir", output_dir))
    return " ".join(parts)


def json_safe(value):
    """JSON-safe copy: non-finite floats become None, numpy scalars Python ones."""
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


def metrics_from_report(report, model_path, eval_dir):
    """The entry/metadata `metrics` block: the numbers, the protocol, the checks."""
    for key in ("clean_accuracy", "robust_accuracy", "per_attack", "protocol", "n_examples"):
        if key not in report:
            raise PublishError(f"the evaluation report has no {key!r}: is it a "
                               "tools/evaluate.py report.json?")
    metrics = {
        "clean_accuracy": report["clean_accuracy"],
        "robust_accuracy": report["robust_accuracy"],
        "per_attack": report["per_attack"],
        "dataset": report.get("dataset"),
        "split": report.get("split", "test"),
        "n_examples": report["n_examples"],
        "protocol": report["protocol"],
        "suite": attack_suite(report["protocol"]),
        "sanity_passed": report.get("sanity_passed"),
        "sanity_checks": {c["name"]: c["passed"] for c in report.get("sanity_checks", [])},
        "measured_with": "tools/evaluate.py",
        "provenance": report.get("provenance"),
        "evaluate_command": evaluate_command(report, model_path, eval_dir),
    }
    return json_safe(metrics)


def describe_model(model, train_config):
    """The `architecture` block: model name, shapes, parameters, sites, feedback."""
    from keras_sgn import layers as sgn_layers

    sites = [{"name": s.name, "input_site": s.input_site,
              "beta": None if s.input_site else s.beta,
              "normalization": None if s.input_site else s.normalization}
             for s in sgn_layers.sites_of(model)]
    return {
        "model": train_config.get("model"),
        "class": type(model).__name__,
        "input_shape": list(model.input_shape[1:]),
        "num_classes": int(model.output_shape[-1]),
        "parameters": int(model.count_params()),
        "sites": sites,
        "feedback": {k: run_config.flat_settings(train_config).get(k)
                     for k in _FEEDBACK_FIELDS},
    }


def _versions():
    """keras-sgn's version and commit, and the library versions (`provenance`)."""
    return provenance.provenance(provenance.LIBRARIES + ("huggingface_hub",))


def _recipe(name, train_config, metrics, output_dir=None):
    """The `recipe` block: the recipe fields and the three commands (into
    `output_dir`, default `runs/NAME`)."""
    output_dir = output_dir or f"runs/{name}"
    recipe_fields = set(run_config.recipe_fields())
    train_config = run_config.saved_settings(train_config)  # an older config.json too
    return {
        "train_config": {k: v for k, v in train_config.items() if k in recipe_fields},
        "train_command": train_command(train_config, output_dir),
        "evaluate_command": metrics["evaluate_command"],
        "publish_command": f"python tools/publish.py --run_dir={output_dir} --name={name}",
    }


def training_block(summary):
    """The `training` block of `metadata.json`, from the run's `summary.json`:
    its numbers with their protocols, and `best_val_robust_accuracy_means`, the
    card's words for the validation estimate that picked the kept epoch."""
    training = {k: summary[k] for k in _TRAINING_SUMMARY if k in summary}
    if "best_val_robust_accuracy" in training:
        training["best_val_robust_accuracy_means"] = validation_label(training)
    return training


def build_metadata(name, model, run, metrics, keras_metadata, repo_id=None, distribution=None):
    """`metadata.json`: Keras' keys plus what a user or auditor needs.
    `distribution` (`{"destination", "run_dir"[, "folder"]}`, see
    `keras_sgn.hub.export_folder`) says where the folder goes and which run
    folder the commands name."""
    distribution = distribution or {}
    config, summary = run["train_config"], run["summary"]
    return json_safe({
        **keras_metadata,
        "format": FORMAT,
        "name": name,
        "repo_id": repo_id,
        "exported": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "versions": _versions(),
        "dataset": config.get("dataset"),
        "threat_model": {"norm": config.get("norm"), "epsilon": config.get("epsilon"),
                         "epsilon_text": epsilon_text(config.get("epsilon") or 0.0)},
        "architecture": describe_model(model, config),
        "parameters": int(model.count_params()),
        "recipe": _recipe(name, config, metrics, distribution.get("run_dir")),
        "distribution": distribution,
        "training": training_block(summary),
        "metrics": metrics,
    })
