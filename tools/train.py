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
A folder holding a finished run of the same settings is not trained again;
other settings are refused unless --overwrite. It ends with two lines: where it
wrote, and the clean and robust test accuracy with the protocol. Mistakes a
user can fix (a bad flag value, a refused folder, a full disk) are one line
naming the flag and the fix, with exit status 2.
"""

# First, before anything imports keras_sgn: keras_sgn without TensorFlow until the flags
# are checked, then TensorFlow without its start-up logs (tools/quiet_start.py).
import quiet_start

# isort: split
import json
import sys

from absl import flags
from flags import (  # tools/flags.py: the flags of keras_sgn.config
    apply_logical_cpus,
    config_from_flags,
    define_config_flags,
    define_logical_cpus_flag,
)

from keras_sgn import cli, names

FLAGS = flags.FLAGS
define_config_flags()  # a flag per TrainConfig field and declared method option
define_logical_cpus_flag()
flags.DEFINE_integer("preemption_exit_code", names.PREEMPTION_EXIT_CODE,
                     "Exit code after a SIGTERM-triggered save (the job should be restarted "
                     "with the same command).")


def main(argv):
    del argv
    config = config_from_flags()
    config.check_values()  # a bad value is refused before TensorFlow starts
    quiet_start.start_tensorflow()
    from keras_sgn import training

    apply_logical_cpus()
    config.resolved()  # registry checks (model, dataset, sites) before any training
    # MultiWorkerMirroredStrategy must exist before other TensorFlow work.
    strategy = training.get_strategy(config.strategy, tpu=config.tpu)
    try:
        summary = training.train(config, strategy=strategy)
    except training.callbacks.TrainingPreempted as stop:
        print(stop, flush=True)
        sys.exit(FLAGS.preemption_exit_code)
    if not summary.get("chief", True):
        done = ("the run was already complete" if summary.get("already_complete")
                else f"{summary['epochs']} epochs")
        print(f"worker {summary['task']} done ({done}); the chief writes the model and summary.")
        return
    if config.verbose >= 2:
        print(json.dumps(summary, indent=2))
    for line in training.outputs.result_lines(summary, config.output_dir):
        print(line)


if __name__ == "__main__":
    cli.run_tool(main)
