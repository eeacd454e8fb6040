"""Trials at a fixed training-time budget (`SGNHyperModel(time_budget_minutes=...)`).

At a fixed number of epochs a configuration that is slower per step (more feedback
sites, `second_order`) gets more compute than a cheap one, and the search rewards
cost rather than the recipe. With a time budget every trial gets the same training
time instead, as the budgets study (`keras_sgn.experiments.budgets`) gives every
method the same time:

1. before training, the trial's own compiled model (a copy, discarded) is timed for
   a few steps on the training data after a warm-up; the median step, times the
   steps of an epoch, is its epoch time (`measure_epoch_seconds`);
2. its epochs are `max(1, floor(budget / epoch time))` (`budget_epochs`), and its
   learning-rate schedule spans those epochs;
3. a safety stop (`BudgetStop`, a `TrainingClock`) ends the trial once its measured
   training CPU time passes the budget by more than `OVERRUN` - 1 (25%).

Time is the CPU time of the process, validation excluded: minutes of one core when
the process is pinned to one core (`taskset -c 0`), as in the budgets study.
"""

import math
import statistics
import time

import keras

from keras_sgn.errors import ArgumentError
from keras_sgn.training.callbacks import TrainingClock

#: A trial stops once its training CPU time passes `OVERRUN` x its budget.
OVERRUN = 1.25
#: Untimed, then timed training steps of the epoch-time measurement.
WARMUP_STEPS = 2
TIMED_STEPS = 5
#: The budget metrics each trial reports to the oracle (its results, `trial_rows`).
PLANNED_EPOCHS = "budget_planned_epochs"
EPOCHS_RUN = "budget_epochs_run"
EPOCH_SECONDS = "budget_epoch_seconds"
TRAIN_CPU_SECONDS = "budget_train_cpu_seconds"
TRAIN_SECONDS = "budget_train_seconds"
STOPPED = "budget_stopped"
METRICS = (PLANNED_EPOCHS, EPOCHS_RUN, EPOCH_SECONDS, TRAIN_CPU_SECONDS, TRAIN_SECONDS,
           STOPPED)


def check_time_budget(minutes):
    """`minutes` as a float (None stays None), refused unless finite and > 0."""
    if minutes is None:
        return None
    try:
        value = float(minutes)
    except (TypeError, ValueError):
        value = math.nan
    if isinstance(minutes, bool) or not math.isfinite(value) or value <= 0:
        raise ArgumentError(
            "time_budget_minutes (--time_budget_minutes of tools/tune.py) must be a finite "
            "number of minutes > 0, the training time of every trial (or None for a fixed "
            f"number of epochs). Received: {minutes!r}.")
    return value


def budget_epochs(budget_seconds, epoch_seconds):
    """Whole epochs that fit `budget_seconds` at `epoch_seconds` each (at least 1)."""
    if not epoch_seconds or epoch_seconds <= 0 or not math.isfinite(epoch_seconds):
        raise ArgumentError(f"The measured epoch time must be > 0. Received: {epoch_seconds!r}.")
    # The small tolerance keeps an exact fit (300 s / 60 s) from rounding down.
    return max(1, math.floor(budget_seconds / epoch_seconds + 1e-9))


class _StepTimer(keras.callbacks.Callback):
    """The CPU seconds of each training step (data fetch included)."""

    def __init__(self):
        super().__init__()
        self.samples = []
        self._start = None

    def on_train_batch_begin(self, batch, logs=None):
        self._start = time.process_time()

    def on_train_batch_end(self, batch, logs=None):
        for value in (logs or {}).values():
            float(value)  # block until the step is done
            break
        self.samples.append(time.process_time() - self._start)


def measure_epoch_seconds(model, data, steps_per_epoch, warmup=WARMUP_STEPS,
                          repeats=TIMED_STEPS):
    """The training CPU seconds of one epoch of the compiled `model`: the median of
    `repeats` steps on `data` (a `tf.data.Dataset` of training batches) after `warmup`
    untimed ones (tracing), times `steps_per_epoch`. It trains `model`: pass a copy."""
    timer = _StepTimer()
    model.fit(data.repeat().take(warmup + repeats), epochs=1, verbose=0, shuffle=False,
              callbacks=[timer])
    return float(statistics.median(timer.samples[warmup:])) * steps_per_epoch


class BudgetStop(TrainingClock):
    """A `TrainingClock` that ends training (after the current step; the epoch is
    still validated) once its training CPU seconds pass `limit_seconds`."""

    def __init__(self, limit_seconds):
        super().__init__()
        self.limit_seconds = float(limit_seconds)
        self.stopped = False

    def on_train_batch_end(self, batch, logs=None):
        if self.get_state()["cpu_seconds"] > self.limit_seconds:
            self.stopped = True
            self.model.stop_training = True


def record(history, planned_epochs, epoch_seconds, clock):
    """Add the trial's budget metrics to `history` (every epoch the same value, so
    that the best epoch's metrics, which the oracle keeps, carry them)."""
    epochs_run = max((len(v) for v in history.history.values()), default=0)
    values = {PLANNED_EPOCHS: planned_epochs, EPOCHS_RUN: epochs_run,
              EPOCH_SECONDS: epoch_seconds, TRAIN_CPU_SECONDS: clock.cpu_seconds,
              TRAIN_SECONDS: clock.seconds, STOPPED: 1.0 if clock.stopped else 0.0}
    for name, value in values.items():
        history.history[name] = [float(value)] * epochs_run
    return history
