"""Export a training run as a Hub model folder, write its model card, publish it.

The folder (DESIGN section 5) is a valid Keras directory model plus a card:

* `config.json`: the uncompiled inference model (Keras 3 format);
* `model.weights.h5`: its weights, no optimizer state;
* `metadata.json`: Keras' own keys plus versions, parameter count, the training
  recipe and the metrics measured by `tools/evaluate.py` (with the protocol);
* `README.md`: the model card, with `model-index` eval results.

So `keras.saving.load_model("hf://<repo_id>")` works once `keras_sgn` is imported,
and `keras_sgn.load_pretrained(name)` loads it verified against the zoo entry.

```python
result = keras_sgn.hub.export_folder("runs/digits", "export/sgn-cnn-digits",
                                     name="sgn-cnn-digits", report="runs/digits/eval")
commit = keras_sgn.hub.upload_folder("export/sgn-cnn-digits", "me/sgn-cnn-digits")
keras_sgn.hub.record_entry("keras_sgn/zoo_entries/sgn-cnn-digits.json", result["metadata"],
                           result["files"], status="published", repo_id="me/sgn-cnn-digits",
                           revision=commit)
```

`tools/publish.py` does all of this from the command line.
"""

import dataclasses
import datetime
import json
import math
import os
import platform
import shlex
import shutil
import tempfile

import numpy as np

from keras_sgn import zoo
from keras_sgn.io_utils import atomic_write_json, atomic_write_text

FORMAT = "keras-sgn-model-folder/1"
DEFAULT_NAMESPACE = "keras-sgn"
PAPER = ('"Self-Gradient Networks", Aboutalebi, Shafiee, Wong, '
         "[arXiv 2011.09364](https://arxiv.org/abs/2011.09364)")
DATASET_NAMES = {
    "digits": ("sklearn-digits", "scikit-learn digits (8x8 handwritten digits)"),
    "cifar10": ("cifar10", "CIFAR-10"),
    "cifar100": ("cifar100", "CIFAR-100"),
    "svhn_cropped": ("svhn", "SVHN (cropped digits)"),
    "mnist": ("mnist", "MNIST"),
    "fashion_mnist": ("fashion_mnist", "Fashion-MNIST"),
}
METHOD_TEXT = {
    "standard": "clean training (no adversary)",
    "fast": "FGSM with random start (Wong et al. 2020)",
    "pgd": "PGD adversarial training (Madry et al. 2018)",
    "free": "Free adversarial training (Shafahi et al. 2019)",
    "trades": "TRADES (Zhang et al. 2019)",
    "sgn": "self-gradient training: an FGSM-RS input step plus hidden-site feedback",
    "sgn-pgd": "self-gradient training with a PGD input attack",
}
# TrainConfig fields that describe the machine, not the recipe.
_NOT_RECIPE = ("output_dir", "verbose", "data_dir")


class PublishError(Exception):
    """Publishing cannot go on (missing inputs, no token, a mismatched report)."""


# ---------------------------------------------------------------------------
# Inputs: a tools/train.py run and a tools/evaluate.py report.


