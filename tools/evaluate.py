"""Evaluate a model's robustness: attack suite, worst case, sanity checks.

After `python tools/train.py --output_dir=RUN_DIR`:

    python tools/evaluate.py --run_dir=RUN_DIR

evaluates RUN_DIR/model.keras on the run's dataset and threat model (read from
RUN_DIR/config.json) and writes RUN_DIR/eval/report.json, report.md,
accuracy_vs_epsilon.png and adversarial_examples.png; `tools/publish.py
--run_dir=RUN_DIR` then reads that report. A zoo model is evaluated on its own
dataset and threat model:

    python tools/evaluate.py --model=sgn-cnn-digits --attacks=quick

Any saved model: `--model=path/model.keras --dataset=NAME` (report beside it, in eval/).
Flags given on the command line override what the run or the zoo entry says.

A long evaluation (the standard suite on 10,000 images takes hours on a CPU)
survives being killed: after each batch its outcome is kept in
OUTPUT_DIR/checkpoints/, and the same command run again skips the batches
already attacked; its report is exactly that of an uninterrupted run (the
timings aside). Other settings with the same folder are refused: delete it,
pass --noresume (starts over), or give another --output_dir. Once report.json
is written the checkpoints are deleted: the report is the result. An evaluation
holds its OUTPUT_DIR (OUTPUT_DIR/.lock) until it ends: a second one into the
same folder stops with one line naming the first (its pid and command).
"""

# First, before anything imports TensorFlow (keras_sgn does): hides its start-up
# logs unless --verbose=2 (tools/quiet_start.py).
import quiet_start  # noqa: F401

# isort: split
import os

from absl import app, flags

# None of these imports TensorFlow (`--help` stays quick); the evaluation is imported where
# it runs.
from keras_sgn import cli, errors, io_utils, names, recipes, zoo
from keras_sgn.attacks import parse_attacks

FLAGS = flags.FLAGS
flags.DEFINE_string("run_dir", None, "A tools/train.py output dir: evaluate RUN_DIR/model.keras "
                    "on the run's dataset and threat model; the report goes to RUN_DIR/eval.")
flags.DEFINE_string("model", None, "Instead of --run_dir: a saved model (.keras) or a zoo "
                    "name (keras_sgn.list_pretrained()).")
flags.DEFINE_string("dataset", None, "Dataset name; default: the run's or the zoo entry's "
                    "(else cifar10).")
flags.DEFINE_string("data_dir", None, "Folder of prepared tfds datasets; default: the run's.")
flags.DEFINE_enum("split", "test", ["train", "validation", "test"], "Split to evaluate on.")
flags.DEFINE_integer("n_examples", None, "Evaluate the first N examples only.", lower_bound=1)
flags.DEFINE_enum("order", "stored", ["stored", "original"], "Which images are 'the first N': "
                  "'stored' (tfds' order) or 'original' (the publication's file order, as the "
                  "literature's 'first 1,000 test images'; mnist and fashion_mnist test).")
flags.DEFINE_enum("norm", None, ["linf", "l2"], "Threat-model norm; default: the run's or the "
                  "zoo entry's (else linf).")
flags.DEFINE_float("epsilon", None, "Threat radius (pixel units); default: the run's or the "
                   "zoo entry's, else follows --dataset (L-inf) or 0.5 (L2).")
flags.DEFINE_string("attacks", "standard", "'quick', 'standard', or attacks separated by ';' "
                    "with options after ':', e.g. 'apgd-ce;pgd-cw:steps=50,restarts=5;square'. "
                    f"Attacks: {', '.join(names.ATTACKS)}.")
flags.DEFINE_bool("cascade", True, "Run each attack only on points still robust (AutoAttack).")
flags.DEFINE_bool("sanity_checks", True, "Run the gradient-masking sanity checks.")
flags.DEFINE_integer("sanity_examples", 256, "Examples used by the sanity checks.",
                     lower_bound=1)
