"""Publish a trained model to the Hugging Face Hub and record it in the zoo.

From a tools/train.py output dir and its tools/evaluate.py report:

    python tools/publish.py --run_dir=runs/sgn-cnn-digits \
        --eval_dir=runs/sgn-cnn-digits/eval --name=sgn-cnn-digits --repo_id=me/sgn-cnn-digits

exports the Hub folder (config.json, model.weights.h5, metadata.json, README.md card),
creates the repo, uploads the folder in one commit, re-downloads it to check the
hashes, and records the commit sha, the sha256 of every file and the metrics in
keras_sgn/zoo_entries/<name>.json. The token comes from HF_TOKEN or `hf auth login`
and is never printed.

    --local_dir=DIR   write the folder only (no upload, the entry is untouched)
    --ship            write it into keras_sgn/pretrained/<name>/ (shipped in the package)
                      and record the entry as shipped-in-package (no upload)
    --folder=DIR      upload an already exported folder as is (instead of --run_dir)
"""

import os
import shutil
import tempfile

from absl import app
from absl import flags

FLAGS = flags.FLAGS
flags.DEFINE_string("run_dir", None, "A tools/train.py output dir (model.keras, config.json).")
flags.DEFINE_string("eval_dir", None, "The tools/evaluate.py output dir (report.json) of "
                    "RUN_DIR/model.keras; default RUN_DIR/eval.")
flags.DEFINE_string("folder", None, "Upload this already exported folder instead of --run_dir.")
flags.DEFINE_string("name", None, "Zoo name, e.g. sgn-cnn-digits.", required=True)
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


def _print_files(result):
    for filename, info in result["files"].items():
        print(f"  {filename:18s} {info['size']:>10d} bytes  sha256 {info['sha256']}")


def main(argv):
    del argv
    if bool(FLAGS.run_dir) == bool(FLAGS.folder):
        raise app.UsageError("give exactly one of --run_dir (export a training run) or "
                             "--folder (upload an exported folder).")
    if FLAGS.local_dir and FLAGS.ship:
        raise app.UsageError("--local_dir and --ship are exclusive.")
    if FLAGS.folder and (FLAGS.local_dir or FLAGS.ship):
        raise app.UsageError("--folder uploads an existing folder; --local_dir/--ship export one.")
    scratch = tempfile.mkdtemp(prefix="keras-sgn-publish-")
    try:
        publish(scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def publish(scratch):
    from keras_sgn import hub
    from keras_sgn import zoo

    entry_path = FLAGS.entry or os.path.join(zoo.ENTRIES_DIR, f"{FLAGS.name}.json")
    existing = zoo.read_entry(entry_path) if os.path.exists(entry_path) else None
    repo_id = FLAGS.repo_id or (existing.repo_id if existing else None) or \
        f"{hub.DEFAULT_NAMESPACE}/{FLAGS.name}"

    if FLAGS.folder:
        result = hub.read_folder(FLAGS.folder)
        if result["metadata"].get("name") != FLAGS.name:
            raise app.UsageError(f"{FLAGS.folder} holds {result['metadata'].get('name')!r}, "
                                 f"not --name={FLAGS.name!r}.")
    else:
        eval_dir = FLAGS.eval_dir or os.path.join(FLAGS.run_dir, "eval")
        if FLAGS.ship:
            output_dir = os.path.join(zoo.PRETRAINED_DIR, FLAGS.name)
        elif FLAGS.local_dir:
            output_dir = FLAGS.local_dir
        else:
            output_dir = os.path.join(scratch, FLAGS.name)
        result = hub.export_folder(FLAGS.run_dir, output_dir, FLAGS.name, eval_dir,
                                   repo_id=repo_id, overwrite=FLAGS.overwrite or FLAGS.ship)
    print(f"Model folder {result['folder']}:")
    _print_files(result)

    if FLAGS.local_dir:
        print("Wrote the folder only (--local_dir): nothing uploaded, zoo entry untouched.")
        return
    if FLAGS.ship:
        entry = hub.record_entry(entry_path, result["metadata"], result["files"],
                                 status="shipped-in-package",
                                 package_dir=f"pretrained/{FLAGS.name}", repo_id=repo_id)
        print(f"Recorded {entry_path} (status {entry['status']}).")
        return
    commit = hub.upload_folder(result["folder"], repo_id, private=FLAGS.private,
                               revision=FLAGS.revision, endpoint=FLAGS.endpoint)
    print(f"Uploaded to {repo_id} at commit {commit}.")
    if FLAGS.verify_upload:
        hub.verify_remote(repo_id, commit, result["files"], endpoint=FLAGS.endpoint)
        print("Re-downloaded the files at that commit: sha256 match.")
    entry = hub.record_entry(entry_path, result["metadata"], result["files"],
                             status="published", repo_id=repo_id, revision=commit)
    print(f"Recorded {entry_path} (status {entry['status']}, revision {commit}).")
    print(f"Load it with keras_sgn.load_pretrained({FLAGS.name!r}) or "
          f"keras.saving.load_model('hf://{repo_id}') after `import keras_sgn`.")


if __name__ == "__main__":
    app.run(main)
