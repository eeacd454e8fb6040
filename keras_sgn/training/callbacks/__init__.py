"""The callbacks of a training run: the best checkpoint and the preemption
backup; and, once the run is tested, its hyperparameters and final metrics for
TensorBoard's HParams dashboard (`write_hparams`)."""

# Loaded so that `callbacks.<module>.<name>` works after importing the package.
from keras_sgn.training.callbacks import hparams  # noqa: F401
from keras_sgn.training.callbacks.best import SafeCheckpoint
from keras_sgn.training.callbacks.divergence import StopOnNonFiniteLoss, TrainingDiverged
from keras_sgn.training.callbacks.method_switch import MethodSwitch
from keras_sgn.training.callbacks.preemption import PreemptionCheckpoint, TrainingPreempted
from keras_sgn.training.callbacks.timing import TrainingClock

__all__ = [
    "MethodSwitch",
    "PreemptionCheckpoint",
    "SafeCheckpoint",
    "StopOnNonFiniteLoss",
    "TrainingClock",
    "TrainingDiverged",
    "TrainingPreempted",
]
