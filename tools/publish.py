"""Publish a trained and evaluated model: a Hub model folder, uploaded, recorded in the zoo.

The flow: `tools/train.py --output_dir=RUN_DIR`, `tools/evaluate.py --run_dir=RUN_DIR`
(writes RUN_DIR/eval/report.json), then

    python tools/publish.py --run_dir=RUN_DIR --local_dir=export/my-model

writes the folder only (config.json, model.weights.h5, metadata.json, README.md card);

    python tools/publish.py --run_dir=RUN_DIR --name=sgn-cnn-digits --repo_id=me/sgn-cnn-digits

also creates the repo, uploads the folder in one commit, re-downloads it to check the
hashes, and records the commit sha, the sha256 of every file and the metrics in
keras_sgn/zoo_entries/<name>.json. The token comes from HF_TOKEN or `hf auth login`
and is never printed. The name defaults to METHOD-MODEL-DATASET of the run.

    --ship            write it into keras_sgn/pretrained/<name>/ (shipped in the package)
                      and record the entry as shipped-in-package (no upload)
    --folder=DIR      upload an already exported folder as is (instead of --run_dir)
"""

# First, before anything imports keras_sgn: keras_sgn without TensorFlow until the flags
# are parsed, then TensorFlow without its start-up logs (tools/quiet_start.py).
import quiet_start

# isort: split
import os
import shutil
import tempfile

from absl import app, flags

from keras_sgn import cli

# keras_sgn.hub imports TensorFlow: `main` imports it, so `--help` stays quick.
hub = None

FLAGS = flags.FLAGS
flags.DEFINE_string("run_dir", None, "A tools/train.py output dir (model.keras, config.json).")
flags.DEFINE_string("eval_dir", None, "The tools/evaluate.py output dir (report.json) of "
                    "RUN_DIR/model.keras; default RUN_DIR/eval.")
flags.DEFINE_string("folder", None, "Upload this already exported folder instead of --run_dir.")
flags.DEFINE_string("name", None, "Zoo name; default: the run's METHOD-MODEL-DATASET.")
flags.DEFINE_string("repo_id", None, "Hub repository namespace/name; default: the entry's, "
                    "else keras-sgn/NAME.")
flags.DEFINE_bool("private", False, "Create the repository private.")
flags.DEFINE_string("revision", None, "Branch to commit to (created if needed); default main.")
flags.DEFINE_string("local_dir", None, "Only write the folder here (no upload, entry untouched).")
flags.DEFINE_bool("ship", False, "Write the folder into keras_sgn/pretrained/NAME and record "
                  "the entry as shipped in the package (no upload).")
flags.DEFINE_string("entry", None, "Zoo entry file to update; default "
                    "keras_sgn/zoo_entries/NAME.json.")
flags.DEFINE_string("endpoint", None, "Hub URL (default: HF_ENDPOINT or huggingface.co).")
flags.DEFINE_bool("verify_upload", True, "Re-download the uploaded files and check their sha256.")
flags.DEFINE_bool("overwrite", False, "Replace an existing --local_dir.")


def _check_flags():
    if bool(FLAGS.run_dir) == bool(FLAGS.folder):
        raise app.UsageError("give exactly one of --run_dir (export a training run) or "
                             "--folder (upload an exported folder).")
    if FLAGS.local_dir and FLAGS.ship:
        raise app.UsageError("--local_dir and --ship are exclusive: give one of them.")
    if FLAGS.folder and (FLAGS.local_dir or FLAGS.ship):
        raise app.UsageError("--folder uploads an existing folder; --local_dir/--ship export one "
                             "from --run_dir.")
    if FLAGS.name is not None:
        hub.metadata.check_name(FLAGS.name)  # it becomes a path: refused before anything is written


def _report_path(run_dir):
    """RUN_DIR's evaluation report; a missing one names the command that makes it."""
    eval_dir = FLAGS.eval_dir or os.path.join(run_dir, "eval")
    path = os.path.join(eval_dir, "report.json")
    if not os.path.exists(path):
        command = f"python tools/evaluate.py --run_dir={run_dir}" + (
            f" --output_dir={eval_dir}" if FLAGS.eval_dir else "")
        raise app.UsageError(f"no evaluation report at {path}: run `{command}` first, then "
                             "publish again.")
    return path


