"""The Hub folder of a training run: a Keras directory model plus its card,
written atomically and checked to reload with the same outputs."""

import os
import shutil
import tempfile

import numpy as np

from keras_sgn import zoo
from keras_sgn.errors import ArgumentError
from keras_sgn.hub.card import model_card
from keras_sgn.hub.metadata import (
    DEFAULT_NAMESPACE,
    FORMAT,
    PublishError,
    build_metadata,
    check_name,
    metrics_from_report,
    read_json,
    read_report,
    read_run,
)
from keras_sgn.io_utils import atomic_write_json, atomic_write_text
from keras_sgn.training.run_folder import check_writable_folder


def file_info(folder):
    """`{filename: {"sha256", "size"}}` of the model files of `folder`."""
    return {f: {"sha256": zoo.integrity.sha256_file(os.path.join(folder, f)),
                "size": os.path.getsize(os.path.join(folder, f))} for f in zoo.catalog.MODEL_FILES}


def check_reload(model, folder):
    """The folder must load as a plain Keras directory model, with the same outputs."""
    import keras

    rng = np.random.default_rng(0)
    x = rng.uniform(0.0, 1.0, (4, *model.input_shape[1:])).astype("float32")
    expected = np.asarray(model(x, training=False))
    reloaded = keras.saving.load_model(folder, compile=False, safe_mode=True)
    got = np.asarray(reloaded(x, training=False))
    if not np.allclose(expected, got, rtol=1e-5, atol=1e-5):
        raise PublishError(f"the exported folder {folder} does not reproduce the model's outputs.")


def _check_report_measured_this_model(report, model, run, report_source):
    """The report's numbers must be of these weights: the sha256 of the weights
    it measured (`model_fingerprint`) must be that of the model published."""
    from keras_sgn.evaluation.checkpoints import model_fingerprint

    where = report_source if isinstance(report_source, str) else "the evaluation report"
    measured = (report.get("model_fingerprint") or {}).get("weights_sha256")
    if measured is None:
        raise PublishError(
            f"{where} does not record which weights it measured (no model_fingerprint: made "
            "before keras-sgn recorded it, or not by tools/evaluate.py), so its numbers "
            f"cannot be tied to {run['model_path']}. Received: a report without "
            "weights_sha256. Evaluate the model again (python tools/evaluate.py "
            f"--run_dir={os.path.dirname(run['model_path'])}), then publish.")
    weights = model_fingerprint(model)["weights_sha256"]
    if measured != weights:
        raise PublishError(
            f"{where} was measured on other weights than {run['model_path']}: its numbers "
            f"are another model's. Received: a report of the weights with sha256 "
            f"{measured[:16]}... for a model whose weights have sha256 {weights[:16]}... "
            "Evaluate the model you "
            f"publish (python tools/evaluate.py --run_dir="
            f"{os.path.dirname(run['model_path'])}), and give that report.")


def _check_report_matches_run(report, run):
    dataset = run["train_config"].get("dataset")
    if report.get("dataset", dataset) != dataset:
        raise PublishError(f"the evaluation report is for dataset {report.get('dataset')!r} "
                           f"but the run trained on {dataset!r}.")
    if report.get("model") and os.path.exists(report["model"]) and not os.path.samefile(
            report["model"], run["model_path"]):
        raise PublishError(f"the evaluation report is of {report['model']}, not of "
                           f"{run['model_path']}: evaluate the model you publish.")


def _write_folder(model, folder, name, run, metrics, repo_id, distribution):
    """Save the model into `folder` (a fresh temporary directory), add its
    metadata and card, check it reloads; return the metadata."""
    import keras

    keras.saving.save_model(model, folder, zipped=False)
    assets = os.path.join(folder, "assets")
    if os.path.isdir(assets) and not os.listdir(assets):
        os.rmdir(assets)
    extra = sorted(set(os.listdir(folder)) - set(zoo.catalog.MODEL_FILES))
    if extra:
        raise PublishError(f"the model saved extra files {extra}: not supported by the zoo.")
    metadata = build_metadata(name, model, run, metrics,
                              read_json(os.path.join(folder, "metadata.json")), repo_id,
                              distribution=distribution)
    atomic_write_json(os.path.join(folder, "metadata.json"), metadata)
    atomic_write_text(os.path.join(folder, "README.md"), model_card(metadata))
    check_reload(model, folder)
    os.chmod(folder, 0o755)  # mkdtemp/mkstemp make them private; they ship and upload
    for filename in zoo.catalog.MODEL_FILES:
        os.chmod(os.path.join(folder, filename), 0o644)
    return metadata


