"""Evaluate a saved model's robustness: attack suite, worst case, sanity checks.

    python tools/evaluate.py --model=runs/demo/model.keras --dataset=digits \
        --attacks=standard --output_dir=runs/demo/eval

Writes OUTPUT_DIR/report.json, report.md and accuracy_vs_epsilon.png.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow start-up chatter out of the report

from absl import app
from absl import flags

from keras_sgn import attacks
from keras_sgn import evaluation
from keras_sgn import training
from keras_sgn import zoo

FLAGS = flags.FLAGS
flags.DEFINE_string("model", None, "Path of a saved model (.keras) or a zoo name "
                    "(keras_sgn.list_pretrained()).", required=True)
flags.DEFINE_string("dataset", "cifar10", "Dataset name.")
flags.DEFINE_string("data_dir", None, "Folder of prepared tfds datasets.")
flags.DEFINE_enum("split", "test", ["train", "validation", "test"], "Split to evaluate on.")
flags.DEFINE_integer("n_examples", None, "Evaluate the first N examples only.")
flags.DEFINE_enum("norm", "linf", ["linf", "l2"], "Threat-model norm.")
flags.DEFINE_float("epsilon", None, "Threat radius (pixel units); default follows --dataset "
                   "(L-inf) or 0.5 (L2).")
flags.DEFINE_string("attacks", "standard", "'quick', 'standard', or attacks separated by ';' "
                    "with options after ':', e.g. 'apgd-ce;pgd-cw:steps=50,restarts=5;square'. "
                    f"Attacks: {', '.join(sorted(evaluation.ATTACKS))}.")
flags.DEFINE_bool("cascade", True, "Run each attack only on points still robust (AutoAttack).")
flags.DEFINE_bool("sanity_checks", True, "Run the gradient-masking sanity checks.")
flags.DEFINE_integer("sanity_examples", 256, "Examples used by the sanity checks.")
flags.DEFINE_integer("square_queries", 1000, "Query budget of the sanity checks' Square attack.")
flags.DEFINE_integer("batch_size", 128, "Evaluation batch size.")
flags.DEFINE_integer("seed", 0, "Seed of the attacks' randomness.")
flags.DEFINE_string("output_dir", None, "Where the reports go (default: beside the model).")


def main(argv):
    del argv
    epsilon = FLAGS.epsilon
    if epsilon is None:
        epsilon = 0.5 if FLAGS.norm == "l2" else training.DATASET_RECIPES.get(
            FLAGS.dataset, {}).get("epsilon", 8 / 255)
    # Bad arguments fail here, before loading anything.
    attacks.check_attack_args(epsilon, 1, FLAGS.norm)
    attack_specs = evaluation.parse_attacks(FLAGS.attacks)
    from_zoo = not os.path.exists(FLAGS.model)
    if from_zoo:
        try:
            zoo.get_entry(FLAGS.model)
        except zoo.UnknownModelError as error:
            raise app.UsageError(f"--model: no saved model at {FLAGS.model!r}, and not a zoo "
                                 f"name either. {error}") from None

    import keras
    import keras_sgn  # noqa: F401  (registers the custom objects)
    from keras_sgn import data

    dataset = data.load(FLAGS.dataset, FLAGS.split, FLAGS.batch_size, data_dir=FLAGS.data_dir,
                        n_examples=FLAGS.n_examples)
    if from_zoo:
        model = zoo.load_pretrained(FLAGS.model)
    else:
        model = keras.saving.load_model(FLAGS.model, safe_mode=True)
    report = evaluation.evaluate_robustness(
        model, dataset, epsilon=epsilon, norm=FLAGS.norm, attacks=attack_specs,
        n_examples=FLAGS.n_examples, cascade=FLAGS.cascade,
        run_sanity_checks=FLAGS.sanity_checks, n_sanity_examples=FLAGS.sanity_examples,
        square_queries=FLAGS.square_queries, seed=FLAGS.seed)
    report.update(model=FLAGS.model, dataset=FLAGS.dataset, split=FLAGS.split)
    output_dir = FLAGS.output_dir or (os.path.join("runs", FLAGS.model, "eval") if from_zoo
                                      else os.path.dirname(os.path.abspath(FLAGS.model)))
    evaluation.write_report(report, output_dir)
    print(evaluation.markdown_report(report))
    print(f"Wrote {output_dir}/report.json, report.md"
          + (", accuracy_vs_epsilon.png" if FLAGS.sanity_checks else ""))


if __name__ == "__main__":
    app.run(main)
