"""Benchmark the training step of every method (and the evaluation attack).

    python tools/benchmark.py --output=benchmark.json                  # ResNet-18, CIFAR-shaped
    python tools/benchmark.py --model=sgn_small_cnn --batch_size=128 --output=small.json
"""

import os

# Keep TensorFlow start-up chatter out of the report.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import json

from absl import app, flags

from keras_sgn import io_utils
from keras_sgn import methods as sgn_methods
from keras_sgn.experiments import benchmark

FLAGS = flags.FLAGS
MULTI_STEP = ", ".join(m for m in sgn_methods.list_methods()
                       if sgn_methods.method_class(m).multi_step)
flags.DEFINE_string("model", "sgn_resnet18", "Model name (synthetic CIFAR-shaped batches; "
                    "8x8x1 for sgn_small_cnn).")
flags.DEFINE_integer("batch_size", 32, "Batch size of every step.")
flags.DEFINE_list("methods", list(benchmark.DEFAULT_METHODS), "Methods to time.")
flags.DEFINE_integer("attack_steps", 10, f"Inner attack steps ({MULTI_STEP}).")
flags.DEFINE_bool("xla", True, "Also time the XLA-compiled attack variant.")
flags.DEFINE_integer("warmup", 2, "Untimed calls per method.")
flags.DEFINE_integer("repeats", 5, "Timed calls per method (median reported).")
flags.DEFINE_string("output", None, "Where the JSON report goes.")


def main(argv):
    del argv
    report = benchmark.benchmark_methods(
        model=FLAGS.model, methods=FLAGS.methods, batch_size=FLAGS.batch_size,
        attack_steps=FLAGS.attack_steps, xla_attack=(False, True) if FLAGS.xla else (False,),
        warmup=FLAGS.warmup, repeats=FLAGS.repeats)
    print(benchmark.markdown_table(report))
    if FLAGS.output:
        io_utils.atomic_write_json(FLAGS.output, report)
        print(f"Wrote {FLAGS.output}")
    print(json.dumps({k: round(v["ratio_to_standard"], 2) for k, v in report["methods"].items()}))


if __name__ == "__main__":
    app.run(main)
