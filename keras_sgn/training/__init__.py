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

# Loaded so that `training.<module>.<name>` works after importing the package.
from keras_sgn.training import callbacks, outputs  # noqa: F401
from keras_sgn.training.distribute import describe_strategy, get_strategy
from keras_sgn.training.optimization import (
    TriangularSchedule,
    learning_rate_schedule,
    make_optimizer,
)
from keras_sgn.training.run import train
from keras_sgn.training.run_folder import RunFolder, RunFolderBusyError, RunFolderError

__all__ = [
    "TrainConfig",
    "train",
    "ConfigError",
    "RunFolder",
    "RunFolderError",
    "RunFolderBusyError",
    "get_strategy",
    "describe_strategy",
    "learning_rate_schedule",
    "make_optimizer",
    "TriangularSchedule",
    "STRATEGIES",
    "SCHEDULES",
    "OPTIMIZERS",
]
