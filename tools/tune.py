"""Search the self-gradient feedback hyperparameters with KerasTuner.

Maximises val_robust_accuracy (PGD on the first --n_eval validation images,
BatchNorm in inference mode). Searched unless fixed: --sites, --beta (per
site, log scale), --normalization, --input_step (alpha / epsilon),
--clean_weight, --second_order, --learning_rate, --weight_decay. Each of these
flags takes a value (fixes it), choices `a|b|c` or a range `low:high`; --space
sets several at once (`name=spec;name=spec`). Rerunning with the same
--directory/--project_name resumes the search (finished trials are kept).

    python tools/tune.py --dataset=digits --tuner=random --max_trials=8 \\
        --max_epochs=10 --output_dir=runs/tune-digits
    python tools/train.py --flagfile=runs/tune-digits/best_recipe.flags \\
        --output_dir=runs/digits-best

At equal training time instead of equal epochs (each trial's epochs from its own
measured epoch time): --time_budget_minutes=5 (with --tuner=random or bayesian).

Distributed: the same command with KERASTUNER_TUNER_ID=chief (serves the
oracle, then writes the results) and KERASTUNER_TUNER_ID=tuner0, tuner1...
(run trials), sharing KERASTUNER_ORACLE_IP/KERASTUNER_ORACLE_PORT and --directory.
"""

# First, before anything imports keras_sgn: keras_sgn without TensorFlow until the flags
# are checked, then TensorFlow without its start-up logs (tools/quiet_start.py).
import quiet_start

# isort: split
from absl import flags
from flags import (  # tools/flags.py: the flags of keras_sgn.config
    apply_logical_cpus,
    config_from_flags,
    define_config_flags,
    define_logical_cpus_flag,
)

from keras_sgn import cli, names

FLAGS = flags.FLAGS

flags.DEFINE_enum("tuner", "hyperband", list(names.TUNERS), "Search algorithm.")
flags.DEFINE_integer("max_trials", 20, "Maximum number of trials (a cap on Hyperband's "
                     "own budget).")
flags.DEFINE_integer("max_epochs", None, "Epochs of a full trial (Hyperband's max_epochs; "
                     "the learning-rate schedule spans them); default follows --dataset.")
flags.DEFINE_float("time_budget_minutes", None, "Train every trial for this many minutes of "
                   "training CPU time instead of --max_epochs: its epochs = the budget / its "
                   "own measured epoch time (its schedule spans them), stopped at 1.25x the "
                   "budget. With --tuner=random or bayesian. Pin the process to one core "
                   "(taskset -c 0) for minutes of one core.")
flags.DEFINE_integer("factor", 3, "Hyperband reduction factor.")
flags.DEFINE_integer("hyperband_iterations", 1, "Hyperband iterations.")
flags.DEFINE_integer("num_initial_points", None, "Bayesian: random trials before the "
                     "Gaussian process (default max(3, max_trials // 2)).")
flags.DEFINE_bool("include_default", True, "Trial 1 is the default setting (the recipe's "
                  "feedback values), the baseline; in every tuner.")
flags.DEFINE_string("directory", "runs/tuning", "Folder of the search projects "
                    "(under runs/, which git ignores).")
flags.DEFINE_string("project_name", None, "Project (default {dataset}-{model}-{tuner}); an "
                    "existing one is resumed.")
flags.DEFINE_bool("overwrite", False, "Start the project afresh instead of resuming it.")
flags.DEFINE_string("output_dir", None, "Where the results go (default: "
                    "DIRECTORY/PROJECT/results).")
flags.DEFINE_integer("tuner_seed", 1, "Seed of the search algorithm (0: a random one).")
flags.DEFINE_bool("tensorboard", True, "TensorBoard + HParams logs under the project.")

# The base training recipe: the flags of tools/train.py, same meaning (every
# trial trains with them), except those searched below.
BASE_FIELDS = ("dataset", "data_dir", "model", "method", "epsilon", "norm", "attack_steps",
               "batch_size", "optimizer", "lr_schedule", "eval_steps", "n_train", "n_eval",
               "seed", "jit_compile", "strategy", "verbose")
define_config_flags(include=BASE_FIELDS, overrides={
    "method": {"choices": names.TUNABLE_METHODS},
    "eval_steps": {"help": "PGD steps of validation: the objective."},
    "strategy": {"help": "Distribution strategy of each trial (see tools/train.py)."},
})
define_logical_cpus_flag()

# The space: a value fixes, `a|b` chooses, `low:high` ranges.
flags.DEFINE_string("space", "", "Several entries: 'beta=0.001:0.05;sites=input|input,stage1'.")
flags.DEFINE_string("sites", None, "e.g. 'input,stage1' or 'input|input,stage1|default'.")
flags.DEFINE_string("beta", None, "e.g. 0.01, 'stage1=0.02,stage2=0.005' or '0.001:0.1'.")
flags.DEFINE_string("normalization", None, "l2_relative, sign, raw or 'l2_relative|sign'.")
flags.DEFINE_string("input_step", None, "Input step alpha / epsilon, e.g. 1.25 or "
                    "'0.5|1.0|1.25'.")
flags.DEFINE_string("clean_weight", None, "e.g. 0 or '0|0.1|0.25'.")
flags.DEFINE_string("second_order", None, "true, false or 'false|true'.")
flags.DEFINE_string("learning_rate", None, "e.g. 0.002 or '0.0005:0.01'.")
flags.DEFINE_string("weight_decay", None, "e.g. 0 or '0|0.0005'.")


def main(argv):
    del argv
    config = config_from_flags(epochs=FLAGS.max_epochs)
    config.check_values()  # a bad value is refused before TensorFlow starts
    quiet_start.start_tensorflow()
    from keras_sgn import training, tuning

    apply_logical_cpus()
    space = tuning.space.space_from_strings(FLAGS.space, **{name: FLAGS[name].value
                                                            for name in tuning.space.TUNABLE})
    strategy = (None if config.strategy == "default"
                else training.get_strategy(config.strategy, tpu=config.tpu))
    result = tuning.tune(
        config, space, tuner=FLAGS.tuner, max_trials=FLAGS.max_trials,
        directory=FLAGS.directory, project_name=FLAGS.project_name,
        output_dir=FLAGS.output_dir, overwrite=FLAGS.overwrite, seed=FLAGS.tuner_seed,
        distribution_strategy=strategy, factor=FLAGS.factor,
        hyperband_iterations=FLAGS.hyperband_iterations,
        num_initial_points=FLAGS.num_initial_points, include_default=FLAGS.include_default,
        tensorboard=FLAGS.tensorboard, verbose=FLAGS.verbose,
        time_budget_minutes=FLAGS.time_budget_minutes)
    if result["role"] == "worker":
        print("Worker finished: the chief holds the results.")
        return
    best, paths = result["best"], result["paths"]
    print(result["table"])
    print(f"\nBest: trial {tuning.report.trial_label(best)}, "
          f"{tuning.hypermodel.OBJECTIVE}={best[tuning.hypermodel.OBJECTIVE]:.4f}")
    if result["noise"]:
        print(f"Noise: {result['noise']}")
    for name, path in paths.items():
        print(f"  {name}: {path}")
    print(f"Train the winner: python tools/train.py --flagfile={paths['best_recipe.flags']} "
          "--output_dir=runs/best")


if __name__ == "__main__":
    cli.run_tool(main)