def _replace_folder(tmp, output_dir):
    """Move the finished `tmp` to `output_dir`, replacing an old one only once
    the new one is complete."""
    if os.path.exists(output_dir):
        old = output_dir.rstrip("/") + ".old-" + os.path.basename(tmp)
        os.replace(output_dir, old)
        os.replace(tmp, output_dir)
        shutil.rmtree(old)
    else:
        os.replace(tmp, output_dir)


#: Where an exported folder goes, which decides how its card says to load it.
DESTINATIONS = ("local", "package", "hub")


def command_run_dir(run_dir, name):
    """The run folder the card's commands name: the run's own when it is inside
    the working directory (the commands then are the ones that made this
    export), else `runs/NAME` (an absolute path on another machine means nothing
    to a reader)."""
    relative = os.path.relpath(os.path.abspath(run_dir))
    return f"runs/{name}" if relative.startswith("..") else relative


def export_folder(run_dir, output_dir, name, report, *, repo_id=None, overwrite=False,
                  destination="local"):
    """Write the Hub folder of a `tools/train.py` run.

    Args:
        run_dir: the run's output dir (`model.keras`, `config.json`, `summary.json`).
        output_dir: the folder to write (replaced only with `overwrite=True`).
        name: the zoo name.
        report: the `tools/evaluate.py` report of `run_dir/model.keras` (a dict,
            `report.json` or its folder). Its numbers go into the card; it must
            record the sha256 of the weights it measured, and they must be
            those of `run_dir/model.keras` (else `PublishError`).
        repo_id: the Hub repository named in the card (default `keras-sgn/<name>`).
        overwrite: replace an existing non-empty `output_dir`.
        destination: `"local"` (the folder stays where it is: the card loads it
            from `output_dir`), `"package"` (shipped in keras_sgn/pretrained) or
            `"hub"` (to be uploaded to `repo_id`); the card's "Use" section
            offers only the loaders that work for it.

    Returns:
        `{"folder", "files": {name: {"sha256", "size"}}, "metadata"}`.
    """
    import keras

    import keras_sgn  # noqa: F401  (registers the custom objects)

    check_name(name, "name")  # it names files and folders: checked before any write
    if destination not in DESTINATIONS:
        raise ArgumentError(f"destination must be one of {DESTINATIONS}. "
                         f"Received: destination={destination!r}.")
    run = read_run(run_dir)
    report_source = report
    report = read_report(report)
    _check_report_matches_run(report, run)
    if os.path.isdir(output_dir) and os.listdir(output_dir) and not overwrite:
        raise PublishError(f"{output_dir} exists and is not empty (pass overwrite=True).")
    parent = os.path.dirname(os.path.abspath(output_dir))
    check_writable_folder(parent, flag="the folder of the export (--local_dir)")
    repo_id = repo_id or f"{DEFAULT_NAMESPACE}/{name}"
    report = {**report, "dataset": run["train_config"].get("dataset")}
    commands_dir = command_run_dir(run_dir, name)
    metrics = metrics_from_report(report, f"{commands_dir}/model.keras", f"{commands_dir}/eval")

    model = keras.saving.load_model(run["model_path"], compile=False, safe_mode=True)
    _check_report_measured_this_model(report, model, run, report_source)
    tmp = tempfile.mkdtemp(dir=parent, prefix=".tmp-export-")
    try:
        distribution = {"destination": destination, "run_dir": commands_dir}
        if destination == "local":
            distribution["folder"] = output_dir
        metadata = _write_folder(model, tmp, name, run, metrics, repo_id, distribution)
        files = file_info(tmp)
        _replace_folder(tmp, output_dir)
    finally:
        if os.path.exists(tmp):
            shutil.rmtree(tmp)
    return {"folder": output_dir, "files": files, "metadata": metadata}


def read_folder(folder):
    """`{"folder", "files", "metadata"}` of an exported folder (to upload it as is)."""
    missing = [f for f in zoo.catalog.MODEL_FILES if not os.path.exists(os.path.join(folder, f))]
    if missing:
        raise PublishError(f"{folder} is not an exported model folder: missing {missing}.")
    metadata = read_json(os.path.join(folder, "metadata.json"))
    if metadata.get("format") != FORMAT:
        raise PublishError(f"{folder}/metadata.json is not a {FORMAT} metadata file.")
    return {"folder": folder, "files": file_info(folder), "metadata": metadata}
