"""The callbacks of a training run: the best checkpoint and the preemption
backup; and, once the run is tested, its hyperparameters and final metrics for
TensorBoard's HParams dashboard (`write_hparams`)."""

from keras_sgn.training.callbacks.best import SafeCheckpoint
from keras_sgn.training.callbacks.divergence import StopOnNonFiniteLoss, TrainingDiverged
from keras_sgn.training.callbacks.hparams import FINAL_METRICS, run_hparams, write_hparams
from keras_sgn.training.callbacks.method_switch import MethodSwitch
from keras_sgn.training.callbacks.preemption import PreemptionCheckpoint, TrainingPreempted
from keras_sgn.training.callbacks.timing import TRAIN_CPU_SECONDS, TRAIN_SECONDS, TrainingClock

__all__ = ["FINAL_METRICS", "MethodSwitch", "PreemptionCheckpoint", "SafeCheckpoint",
           "StopOnNonFiniteLoss", "TRAIN_CPU_SECONDS", "TRAIN_SECONDS", "TrainingClock",
           "TrainingDiverged", "TrainingPreempted", "run_hparams", "write_hparams"]
