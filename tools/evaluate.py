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
Flags given on the command line override what the run or the zoo entry says
(keras_sgn.evaluation.sources resolves the model, dataset and threat model, as for
every tool and `keras_sgn.evaluate_pretrained`).

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

# First, before anything imports keras_sgn: keras_sgn without TensorFlow until the flags
# are parsed, then TensorFlow without its start-up logs (tools/quiet_start.py).
import quiet_start

# isort: split
import os

from absl import flags

# None of these imports TensorFlow (`--help` stays quick); the evaluation is imported where
# it runs.
from keras_sgn import cli, names

FLAGS = flags.FLAGS
flags.DEFINE_string("run_dir", None, "A tools/train.py output dir: evaluate RUN_DIR/model.keras "
                    "on the run's dataset and threat model; the report goes to RUN_DIR/eval.")
flags.DEFINE_string("model", None, "Instead of --run_dir: a saved model (.keras), a run "
                    "folder or a zoo name (keras_sgn.list_pretrained()).")
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
    quiet_start.start_tensorflow()
    from keras_sgn import data
    from keras_sgn.attacks import parse_attacks
    from keras_sgn.evaluation import sources
    from keras_sgn.training import run_folder

    attack_specs = parse_attacks(FLAGS.attacks)  # bad arguments fail first
    # Which model, dataset and threat model: resolved as every tool and
    # keras_sgn.evaluate_pretrained resolve them; the flags override the run or zoo entry.
    source = sources.resolve_model(FLAGS.model, run_dir=FLAGS.run_dir,
                                   reference_flag="--model", run_dir_flag="--run_dir")
    dataset, norm, epsilon = sources.resolve_threat_model(
        source, FLAGS.dataset, FLAGS.norm, FLAGS.epsilon, dataset_flag="--dataset")
    model = sources.load(source)  # before any data: a recipe-only zoo name says so here
    # The data before the report's folder: a dataset that cannot be had leaves no folder.
    data.prepare(dataset, FLAGS.data_dir or source.defaults.get("data_dir"))
    output_dir = FLAGS.output_dir or source.default_output_dir
    run_folder.check_writable_folder(output_dir)
    # One evaluation per folder at a time: a second one would delete the first's
    # checkpoints (--noresume) and each would read the other's batches.
    with run_folder.RunLock(output_dir, what="evaluation"):
        evaluate(model, source, attack_specs, dataset, norm, epsilon, output_dir)


def evaluate(model, source, attack_specs, dataset, norm, epsilon, output_dir):
    """Evaluate `model` (of `source`, a `keras_sgn.evaluation.sources.ModelSource`) into
    `output_dir`, which this process holds."""
    from keras_sgn import evaluation

    checkpoint_dir = os.path.join(output_dir, evaluation.checkpoints.CHECKPOINTS_FOLDER)
    if not FLAGS.resume:
        evaluation.checkpoints.delete_checkpoints(checkpoint_dir)
    examples = evaluation.AdversarialExamples(evaluation.runs.GRID_EXAMPLES)
    report = evaluation.evaluate_robustness(
        model, dataset, epsilon, norm, split=FLAGS.split, attacks=attack_specs,
        n_examples=FLAGS.n_examples, order=FLAGS.order,
        data_dir=FLAGS.data_dir or source.defaults.get("data_dir"),
        batch_size=FLAGS.batch_size, model_label=source.label,
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