flags.DEFINE_integer("square_queries", 1000, "Query budget of the sanity checks' Square attack.",
                     lower_bound=1)
flags.DEFINE_integer("batch_size", 128, "Evaluation batch size.", lower_bound=1)
flags.DEFINE_integer("seed", 0, "Seed of the attacks' randomness.")
flags.DEFINE_string("output_dir", None, "Where the reports go (default: RUN_DIR/eval, the "
                    "model's folder/eval, or runs/ZOO_NAME/eval).")
flags.DEFINE_bool("resume", True, "Skip the batches already attacked by an interrupted run of "
                  "the same command (kept in OUTPUT_DIR/checkpoints); --noresume starts over.")
flags.DEFINE_integer("verbose", 1, "0: only the result lines; 1: progress bars.")


def _read_run_config(run_dir, flag):
    """The run's `config.json` as a dict ({} if the folder has none)."""
    path = os.path.join(run_dir, "config.json")
    if not os.path.exists(path):
        return {}
    return io_utils.read_json_object(
        path, f"Received: {flag}. Restore the run's config.json, or move it away and give "
        "--dataset, --norm and --epsilon.")


def _from_run_dir(run_dir):
    model_path = os.path.join(run_dir, "model.keras")
    if not os.path.exists(model_path):
        hint = (" Training has not finished (a backup is there): rerun the train command."
                if os.path.isdir(os.path.join(run_dir, "backup")) else
                " Give the --output_dir of a finished tools/train.py run.")
        raise app.UsageError(f"--run_dir: no model.keras in {run_dir!r}.{hint}")
    return dict(label=model_path, path=model_path, flag=None,
                defaults=_read_run_config(run_dir, f"--run_dir={run_dir}"),
                output_dir=os.path.join(run_dir, "eval"))


def _from_model_flag(model):
    if os.path.exists(model):
        folder = os.path.dirname(os.path.abspath(model))
        return dict(label=model, path=model, flag="--model",
                    defaults=_read_run_config(folder, f"--model={model}"),
                    output_dir=os.path.join(os.path.dirname(model), "eval"))
    try:
        entry = zoo.get_entry(model)
    except zoo.UnknownModelError as error:
        raise app.UsageError(f"--model: no saved model at {model!r}, and not a zoo name "
                             f"either. {error}") from None
    defaults = dict(dataset=entry.dataset, **(entry.threat_model or {}))
    return dict(label=model, entry=entry, defaults=defaults,
                output_dir=os.path.join("runs", model, "eval"))


def model_source():
    """Which model, what its run or zoo entry says (dataset, epsilon, norm,
    data_dir), and where its report goes by default."""
    if FLAGS.run_dir and FLAGS.model:
        raise app.UsageError("--run_dir and --model are exclusive: give one of them.")
    if not (FLAGS.run_dir or FLAGS.model):
        raise app.UsageError("give --run_dir=RUN_DIR (a tools/train.py output dir) or "
                             "--model=PATH_OR_ZOO_NAME.")
    return _from_run_dir(FLAGS.run_dir) if FLAGS.run_dir else _from_model_flag(FLAGS.model)


def threat_model(defaults):
    """`(dataset, norm, epsilon)`: the flags, else the run's / entry's, else
    the dataset's recipe. A radius given for another norm or dataset is not reused."""
    from keras_sgn import attacks, data, evaluation

    dataset = FLAGS.dataset or defaults.get("dataset") or "cifar10"
    try:
        data.info(dataset)  # an unknown name fails before anything loads
    except ValueError as error:
        raise app.UsageError(f"--dataset: {error}") from None
    norm = FLAGS.norm or defaults.get("norm") or "linf"
    epsilon = FLAGS.epsilon
    if epsilon is None:
        same = (defaults.get("norm", "linf") == norm
                and defaults.get("dataset", dataset) == dataset)
        epsilon = defaults.get("epsilon") if same else None
    if epsilon is None:
        epsilon = 0.5 if norm == "l2" else recipes.DATASET_RECIPES.get(
            dataset, {}).get("epsilon", 8 / 255)
    evaluation.inputs.check_epsilon(epsilon)
    with errors.checked_arguments():
        attacks.core.check_attack_args(epsilon, 1, norm)
    return dataset, norm, epsilon


