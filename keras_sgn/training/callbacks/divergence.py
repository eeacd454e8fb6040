"""`StopOnNonFiniteLoss`: a diverged run stops with an error, its last good state kept."""

import math

import keras

from keras_sgn.errors import UserError


class TrainingDiverged(UserError, ValueError):
    """The training loss is no longer a finite number (NaN or infinite)."""


class StopOnNonFiniteLoss(keras.callbacks.Callback):
    """Raise `TrainingDiverged` at the end of the first batch whose training loss
    is NaN or infinite.

    Placed before the best checkpoint and the preemption backup, it stops the run
    before either saves anything of that batch: `model.keras` stays the best
    epoch so far and the backup the last finished epoch, never NaN weights (Keras'
    `TerminateOnNaN` would let the epoch end, and the run end with exit 0).

    Args:
        hint: what to change, said in the error (e.g. the learning rate given).
    """

    def __init__(self, hint=""):
        super().__init__()
        self.hint = hint
        self._epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def _check(self, logs, where):
        loss = (logs or {}).get("loss")
        if loss is None or math.isfinite(float(loss)):
            return
        raise TrainingDiverged(
            f"Training diverged: the training loss is {float(loss)} {where}. Received: "
            f"{self.hint or 'these training settings'}. Nothing of this epoch was saved: "
            "model.keras (the best epoch so far) and the backup of the last finished epoch "
            "are kept. Lower --learning_rate (or check the data), then rerun with --overwrite "
            "to train afresh.")

    def on_train_batch_end(self, batch, logs=None):
        self._check(logs, f"at epoch {self._epoch + 1}, step {batch + 1}")

    def on_epoch_end(self, epoch, logs=None):
        self._check(logs, f"at the end of epoch {epoch + 1}")
