"""Evaluate a saved model's clean and robust accuracy on a dataset split.

    python tools/evaluate.py --model=runs/digits-sgn/model.keras --dataset=digits \
        --epsilon=0.1 --output_dir=runs/digits-sgn/eval
"""

import json
import os

from absl import app
from absl import flags

from keras_sgn import evaluation
from keras_sgn import training

FLAGS = flags.FLAGS
flags.DEFINE_string("model", None, "Path of a saved model (.keras).", required=True)
flags.DEFINE_string("dataset", "cifar10", "Dataset name.")
flags.DEFINE_string("data_dir", None, "Folder of prepared tfds datasets.")
flags.DEFINE_enum("split", "test", ["train", "validation", "test"], "Split to evaluate on.")
flags.DEFINE_integer("n_examples", None, "Evaluate the first N examples only.")
flags.DEFINE_float("epsilon", None, "Threat radius (pixel units); default follows --dataset.")
flags.DEFINE_enum("norm", "linf", ["linf", "l2"], "Threat-model norm.")
flags.DEFINE_integer("steps", 20, "PGD steps.")
flags.DEFINE_integer("restarts", 1, "PGD random restarts.")
flags.DEFINE_integer("batch_size", 128, "Evaluation batch size.")
flags.DEFINE_integer("seed", 0, "Seed of the random starts.")
flags.DEFINE_string("output_dir", None, "Where report.json goes (default: next to the model).")


def main(argv):
    del argv
    import keras
    import keras_sgn  # noqa: F401  (registers the custom objects)
    from keras_sgn import data

    epsilon = FLAGS.epsilon
    if epsilon is None:
        epsilon = training.DATASET_RECIPES[FLAGS.dataset]["epsilon"]
    from keras_sgn import attacks

    attacks.check_attack_args(epsilon, FLAGS.steps, FLAGS.norm, restarts=FLAGS.restarts)
    if not os.path.exists(FLAGS.model):
        raise app.UsageError(f"--model: no file at {FLAGS.model!r}.")
    dataset = data.load(FLAGS.dataset, FLAGS.split, FLAGS.batch_size, data_dir=FLAGS.data_dir,
                        n_examples=FLAGS.n_examples)
    model = keras.saving.load_model(FLAGS.model, safe_mode=True)
    report = evaluation.evaluate(model, dataset, epsilon=epsilon, norm=FLAGS.norm,
                                 steps=FLAGS.steps, restarts=FLAGS.restarts, seed=FLAGS.seed)
    report.update(model=FLAGS.model, dataset=FLAGS.dataset, split=FLAGS.split)
    output_dir = FLAGS.output_dir or os.path.dirname(os.path.abspath(FLAGS.model))
    training.atomic_write_json(os.path.join(output_dir, "report.json"), report)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    app.run(main)
