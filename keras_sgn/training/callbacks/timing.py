"""`TrainingClock`: the cumulative training wall time of a run, epoch by epoch."""

import time

import keras

#: The log key (and history.json column) of the cumulative training seconds.
TRAIN_SECONDS = "train_seconds"


class TrainingClock(keras.callbacks.Callback):
    """Adds `logs["train_seconds"]` at each epoch end: the wall time spent in
    training steps since the run began, validation excluded (the clock stops
    when an epoch's validation starts), across resumptions (its state is kept
    in `PreemptionCheckpoint` backups). "Time to reach a robustness level"
    is read off this column of `history.json`.

    Place it before the callbacks that read the logs (the History callback
    that writes `history.json` comes last in `fit`).
    """

    def __init__(self):
        super().__init__()
        self.seconds = 0.0  # finished epochs, plus the steps of a partial one
        self._started = None

    def _stop(self):
        if self._started is not None:
            self.seconds += time.perf_counter() - self._started
            self._started = None

    def on_epoch_begin(self, epoch, logs=None):
        self._started = time.perf_counter()

    def on_test_begin(self, logs=None):
        self._stop()  # the epoch's validation is not training time

    def on_epoch_end(self, epoch, logs=None):
        self._stop()
        if logs is not None:
            logs[TRAIN_SECONDS] = round(self.seconds, 3)

    def on_train_end(self, logs=None):
        self._stop()

    def get_state(self):
        """The seconds so far (a preempted run resumes its clock from them; the
        steps of an epoch cut short count when the backup was taken after them)."""
        running = 0.0 if self._started is None else time.perf_counter() - self._started
        return {"seconds": round(self.seconds + running, 3)}

    def set_state(self, state):
        self.seconds = float(state.get("seconds", 0.0))
