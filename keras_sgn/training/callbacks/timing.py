"""`TrainingClock`: the cumulative training time of a run, epoch by epoch."""

import time

import keras

#: The log keys (and history.json columns): cumulative training wall seconds, and the
#: CPU seconds the process spent in them (all its threads).
TRAIN_SECONDS = "train_seconds"
TRAIN_CPU_SECONDS = "train_cpu_seconds"


class TrainingClock(keras.callbacks.Callback):
    """Adds `logs["train_seconds"]` and `logs["train_cpu_seconds"]` at each
    epoch end: the wall time spent in training steps since the run began, and
    the CPU time this process spent meanwhile, validation excluded (the clocks
    stop when an epoch's validation starts), across resumptions (the state is
    kept in `PreemptionCheckpoint` backups). "Time to reach a robustness
    level" is read off these columns of `history.json`.

    The CPU seconds of a process pinned to one core (`taskset -c 0`) are its
    "minutes of one core", unmoved by other processes taking turns on that
    core, which stretch its wall time; on accelerators or several cores, the
    wall time is the measure.

    Place it before the callbacks that read the logs (the History callback
    that writes `history.json` comes last in `fit`).
    """

    def __init__(self):
        super().__init__()
        self.seconds = 0.0  # finished epochs, plus the steps of a partial one
        self.cpu_seconds = 0.0
        self._started = None

    @staticmethod
    def _now():
        return time.perf_counter(), time.process_time()

    def _running(self):
        if self._started is None:
            return 0.0, 0.0
        wall, cpu = self._now()
        return wall - self._started[0], cpu - self._started[1]

    def _stop(self):
        wall, cpu = self._running()
        self.seconds += wall
        self.cpu_seconds += cpu
        self._started = None

    def on_epoch_begin(self, epoch, logs=None):
        self._started = self._now()

    def on_test_begin(self, logs=None):
        self._stop()  # the epoch's validation is not training time

    def on_epoch_end(self, epoch, logs=None):
        self._stop()
        if logs is not None:
            logs[TRAIN_SECONDS] = round(self.seconds, 3)
            logs[TRAIN_CPU_SECONDS] = round(self.cpu_seconds, 3)

    def on_train_end(self, logs=None):
        self._stop()

    def get_state(self):
        """The seconds so far (a preempted run resumes its clocks from them; the
        steps of an epoch cut short count when the backup was taken after them)."""
        wall, cpu = self._running()
        return {"seconds": round(self.seconds + wall, 3),
                "cpu_seconds": round(self.cpu_seconds + cpu, 3)}

    def set_state(self, state):
        self.seconds = float(state.get("seconds", 0.0))
        self.cpu_seconds = float(state.get("cpu_seconds", 0.0))
