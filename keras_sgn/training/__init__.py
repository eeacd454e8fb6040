"""Training runs: `train(TrainConfig(...))` and what it is made of.

`tools/train.py` is a thin flag parser around `train(TrainConfig(...))`, so
everything a run does is also available from Python.

- `run`: `train()`, a short sequence of named steps;
- `run_folder`: the output folder owned by one run (lock, finished runs kept);
- `outputs`: the final test (`summary.json`), history and curves of a run;
- `distribute`: distribution strategies and the global-batch rules;
- `optimization`: the model of a config, schedules, optimizers, the compile step;
- `callbacks`: the best checkpoint and the preemption backup;
- `keras_compat`: every workaround that touches Keras internals.

The run configuration (`TrainConfig`) lives in `keras_sgn.config` and the
per-dataset defaults in `keras_sgn.recipes`; both are re-exported here.
"""

from keras_sgn.config import OPTIMIZERS, SCHEDULES, STRATEGIES, ConfigError, TrainConfig
from keras_sgn.io_utils import CorruptFileError, OutOfSpaceError
from keras_sgn.models.sites import parse_beta, parse_sites
from keras_sgn.recipes import DATASET_RECIPES, RECIPE_KEYS
from keras_sgn.training.callbacks import (
    PreemptionCheckpoint,
    SafeCheckpoint,
    TrainingDiverged,
    TrainingPreempted,
)
from keras_sgn.training.distribute import (
    StrategyError,
    agree_with_chief,
    check_global_batch_size,
    describe_strategy,
    get_strategy,
    prepare_distributed_fit,
    replica_sum,
    resolve_strategy_name,
    shard_by_example,
    synchronize_batch_norm,
    tf_config_task_count,
    use_logical_cpus,
    worker_info,
)
from keras_sgn.training.optimization import (
    TriangularSchedule,
    build_model,
    check_model_fits,
    compile_for_training,
    learning_rate_schedule,
    make_optimizer,
)
from keras_sgn.training.outputs import FINAL_TEST_SUITE, final_test_attacks, result_lines
from keras_sgn.training.run import build_method_state, check_resumable, train
from keras_sgn.training.run_folder import (
    RunFolder,
    RunFolderBusyError,
    RunFolderError,
    RunLock,
)

__all__ = [
    "DATASET_RECIPES",
    "FINAL_TEST_SUITE",
    "OPTIMIZERS",
    "ConfigError",
    "CorruptFileError",
    "OutOfSpaceError",
    "PreemptionCheckpoint",
    "RECIPE_KEYS",
    "RunFolder",
    "RunFolderBusyError",
    "RunFolderError",
    "RunLock",
    "SCHEDULES",
    "STRATEGIES",
    "SafeCheckpoint",
    "StrategyError",
    "TrainConfig",
    "TrainingDiverged",
    "TrainingPreempted",
    "TriangularSchedule",
    "agree_with_chief",
    "build_method_state",
    "build_model",
    "check_global_batch_size",
    "check_model_fits",
    "check_resumable",
    "compile_for_training",
    "describe_strategy",
    "final_test_attacks",
    "get_strategy",
    "learning_rate_schedule",
    "make_optimizer",
    "parse_beta",
    "parse_sites",
    "prepare_distributed_fit",
    "replica_sum",
    "resolve_strategy_name",
    "result_lines",
    "shard_by_example",
    "synchronize_batch_norm",
    "tf_config_task_count",
    "train",
    "use_logical_cpus",
    "worker_info",
]
