"""The callbacks of a training run: the best checkpoint and the preemption backup."""

from keras_sgn.training.callbacks.best import SafeCheckpoint
from keras_sgn.training.callbacks.preemption import PreemptionCheckpoint, TrainingPreempted

__all__ = ["PreemptionCheckpoint", "SafeCheckpoint", "TrainingPreempted"]