def _print_files(result):
    for filename, info in result["files"].items():
        print(f"  {filename:18s} {info['size']:>10d} bytes  sha256 {info['sha256']}")


def main(argv):
    del argv
    quiet_start.start_tensorflow()
    global hub
    from keras_sgn import hub

    _check_flags()
    if not (FLAGS.local_dir or FLAGS.ship):
        hub.upload.check_token()  # before any work: uploading needs a token
    scratch = tempfile.mkdtemp(prefix="keras-sgn-publish-")
    try:
        publish(scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _export(scratch, repo_for):
    """Export --run_dir (or read --folder); returns `(name, repo_id, result)`."""
    from keras_sgn import zoo

    if FLAGS.folder:
        result = hub.export.read_folder(FLAGS.folder)
        name = hub.metadata.check_name(FLAGS.name or result["metadata"].get("name"))
        if result["metadata"].get("name") != name:
            raise app.UsageError(f"--name: {FLAGS.folder} holds {result['metadata'].get('name')!r}"
                                 f", not --name={name!r}.")
        return name, repo_for(name), result
    run = hub.metadata.read_run(FLAGS.run_dir)  # not a run dir: says so before the report
    report = _report_path(FLAGS.run_dir)
    name = hub.metadata.check_name(FLAGS.name or hub.metadata.default_name(run["train_config"]))
    output_dir = (os.path.join(zoo.catalog.PRETRAINED_DIR, name) if FLAGS.ship else
                  FLAGS.local_dir or os.path.join(scratch, name))
    repo_id = repo_for(name)
    destination = "package" if FLAGS.ship else "local" if FLAGS.local_dir else "hub"
    return name, repo_id, hub.export_folder(FLAGS.run_dir, output_dir, name, report,
                                            repo_id=repo_id,
                                            overwrite=FLAGS.overwrite or FLAGS.ship,
                                            destination=destination)


def publish(scratch):
    from keras_sgn import zoo

    def entry_path(name):
        return FLAGS.entry or os.path.join(zoo.catalog.ENTRIES_DIR, f"{name}.json")

    def repo_for(name):
        path = entry_path(name)
        existing = zoo.catalog.read_entry(path) if os.path.exists(path) else None
        return FLAGS.repo_id or (existing.repo_id if existing else None) or \
            f"{hub.metadata.DEFAULT_NAMESPACE}/{name}"

    name, repo_id, result = _export(scratch, repo_for)
    if FLAGS.local_dir:
        print(f"Wrote the model folder of {name} to {result['folder']} ("
              f"{', '.join(result['files'])}); nothing uploaded, zoo entry untouched.")
        return
    print(f"Model folder of {name}:")
    _print_files(result)
    if FLAGS.ship:
        entry = hub.upload.record_entry(entry_path(name), result["metadata"], result["files"],
                                        status="shipped-in-package",
                                        package_dir=f"pretrained/{name}", repo_id=repo_id)
        print(f"Wrote {result['folder']} (shipped in the package) and recorded "
              f"{entry_path(name)} (status {entry['status']}).")
        return
    commit = hub.upload_folder(result["folder"], repo_id, private=FLAGS.private,
                               revision=FLAGS.revision, endpoint=FLAGS.endpoint)
    if FLAGS.verify_upload:
        hub.verify_remote(repo_id, commit, result["files"], endpoint=FLAGS.endpoint)
        print(f"Uploaded to {repo_id} at commit {commit}; re-downloaded: sha256 match.")
    hub.upload.record_entry(entry_path(name), result["metadata"], result["files"],
                            status="published", repo_id=repo_id, revision=commit)
    print(f"Uploaded {name} to {repo_id}@{commit} and recorded {entry_path(name)} (status "
          f"published): keras_sgn.load_pretrained({name!r}) loads it.")


if __name__ == "__main__":
    cli.run_tool(main)
