"""Reproduce the SGN claims in miniature: methods x seeds under one budget.

    python tools/reproduce.py --dataset=digits --seeds=0,1,2 --output_dir=runs/reproduce

Writes OUTPUT_DIR/results.json, results.md, robust_vs_epochs.png, robust_vs_time.png.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow start-up chatter out of the report

from absl import app
from absl import flags

from keras_sgn import reproduce

FLAGS = flags.FLAGS
flags.DEFINE_string("dataset", "digits", "digits (offline), or mnist/cifar10 with --data_dir.")
flags.DEFINE_string("data_dir", None, "Folder of prepared tfds datasets.")
flags.DEFINE_list("methods", list(reproduce.ALL_METHODS), "Methods to compare.")
flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds.")
flags.DEFINE_integer("epochs", None, "Epochs per method (default: the dataset recipe; "
                     "free trains epochs / replays).")
flags.DEFINE_integer("attack_steps", None, "Inner attack steps of pgd, trades, sgn-pgd (10).")
flags.DEFINE_integer("n_train", None, "Use the first N training examples.")
flags.DEFINE_integer("n_eval", None, "Evaluate on the first N test examples.")
flags.DEFINE_integer("test_steps", 20, "PGD steps of the per-epoch evaluation.")
flags.DEFINE_string("output_dir", "runs/reproduce", "Where results go.")


def main(argv):
    del argv
    analysis = reproduce.reproduce(
        dataset=FLAGS.dataset, methods=FLAGS.methods, seeds=[int(s) for s in FLAGS.seeds],
        output_dir=FLAGS.output_dir, data_dir=FLAGS.data_dir, epochs=FLAGS.epochs,
        n_train=FLAGS.n_train, n_eval=FLAGS.n_eval, test_steps=FLAGS.test_steps,
        attack_steps=FLAGS.attack_steps)
    print(reproduce.markdown(analysis))


if __name__ == "__main__":
    app.run(main)