def _read_json(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def read_run(run_dir):
    """`{"model_path", "train_config", "summary"}` of a `tools/train.py` output dir."""
    model_path = os.path.join(run_dir, "model.keras")
    config_path = os.path.join(run_dir, "config.json")
    if not (os.path.exists(model_path) and os.path.exists(config_path)):
        raise PublishError(
            f"{run_dir} is not a tools/train.py output dir (needs model.keras and config.json).")
    summary_path = os.path.join(run_dir, "summary.json")
    return {"model_path": model_path, "train_config": _read_json(config_path),
            "summary": _read_json(summary_path) if os.path.exists(summary_path) else {}}


def read_report(report):
    """A `tools/evaluate.py` report: a dict, a `report.json` or its folder."""
    if isinstance(report, dict):
        return report
    path = os.path.join(report, "report.json") if os.path.isdir(report) else report
    if not os.path.exists(path):
        raise PublishError(f"no tools/evaluate.py report at {path}.")
    return _read_json(path)


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
    """The one `tools/train.py` command that reproduces a run's recipe."""
    from keras_sgn import training

    defaults = training.TrainConfig()
    flags = []
    for field in dataclasses.fields(training.TrainConfig):
        key, value = field.name, train_config.get(field.name)
        if key in _NOT_RECIPE or value is None or not hasattr(defaults, key):
            continue
        if key in ("dataset", "method", "seed") or key in training.RECIPE_KEYS or \
                value != getattr(defaults, key):
            flags.append(_flag(key, value))
    return " ".join(["python tools/train.py", *flags, _flag("output_dir", output_dir)])


def _attacks_flag(protocol):
    from keras_sgn import evaluation

    given = [{k: v for k, v in a.items() if k not in ("name", "kind")} | {"name": a["name"]}
             for a in protocol["attacks"]]
    for preset, specs in evaluation.PRESETS.items():
        parsed = [{**s.settings(), "name": s.name} for s in evaluation.parse_attacks(specs)]
        if parsed == given:
            return preset
    return ";".join(a["name"] + (":" + ",".join(f"{k}={v}" for k, v in a.items() if k != "name")
                                 if len(a) > 1 else "") for a in given)


def evaluate_command(report, model_path, output_dir):
    """The `tools/evaluate.py` command that produced `report`."""
    from keras_sgn import data

    protocol = report["protocol"]
    parts = ["python tools/evaluate.py", _flag("model", model_path),
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
    parts.append(_flag("output_dir", output_dir))
    return " ".join(parts)


def _finite(value):
    """JSON-safe copy: non-finite floats become None."""
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
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
        "sanity_passed": report.get("sanity_passed"),
        "sanity_checks": {c["name"]: c["passed"] for c in report.get("sanity_checks", [])},
        "measured_with": "tools/evaluate.py",
        "evaluate_command": evaluate_command(report, model_path, eval_dir),
    }
    return _finite(metrics)


# ---------------------------------------------------------------------------
# The folder.


def _describe_model(model, train_config):
    from keras_sgn import layers as sgn_layers

    sites = [{"name": s.name, "input_site": s.input_site,
              "beta": None if s.input_site else s.beta,
              "normalization": None if s.input_site else s.normalization}
             for s in sgn_layers.sites_of(model)]
    keys = ("method", "sites", "beta", "normalization", "clean_weight", "second_order",
            "feedback_at_inference", "step_size", "attack_steps")
    return {
        "model": train_config.get("model"),
        "class": type(model).__name__,
        "input_shape": list(model.input_shape[1:]),
        "num_classes": int(model.output_shape[-1]),
        "parameters": int(model.count_params()),
        "sites": sites,
        "feedback": {k: train_config.get(k) for k in keys},
    }


def build_metadata(name, model, run, metrics, keras_metadata, repo_id=None):
    """`metadata.json`: Keras' keys plus what a user or auditor needs."""
    import keras
    import tensorflow as tf

    from keras_sgn import __version__

    try:
        import huggingface_hub
        hub_version = huggingface_hub.__version__
    except ImportError:  # pragma: no cover
        hub_version = None
    config = run["train_config"]
    summary = run["summary"]
    output_dir = f"runs/{name}"
    return _finite({
        **keras_metadata,
        "format": FORMAT,
        "name": name,
        "repo_id": repo_id,
        "exported": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "versions": {"keras_sgn": __version__, "keras": keras.__version__,
                     "tensorflow": tf.__version__, "huggingface_hub": hub_version,
                     "numpy": np.__version__, "python": platform.python_version()},
        "dataset": config.get("dataset"),
        "threat_model": {"norm": config.get("norm"), "epsilon": config.get("epsilon"),
                         "epsilon_text": epsilon_text(config.get("epsilon") or 0.0)},
        "architecture": _describe_model(model, config),
        "parameters": int(model.count_params()),
        "recipe": {
            "train_config": {k: v for k, v in config.items() if k not in _NOT_RECIPE},
            "train_command": train_command(config, output_dir),
            "evaluate_command": metrics["evaluate_command"],
            "publish_command": (f"python tools/publish.py --run_dir={output_dir} "
                                f"--eval_dir={output_dir}/eval --name={name}"),
        },
        "training": {k: summary.get(k) for k in (
            "epochs", "best_epoch", "best_val_robust_accuracy", "train_seconds", "replicas",
            "clean_accuracy", "robust_accuracy", "per_attack", "n_test_examples")
            if k in summary},
        "metrics": metrics,
    })


def _file_info(folder):
    return {f: {"sha256": zoo.sha256_file(os.path.join(folder, f)),
                "size": os.path.getsize(os.path.join(folder, f))} for f in zoo.MODEL_FILES}


def _check_reload(model, folder):
    """The folder must load as a plain Keras directory model, with the same outputs."""
    import keras

    rng = np.random.default_rng(0)
    x = rng.uniform(0.0, 1.0, (4, *model.input_shape[1:])).astype("float32")
    expected = np.asarray(model(x, training=False))
    reloaded = keras.saving.load_model(folder, compile=False, safe_mode=True)
    got = np.asarray(reloaded(x, training=False))
    if not np.allclose(expected, got, rtol=1e-5, atol=1e-5):
        raise PublishError(f"the exported folder {folder} does not reproduce the model's outputs.")


def export_folder(run_dir, output_dir, name, report, *, repo_id=None, overwrite=False):
    """Write the Hub folder of a `tools/train.py` run.

    Args:
        run_dir: the run's output dir (`model.keras`, `config.json`, `summary.json`).
        output_dir: the folder to write (replaced only with `overwrite=True`).
        name: the zoo name.
        report: the `tools/evaluate.py` report of `run_dir/model.keras` (a dict,
            `report.json` or its folder). Its numbers go into the card.
        repo_id: the Hub repository named in the card (default `keras-sgn/<name>`).
        overwrite: replace an existing non-empty `output_dir`.

    Returns:
        `{"folder", "files": {name: {"sha256", "size"}}, "metadata"}`.
    """
    import keras

    import keras_sgn  # noqa: F401  (registers the custom objects)

    run = read_run(run_dir)
    report = read_report(report)
    dataset = run["train_config"].get("dataset")
    if report.get("dataset", dataset) != dataset:
        raise PublishError(f"the evaluation report is for dataset {report.get('dataset')!r} "
                           f"but the run trained on {dataset!r}.")
    if report.get("model") and os.path.exists(report["model"]) and not os.path.samefile(
            report["model"], run["model_path"]):
        raise PublishError(f"the evaluation report is of {report['model']}, not of "
                           f"{run['model_path']}: evaluate the model you publish.")
    if os.path.isdir(output_dir) and os.listdir(output_dir) and not overwrite:
        raise PublishError(f"{output_dir} exists and is not empty (pass overwrite=True).")
    repo_id = repo_id or f"{DEFAULT_NAMESPACE}/{name}"
    report = {**report, "dataset": dataset}
    output_dir_rel = f"runs/{name}"
    metrics = metrics_from_report(report, f"{output_dir_rel}/model.keras",
                                  f"{output_dir_rel}/eval")

    model = keras.saving.load_model(run["model_path"], compile=False, safe_mode=True)
    parent = os.path.dirname(os.path.abspath(output_dir))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(dir=parent, prefix=".tmp-export-")
    try:
        keras.saving.save_model(model, tmp, zipped=False)
        assets = os.path.join(tmp, "assets")
        if os.path.isdir(assets) and not os.listdir(assets):
            os.rmdir(assets)
        extra = sorted(set(os.listdir(tmp)) - set(zoo.MODEL_FILES))
        if extra:
            raise PublishError(f"the model saved extra files {extra}: not supported by the zoo.")
        metadata = build_metadata(name, model, run, metrics,
                                  _read_json(os.path.join(tmp, "metadata.json")), repo_id)
        atomic_write_json(os.path.join(tmp, "metadata.json"), metadata)
        atomic_write_text(os.path.join(tmp, "README.md"), model_card(metadata))
        _check_reload(model, tmp)
        os.chmod(tmp, 0o755)  # mkdtemp/mkstemp make them private; they ship and upload
        for filename in zoo.MODEL_FILES:
            os.chmod(os.path.join(tmp, filename), 0o644)
        files = _file_info(tmp)
        if os.path.exists(output_dir):
            old = output_dir.rstrip("/") + ".old-" + os.path.basename(tmp)
            os.replace(output_dir, old)
            os.replace(tmp, output_dir)
            shutil.rmtree(old)
        else:
            os.replace(tmp, output_dir)
    finally:
        if os.path.exists(tmp):
            shutil.rmtree(tmp)
    return {"folder": output_dir, "files": files, "metadata": metadata}


def read_folder(folder):
    """`{"folder", "files", "metadata"}` of an exported folder (to upload it as is)."""
    missing = [f for f in zoo.MODEL_FILES if not os.path.exists(os.path.join(folder, f))]
    if missing:
        raise PublishError(f"{folder} is not an exported model folder: missing {missing}.")
    metadata = _read_json(os.path.join(folder, "metadata.json"))
    if metadata.get("format") != FORMAT:
        raise PublishError(f"{folder}/metadata.json is not a {FORMAT} metadata file.")
    return {"folder": folder, "files": _file_info(folder), "metadata": metadata}


# ---------------------------------------------------------------------------
# The model card.


def wilson_interval(p, n, z=1.96):
    """95% Wilson score interval of an accuracy `p` measured on `n` examples."""
    if not n:
        return (0.0, 1.0)
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def _pct(value):
    return f"{100 * value:.2f}%"


def _card_yaml(metadata):
    from huggingface_hub import EvalResult, ModelCardData

    metrics = metadata["metrics"]
    tm = metadata["threat_model"]
    dataset_type, dataset_name = DATASET_NAMES.get(
        metadata["dataset"], (metadata["dataset"], metadata["dataset"]))
    attacks = ", ".join(a["name"] for a in metrics["protocol"]["attacks"])
    common = dict(task_type="image-classification", task_name="Image Classification",
                  dataset_type=dataset_type, dataset_name=dataset_name,
                  dataset_split=metrics["split"])
    results = [
        EvalResult(metric_type="accuracy", metric_name="Clean accuracy (%)",
                   metric_value=round(100 * metrics["clean_accuracy"], 2), **common),
        EvalResult(metric_type="robust_accuracy",
                   metric_name=(f"Robust accuracy (%), {tm['norm']} eps={tm['epsilon_text']}, "
                                f"worst case over {attacks}"),
                   metric_value=round(100 * metrics["robust_accuracy"], 2),
                   metric_args={"norm": tm["norm"], "epsilon": tm["epsilon"]}, **common),
    ]
    data = ModelCardData(
        library_name="keras", license="apache-2.0", model_name=metadata["name"],
        pipeline_tag="image-classification",
        tags=["keras", "keras-sgn", "tensorflow", "adversarial-robustness",
              "adversarial-training", "self-gradient-networks", "image-classification"],
        eval_results=results)
    return data.to_yaml()


def model_card(metadata):
    """The `README.md` of the folder, from its `metadata.json` content."""
    name, metrics, arch = metadata["name"], metadata["metrics"], metadata["architecture"]
    tm, recipe, config = metadata["threat_model"], metadata["recipe"], metadata["recipe"][
        "train_config"]
    n = metrics["n_examples"]
    dataset_name = DATASET_NAMES.get(metadata["dataset"], (None, metadata["dataset"]))[1]
    method = config.get("method")
    repo_id = metadata.get("repo_id") or f"{DEFAULT_NAMESPACE}/{name}"
    hidden = [s for s in arch["sites"] if not s["input_site"]]
    sites_text = (", ".join(f"`{s['name']}` (beta={s['beta']:g}, {s['normalization']})"
                            for s in hidden) or "none (a plain network)")
    protocol = metrics["protocol"]
    attack_lines = "\n".join(
        f"  - `{a['name']}` ({a['kind']}): "
        + ", ".join(f"{k}={v}" for k, v in a.items() if k not in ("name", "kind"))
        for a in protocol["attacks"])
    rows = [("clean", metrics["clean_accuracy"])]
    rows += [(f"after `{label}`" if protocol.get("cascade") else f"`{label}` alone", value)
             for label, value in metrics["per_attack"].items()]
    table = "\n".join(
        f"| {label} | {_pct(v)} | {_pct(wilson_interval(v, n)[0])} - "
        f"{_pct(wilson_interval(v, n)[1])} |" for label, v in rows)
    lo, hi = wilson_interval(metrics["robust_accuracy"], n)
    checks = metrics.get("sanity_checks") or {}
    if not checks:
        sanity = "The gradient-masking sanity checks were not run."
    elif metrics.get("sanity_passed"):
        sanity = (f"All {len(checks)} gradient-masking sanity checks passed ("
                  + ", ".join(f"`{c}`" for c in checks) + ").")
    else:
        failed = [c for c, ok in checks.items() if not ok]
        sanity = ("**Some gradient-masking sanity checks FAILED: "
                  + ", ".join(f"`{c}`" for c in failed)
                  + ". Treat the robust accuracy with suspicion.**")
    feedback_note = (
        "At inference the network is plain: feedback sites are the identity, so attacks see "
        "an ordinary network." if not config.get("feedback_at_inference") else
        "This model uses **feedback at inference** (a research option); it was attacked "
        "through the feedback, and a gradient-free attack was part of the evaluation.")
    training = metadata.get("training") or {}
    trained = ""
    if training.get("epochs"):
        trained = (f"\n- trained {training['epochs']} epochs"
                   + (f" in {training['train_seconds']:.0f} s" if training.get("train_seconds")
                      else "")
                   + (f"; kept epoch {training['best_epoch']} (best validation robust "
                      f"accuracy, {_pct(training['best_val_robust_accuracy'])})"
                      if training.get("best_epoch") else ""))
    versions = metadata["versions"]
    toy_note = (
        "\n- digits is a toy dataset (8x8 images, 1,797 in all): this model shows the whole "
        "pipeline\n  end to end; its numbers say little about harder datasets such as CIFAR-10."
        if metadata["dataset"] == "digits" else "")
    input_site_text = (
        "yes (the input perturbation is the training attack's step, projected to the "
        "epsilon-ball)" if any(s["input_site"] for s in arch["sites"]) else "no")
    input_shape = "x".join(str(d) for d in arch["input_shape"])
    shape_text = ", ".join(str(d) for d in arch["input_shape"])
    robust = _pct(metrics["robust_accuracy"])
    cascade_text = ("run as a cascade (each on the points still robust, AutoAttack style)"
                    if protocol.get("cascade") else "each run on every correctly classified point")
    return f"""---
{_card_yaml(metadata).strip()}
---

# {name}

An adversarially trained **Self-Gradient Network** (SGN) image classifier from keras-sgn:
`{arch['model']}` ({arch['parameters']:,} parameters) trained on {dataset_name} with the
`{method}` method ({METHOD_TEXT.get(method, method)}) for the threat model
**{tm['norm']}, epsilon = {tm['epsilon_text']}** (pixel units, images in [0, 1]).

> The self-gradient mechanism is keras-sgn's *reconstruction* of {PAPER}: only the
> paper's abstract was available. The paper's claims (faster robust convergence, higher robust
> accuracy) are hypotheses this project measures, not results this card assumes.

## Use

```python
import keras_sgn

model = keras_sgn.load_pretrained("{name}")   # sha256-verified, built in safe_mode
logits = model.predict(images)   # float32 images in [0, 1], shape (n, {shape_text})
```

or, with plain Keras (import `keras_sgn` first: it registers the layers):

```python
import keras, keras_sgn
model = keras.saving.load_model("hf://{repo_id}")
```

Inputs are float32 in [0, 1] ({input_shape}); mean/std normalisation is a layer inside the
model, so epsilon is in pixel units. The model outputs logits for {arch['num_classes']} classes.
{feedback_note}

## Robustness

Measured by `tools/evaluate.py` on the {metrics['split']} split ({n} images):

| | accuracy | 95% interval |
|---|---|---|
{table}
| **robust (worst case per example)** | **{robust}** | {_pct(lo)} - {_pct(hi)} |

Protocol: {tm['norm']} threat model, epsilon = {tm['epsilon_text']}; attacks
{cascade_text};
an example counts as robust only if it is classified correctly and no attack fools it;
BatchNorm in inference mode; seed {protocol.get('seed', 0)}.

{attack_lines}

{sanity} Attacks give an *upper bound* on the true robust accuracy; this is not a certificate.

Reproduce:

```bash
{metrics['evaluate_command']}
```

## Training

- method: `{method}` ({METHOD_TEXT.get(method, method)}), epsilon = {tm['epsilon_text']}
- input site: {input_site_text}
- hidden feedback sites: {sites_text}{trained}

```bash
{recipe['train_command']}
```

## Limitations

- Robust only against the stated threat model ({tm['norm']}, epsilon = {tm['epsilon_text']}); other
  perturbations (larger epsilon, other norms, corruptions, distribution shift) are not covered.
- {n} evaluation images: the 95% intervals above show the sampling error.
- Trained on {dataset_name} only; it is not a general-purpose classifier.{toy_note}

## Files

| file | what |
|---|---|
| `config.json` | the uncompiled inference model (Keras 3 format) |
| `model.weights.h5` | its weights (HDF5), no optimizer state |
| `metadata.json` | versions, parameter count, recipe, metrics with the protocol |
| `README.md` | this card |

`keras_sgn.load_pretrained` checks every file against the sha256 pinned in keras-sgn's zoo
entry before building anything, and builds the model with Keras `safe_mode=True`
(no code in the files is ever executed; nothing is unpickled).

Software: keras-sgn {versions['keras_sgn']}, Keras {versions['keras']}, TensorFlow
{versions['tensorflow']}.

## Citation

The self-gradient idea: {PAPER}.
"""


# ---------------------------------------------------------------------------
# Publishing.


def upload_folder(folder, repo_id, *, private=False, revision=None, token=None, endpoint=None,
                  commit_message=None, api=None):
    """Create the repo if needed and upload the folder's model files in one commit.

    Args:
        folder: an exported folder (`export_folder`).
        repo_id: `namespace/name` on the Hub.
        private: create the repository private.
        revision: the branch to commit to (created if needed; default `main`).
        token: a Hub token; default `HF_TOKEN` or the `hf auth login` token.
            It is never printed or logged.
        endpoint: the Hub URL (default `HF_ENDPOINT` or huggingface.co).
        api: an `HfApi`-like object (tests).

    Returns:
        The 40-hex sha of the commit, to pin in the zoo entry.
    """
    from huggingface_hub import HfApi, get_token

    from keras_sgn import __version__

    read_folder(folder)  # refuses anything but a complete exported folder
    if api is None:
        if token is None and get_token() is None:
            raise PublishError("no Hugging Face token: run `hf auth login` or set HF_TOKEN.")
        api = HfApi(endpoint=endpoint, token=token, library_name="keras-sgn",
                    library_version=__version__)
    api.create_repo(repo_id, private=private, exist_ok=True)
    if revision and revision != "main":
        api.create_branch(repo_id, branch=revision, exist_ok=True)
    info = api.upload_folder(
        repo_id=repo_id, folder_path=folder, revision=revision,
        allow_patterns=list(zoo.MODEL_FILES),
        commit_message=commit_message or f"Upload {os.path.basename(folder.rstrip('/'))} "
                                          f"(keras-sgn {__version__})")
    commit = getattr(info, "oid", None)
    if not (isinstance(commit, str) and zoo._COMMIT.fullmatch(commit)):
        raise PublishError(f"the Hub did not return a commit sha for the upload (got {commit!r}).")
    return commit


def verify_remote(repo_id, revision, files, *, endpoint=None, token=None):
    """Download the files of `repo_id@revision` into a throwaway cache and check
    their sha256 against `files`: what users will get is what was exported."""
    from huggingface_hub import hf_hub_download

    with tempfile.TemporaryDirectory() as cache:
        for filename, expected in files.items():
            path = hf_hub_download(repo_id, filename, revision=revision, cache_dir=cache,
                                   endpoint=endpoint, token=token)
            if zoo.sha256_file(path) != expected["sha256"]:
                raise PublishError(f"{repo_id}@{revision}/{filename} differs from the export.")


def record_entry(entry_path, metadata, files, *, status, repo_id=None, revision=None,
                 package_dir=None, notes=None, description=None):
    """Write (or update) a zoo entry from an export and where it went.

    Fields measured or derived from the run (recipe, metrics, hashes,
    architecture) are replaced; a hand-written `description` and `notes` are
    kept unless new ones are given. A shipped copy (`package_dir`) is kept only
    if its files still match `files`. The entry is validated before it is
    written (atomically).
    """
    existing = _read_json(entry_path) if os.path.exists(entry_path) else {}
    name = metadata["name"]
    if package_dir is None and existing.get("package_dir"):
        shipped = os.path.join(os.path.dirname(os.path.abspath(zoo.__file__)),
                               existing["package_dir"])
        try:
            if _file_info(shipped) == files:
                package_dir = existing["package_dir"]
        except OSError:
            pass
    if status == "published" and revision is None:
        raise PublishError("a published entry needs the pinned revision (commit sha).")
    entry = {
        "schema_version": zoo.SCHEMA_VERSION,
        "name": name,
        "status": status,
        "description": description or existing.get("description") or (
            f"{metadata['architecture']['model']} trained with "
            f"{metadata['recipe']['train_config'].get('method')} on {metadata['dataset']}."),
        "dataset": metadata["dataset"],
        "threat_model": metadata["threat_model"],
        "architecture": metadata["architecture"],
        "recipe": metadata["recipe"],
        "repo_id": repo_id or existing.get("repo_id") or metadata.get("repo_id"),
        "revision": revision,
        "files": files,
        "metrics": metadata["metrics"],
        "package_dir": package_dir,
        "notes": notes if notes is not None else existing.get("notes", ""),
        "versions": metadata.get("versions"),
    }
    if revision is None and existing.get("revision") and existing.get("files") == files:
        entry["revision"] = existing["revision"]  # same files: the old pin still holds them
    if entry["revision"] is None and not entry["notes"]:
        entry["notes"] = ("Not uploaded to the Hub yet, so there is no commit to pin; "
                          "tools/publish.py records it when it uploads.")
    zoo._check_entry(entry, entry_path)
    atomic_write_json(entry_path, entry)
    return entry