def load_model(source):
    """The model, loaded before any data (a recipe-only zoo name says so here)."""
    if "entry" in source:
        return zoo.loading.load_pretrained(source["entry"])
    import keras_sgn  # noqa: F401  (registers the custom objects)

    # A file that is not a whole .keras archive (config.json, a truncated copy) is
    # refused as corrupt, not Keras' "File not found".
    return io_utils.load_model_file(source["path"], flag=source["flag"])


def _count(n, noun):
    return f"{n} {noun}{'' if n == 1 else 's'}"


def result_line(report):
    """One line: the numbers and the verdict of the sanity checks."""
    protocol = report["protocol"]
    line = (f"clean accuracy {report['clean_accuracy']:.4f}, robust accuracy "
            f"{report['robust_accuracy']:.4f} ({protocol['norm']} eps={protocol['epsilon']:.4g}, "
            f"worst case per example over {_count(len(protocol['attacks']), 'attack')}, "
            f"{report['n_examples']} {report['split']} images)")
    if "sanity_checks" in report:
        failed = [c["name"] for c in report["sanity_checks"] if not c["passed"]]
        line += ("; sanity checks: all passed" if not failed else
                 f"; sanity checks FAILED: {', '.join(failed)} (see report.md)")
    return line


def main(argv):
    del argv
    from keras_sgn import data
    from keras_sgn.training import run_folder

    attack_specs = parse_attacks(FLAGS.attacks)  # bad arguments fail first
    source = model_source()
    dataset, norm, epsilon = threat_model(source["defaults"])
    model = load_model(source)
    # The data before the report's folder: a dataset that cannot be had leaves no folder.
    data.prepare(dataset, FLAGS.data_dir or source["defaults"].get("data_dir"))
    output_dir = FLAGS.output_dir or source["output_dir"]
    run_folder.check_writable_folder(output_dir)
    # One evaluation per folder at a time: a second one would delete the first's
    # checkpoints (--noresume) and each would read the other's batches.
    with run_folder.RunLock(output_dir, what="evaluation"):
        evaluate(model, source, attack_specs, dataset, norm, epsilon, output_dir)


def evaluate(model, source, attack_specs, dataset, norm, epsilon, output_dir):
    """Evaluate `model` (of `source`) into `output_dir`, which this process holds."""
    from keras_sgn import evaluation

    checkpoint_dir = os.path.join(output_dir, evaluation.checkpoints.CHECKPOINTS_FOLDER)
    if not FLAGS.resume:
        evaluation.checkpoints.delete_checkpoints(checkpoint_dir)
    examples = evaluation.AdversarialExamples(evaluation.runs.GRID_EXAMPLES)
    report = evaluation.evaluate_robustness(
        model, dataset, epsilon, norm, split=FLAGS.split, attacks=attack_specs,
        n_examples=FLAGS.n_examples, order=FLAGS.order,
        data_dir=FLAGS.data_dir or source["defaults"].get(
            "data_dir"), batch_size=FLAGS.batch_size, model_label=source["label"],
        examples=examples, cascade=FLAGS.cascade, run_sanity_checks=FLAGS.sanity_checks,
        n_sanity_examples=FLAGS.sanity_examples, square_queries=FLAGS.square_queries,
        seed=FLAGS.seed, verbose=FLAGS.verbose >= 1, checkpoint_dir=checkpoint_dir)
    written = evaluation.save_evaluation(report, output_dir, examples)
    # report.json is written: it is the result
    evaluation.checkpoints.delete_checkpoints(checkpoint_dir)
    print(result_line(report))
    print(f"Wrote {', '.join(written)} to {output_dir}")


if __name__ == "__main__":
    cli.run_tool(main)
