"""Train a self-gradient network (or a baseline) with adversarial training.

Defaults are the CIFAR10 SGN ResNet-18 recipe; model, epsilon, epochs, batch
size, learning rate, schedule, optimizer and weight decay follow --dataset
unless given. Offline quick run:

    python tools/train.py --dataset=digits --method=sgn --output_dir=runs/digits-sgn

Distribution (`--batch_size` is always the global batch): `--strategy=auto`
(TPU if --tpu, else the cluster of TF_CONFIG, else all local GPUs), `mirrored`,
`multi_worker` (every worker runs the same command with its own TF_CONFIG),
`tpu --tpu=NAME`. A run killed at any moment resumes from `output_dir/backup`
when the same command is rerun; on SIGTERM it saves, then exits with code 42.
"""

import json
import sys

from absl import app
from absl import flags

from keras_sgn import methods
from keras_sgn import training

FLAGS = flags.FLAGS
_DEFAULTS = training.TrainConfig()

flags.DEFINE_string("dataset", _DEFAULTS.dataset, "cifar10, cifar100, svhn_cropped, mnist, "
                    "fashion_mnist or digits (offline).")
flags.DEFINE_string("data_dir", None, "Folder of prepared tfds datasets (else TFDS_DATA_DIR).")
flags.DEFINE_string("model", None, "Model name (keras_sgn.models.list_models()); "
                    "default follows --dataset.")
flags.DEFINE_enum("method", _DEFAULTS.method, methods.list_methods(), "Training method.")
flags.DEFINE_integer("epochs", None, "Epochs; default follows --dataset.")
flags.DEFINE_integer("batch_size", None, "GLOBAL batch size (split across replicas).")
flags.DEFINE_float("learning_rate", None, "Peak learning rate; default follows --dataset.")
flags.DEFINE_enum("lr_schedule", None, list(training.SCHEDULES), "Learning-rate schedule.")
flags.DEFINE_enum("optimizer", None, list(training.OPTIMIZERS), "Optimizer.")
flags.DEFINE_float("weight_decay", None, "Weight decay.")
flags.DEFINE_float("epsilon", None, "Threat radius in pixel units (8/255 = 0.0314 for CIFAR).")
flags.DEFINE_enum("norm", _DEFAULTS.norm, ["linf", "l2"], "Threat-model norm.")
flags.DEFINE_float("step_size", None, "Attack step; default: epsilon/4 for PGD-style, "
                   "1.25 epsilon for fast/sgn.")
flags.DEFINE_integer("attack_steps", None, "Steps of the training attack (pgd, trades, "
                     "sgn-pgd: 10).")
flags.DEFINE_string("sites", _DEFAULTS.sites, "Feedback sites: 'default', 'none' or a list "
                    "like 'input,stage1,stage2'.")
flags.DEFINE_string("beta", _DEFAULTS.beta, "Feedback strength: a number or "
                    "'stage1=0.05,stage2=0.1'.")
flags.DEFINE_enum("normalization", _DEFAULTS.normalization, ["l2_relative", "sign", "raw"],
                  "Normalisation N(g) of hidden-site gradients.")
flags.DEFINE_float("clean_weight", _DEFAULTS.clean_weight, "Weight of the self-gradient "
                   "pass loss (sgn methods).")
flags.DEFINE_bool("second_order", _DEFAULTS.second_order, "Backpropagate through the deltas.")
flags.DEFINE_bool("feedback_at_inference", False, "Research option: self-feedback at test "
                  "time (evaluate it with gradient-free attacks too).")
flags.DEFINE_integer("free_replays", _DEFAULTS.free_replays, "Replays m of --method=free.")
flags.DEFINE_float("trades_beta", _DEFAULTS.trades_beta, "Beta of --method=trades.")
flags.DEFINE_integer("eval_steps", _DEFAULTS.eval_steps, "PGD steps of validation.")
flags.DEFINE_integer("test_steps", _DEFAULTS.test_steps, "PGD steps of the final test.")
flags.DEFINE_integer("test_restarts", _DEFAULTS.test_restarts, "Restarts of the final test.")
flags.DEFINE_integer("n_train", None, "Use only the first N training examples.")
flags.DEFINE_integer("n_eval", None, "Use only the first N validation/test examples.")
flags.DEFINE_enum("strategy", _DEFAULTS.strategy, list(training.STRATEGIES),
                  "Distribution strategy: auto (best local choice), default, one_device, "
                  "mirrored (all local GPUs), multi_worker (cluster from TF_CONFIG), tpu.")
flags.DEFINE_string("tpu", None, "TPU for --strategy=tpu (or auto): its name, 'local' on a "
                    "TPU VM, or grpc://host:8470.")
flags.DEFINE_integer("backup_every_steps", 0, "Also back up the training state every N "
                     "steps (0: at every epoch end only).")
flags.DEFINE_integer("preemption_exit_code", training.TrainingPreempted.exit_code,
                     "Exit code after a SIGTERM-triggered save (the job should be restarted "
                     "with the same command).")
flags.DEFINE_integer("logical_cpus", 0, "Split the CPU into N logical devices (testing "
                     "--strategy=mirrored without GPUs).")
flags.DEFINE_integer("seed", _DEFAULTS.seed, "Random seed.")
flags.DEFINE_bool("jit_compile", False, "XLA-compile the attacks (per replica).")
flags.DEFINE_bool("sync_batch_norm", True, "With several replicas, BatchNorm statistics "
                  "over the global batch (as with one replica) instead of per replica.")
flags.DEFINE_bool("mixed_precision", False, "mixed_float16 on GPU, mixed_bfloat16 elsewhere.")
flags.DEFINE_string("output_dir", _DEFAULTS.output_dir, "Where the run writes its files.")
flags.DEFINE_integer("verbose", 1, "Keras verbosity (0 silent, 1 progress bar, 2 lines).")


def main(argv):
    del argv
    training.use_logical_cpus(FLAGS.logical_cpus)
    fields = {f: FLAGS[f].value for f in training.TrainConfig.__dataclass_fields__}
    config = training.TrainConfig(**fields)
    config.resolved()  # bad flags fail before any TensorFlow work
    # MultiWorkerMirroredStrategy must exist before other TensorFlow work.
    strategy = training.get_strategy(config.strategy, tpu=config.tpu)
    try:
        summary = training.train(config, strategy=strategy)
    except training.TrainingPreempted as stop:
        print(stop, flush=True)
        sys.stdout.flush()
        sys.exit(FLAGS.preemption_exit_code)
    print(json.dumps(summary, indent=2))
    if not summary.get("chief", True):
        print(f"worker {summary['task']} done ({summary['epochs']} epochs); the chief writes "
              "the model and summary.")
        return
    protocol = summary["protocol"]
    print(f"clean accuracy {summary['clean_accuracy']:.4f}, robust accuracy "
          f"{summary['robust_accuracy']:.4f} ({protocol['norm']} eps={protocol['epsilon']:.4g}, "
          f"worst case per example over {' and '.join(summary['per_attack'])}, "
          f"{summary['n_test_examples']} test images)")


if __name__ == "__main__":
    app.run(main)
