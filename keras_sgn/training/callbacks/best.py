"""`SafeCheckpoint`: the best model by validation robust accuracy, saved atomically."""

import math

import keras

from keras_sgn.io_utils import atomic_save_model


class SafeCheckpoint(keras.callbacks.Callback):
    """Keeps `last.weights.h5` every epoch and the best model by `monitor`,
    both replaced atomically. Robust overfitting is real: the best epoch by
    validation robust accuracy is often not the last one.

    Args:
        best_path: where the best full model (`.keras`) goes.
        last_path: where the latest weights go (None: not kept).
        monitor: a log key, `val_robust_accuracy` by default.
    """

    def __init__(self, best_path, last_path=None, monitor="val_robust_accuracy"):
        super().__init__()
        self.best_path = best_path
        self.last_path = last_path
        self.monitor = monitor
        self.best = -math.inf
        self.best_epoch = None

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if self.last_path:
            atomic_save_model(self.model, self.last_path)
        value = logs.get(self.monitor)
        if value is None:
            raise KeyError(f"SafeCheckpoint monitors {self.monitor!r} but the logs only have "
                           f"{sorted(logs)}; pass validation data to fit().")
        if value > self.best:
            self.best, self.best_epoch = float(value), epoch + 1
            atomic_save_model(self.model, self.best_path)

    def get_state(self):
        """What a resumed run needs to keep replacing the best model only on
        improvement (kept in `PreemptionCheckpoint` backups)."""
        return {"best": None if self.best == -math.inf else self.best,
                "best_epoch": self.best_epoch}

    def set_state(self, state):
        self.best = -math.inf if state.get("best") is None else float(state["best"])
        self.best_epoch = state.get("best_epoch")
