"""`PreemptionCheckpoint`: atomic, complete backups of a training run, so that a
run killed at any moment resumes where it was; `TrainingPreempted` after SIGTERM."""

import glob
import io
import json
import os
import shutil
import signal
import threading
import time

import keras
import numpy as np

from keras_sgn.errors import ArgumentError, KerasSGNError
from keras_sgn.io_utils import (
    TEMPORARY_PREFIX,
    atomic_save_model,
    atomic_write_bytes,
    atomic_write_text,
)
from keras_sgn.training import keras_compat
from keras_sgn.training.distribute import replica_sum, worker_info


class TrainingPreempted(KerasSGNError):
    """Raised out of `fit` (and `train`) by `PreemptionCheckpoint` after a
    termination signal, once the backup is saved: rerunning the same command
    resumes from it."""

    #: Exit code of `tools/train.py` after a preemption (as TensorFlow's
    #: `PreemptionCheckpointHandler`); schedulers restart the job on it.
    exit_code = 42


class PreemptionCheckpoint(keras.callbacks.Callback):
    """Backs up the training state so that a run killed at any moment (SIGKILL
    included) and restarted with the same command resumes where it was; on
    SIGTERM it saves at the end of the current batch and stops.

    Like `keras.callbacks.BackupAndRestore` (which it replaces in `train`), plus:

    - **atomic**: the weights go to a new file (temporary file, fsync, rename),
      then `state.json` (temporary file, fsync, rename) is switched to point
      at it; `state.json` is the single commit point, so a crash leaves the
      previous backup or the new one, never a mix or a half-written file;
    - **complete**: model and optimizer variables (moments, step counter,
      hence the learning-rate schedule and the attacks' seeds), the epoch
      and step within the epoch, the logs of every epoch so far, the running
      training metrics of the current epoch (its last batch's logs and the
      metric variables, so a resumed epoch logs what an uninterrupted one
      would), the state of `stateful` callbacks (e.g. `SafeCheckpoint`'s
      best score) and the training state kept outside the model
      (`own_variables`, e.g. `sgn-memory`'s per-example memory, in a `.npz`
      file committed by `state.json` like the weights). A backup may be taken
      after an epoch's last step, before its validation (`step ==
      steps_per_epoch`): `batch_logs` then holds the epoch's training logs,
      and `train` finishes the epoch from there;
    - **SIGTERM** (`signals`): the handler only sets a flag; at the end of the
      current batch the state is saved and `TrainingPreempted` is raised out of
      `fit` (no validation of the partial epoch, which could outlast a
      preemption notice). With several workers the flag is agreed on (an
      all-reduce after every batch), so all workers stop at the same step;
    - **multi-worker**: every worker saves (reads of synchronised variables
      may be collective), only the chief into `backup_dir`; the others pass a
      temporary `save_dir`. All workers restore from `backup_dir`, which must
      then be on storage every worker sees (GCS, NFS), and check that they
      restored the same epoch and step.

    Resuming: `restore()` (called by `on_train_begin` if not called before)
    loads the state; a standalone `fit` then starts at the restored epoch via
    `keras_compat.set_initial_epoch`, as `BackupAndRestore` does, replaying a
    partially done epoch from its start. `keras_sgn.training.train` instead
    finishes the partial epoch on the remaining steps only.

    Args:
        backup_dir: folder of the backup (used by nothing else).
        save_dir: where this process writes its backups (default `backup_dir`;
            a temporary folder on non-chief workers).
        save_every_steps: also back up every N training steps (0: at epoch ends only).
        stateful: `{name: callback}` of objects with `get_state()` / `set_state()`.
        delete_on_completion: remove the backup once all planned epochs are done
            (`train` removes it itself, after writing its final files).
        signals: signals that request a save-and-stop (default SIGTERM).
        own_variables: `{name: object}` of objects with Keras's
            `save_own_variables(store)` / `load_own_variables(store)` (a training
            method's per-example state); default: the model's `method`, if any.
    """

    STATE_FILE = "state.json"

    def __init__(self, backup_dir, save_dir=None, save_every_steps=0, stateful=None,
                 delete_on_completion=True, signals=(signal.SIGTERM,), own_variables=None):
        super().__init__()
        if not backup_dir:
            raise ArgumentError("PreemptionCheckpoint needs a backup_dir.")
        self.backup_dir = backup_dir
        self.save_dir = save_dir or backup_dir
        self.save_every_steps = int(save_every_steps or 0)
        self.stateful = dict(stateful or {})
        self.own_variables = None if own_variables is None else dict(own_variables)
        self.delete_on_completion = delete_on_completion
        self.signals = tuple(signals)
        self.epoch = 0          # completed epochs
        self.step = 0           # steps done in epoch `self.epoch`
        self.history = {}       # logs of every completed epoch, resumed runs included
        self.batch_logs = {}    # training logs of epoch `self.epoch` after step `self.step`
        self._last_batch_logs = None
        self.restored = None    # the state restored, if any
        self._restore_done = False
        self._step_offset = 0
        self._first_epoch = True
        self._termination_requested = False
        self._previous_handlers = {}
        self._reduce = None
        self._workers = None

    # -- backup files ----------------------------------------------------------
    def _state_path(self, directory=None):
        return os.path.join(directory or self.backup_dir, self.STATE_FILE)

    def read_state(self):
        """The committed state of `backup_dir`, or None if there is none."""
        path = self._state_path()
        if not os.path.exists(path):
            return None
        with open(path) as f:
            return json.load(f)

    def save(self):
        """Commit a backup of the current state into `save_dir` (atomic)."""
        os.makedirs(self.save_dir, exist_ok=True)
        for leftover in glob.glob(os.path.join(self.save_dir, TEMPORARY_PREFIX + "*")):
            os.remove(leftover)  # from a process killed while saving; never referenced
        if self.step and self._last_batch_logs is not None:
            self.batch_logs = {k: float(v) for k, v in self._last_batch_logs.items()}
        name = f"weights-epoch{self.epoch:05d}-step{self.step:07d}.weights.h5"
        atomic_save_model(self.model, os.path.join(self.save_dir, name))
        variables = self._save_own_variables(name.replace(".weights.h5", ".npz"))
        state = {
            "epoch": self.epoch,
            "step": self.step,
            "weights": name,
            "variables": variables,
            "history": self.history,
            "batch_logs": self.batch_logs,
            # Collective reads under a multi-worker strategy: every worker saves.
            "metrics": [np.asarray(v).tolist() for v in self._metric_variables()],
            "callbacks": {key: cb.get_state() for key, cb in self.stateful.items()},
            "saved_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
        }
        atomic_write_text(self._state_path(self.save_dir), json.dumps(state, indent=1) + "\n")
        for old in glob.glob(os.path.join(self.save_dir, "weights-*")):
            if os.path.basename(old) not in (name, variables):
                os.remove(old)

    def _holders(self):
        """`{name: object}` whose own variables the backup keeps."""
        if self.own_variables is not None:
            return self.own_variables
        method = getattr(self.model, "method", None)
        return {"method": method} if hasattr(method, "save_own_variables") else {}

    def _save_own_variables(self, name):
        """Write the holders' own variables to `save_dir/name` (atomic);
        returns `name`, or None when they have none."""
        arrays = {}
        for holder, obj in self._holders().items():
            store = {}
            obj.save_own_variables(store)
            arrays.update({f"{holder}/{key}": value for key, value in store.items()})
        if not arrays:
            return None
        payload = io.BytesIO()
        np.savez(payload, **arrays)
        atomic_write_bytes(os.path.join(self.save_dir, name), payload.getvalue())
        return name

    def _load_own_variables(self, name):
        holders = self._holders()
        with np.load(os.path.join(self.backup_dir, name)) as saved:
            stores = {}
            for key in saved.files:
                holder, _, variable = key.partition("/")
                stores.setdefault(holder, {})[variable] = saved[key]
        for holder, store in stores.items():
            if holder not in holders:
                raise RuntimeError(
                    f"The backup in {self.backup_dir} holds the state of {holder!r}, which "
                    "this run does not have. Was the command changed? Delete that folder to "
                    "start over.")
            holders[holder].load_own_variables(store)

    def restore(self):
        """Load the committed backup of `backup_dir` into the model (weights
        and optimizer state) and this callback; returns the state or None."""
        self._restore_done = True
        state = self.read_state()
        if state is not None:
            weights = os.path.join(self.backup_dir, state["weights"])
            if not self.model.built:
                raise ArgumentError("PreemptionCheckpoint: build the model (call it on a batch) "
                                    "before fit() so the backup can be restored.")
            if self.model.optimizer is not None and not self.model.optimizer.built:
                self.model.optimizer.build(self.model.trainable_variables)
            try:
                self.model.load_weights(weights)
            except Exception as error:
                raise RuntimeError(
                    f"The backup in {self.backup_dir} does not fit this model ({error}). "
                    "Was the command changed? Delete that folder to start over.") from error
            if state.get("variables"):
                self._load_own_variables(state["variables"])
            self.epoch, self.step = int(state["epoch"]), int(state["step"])
            self.history = {k: list(v) for k, v in state.get("history", {}).items()}
            self.batch_logs = dict(state.get("batch_logs", {}))
            for key, values in state.get("callbacks", {}).items():
                if key in self.stateful:
                    self.stateful[key].set_state(values)
        self._check_workers_agree()
        self.restored = state
        return state

    def delete(self):
        """Remove the backup (this process's `save_dir`)."""
        shutil.rmtree(self.save_dir, ignore_errors=True)

    # -- multi-worker agreement -------------------------------------------------
    def num_workers(self):
        """Workers training the model (1 outside a multi-worker cluster)."""
        if self._workers is None:
            self._workers = worker_info(self.model.distribute_strategy)[2]
        return self._workers

    def barrier(self):
        """All workers meet here (a no-op with one worker): e.g. the other
        workers wait for the chief's final files."""
        if self.num_workers() > 1:
            self._sum_over_replicas([1.0])

    def _sum_over_replicas(self, values):
        if self._reduce is None:
            self._reduce = replica_sum(self.model.distribute_strategy)
        return self._reduce(values)

    def _metric_variables(self):
        return [v for metric in self.model.metrics for v in metric.variables]

    def _restore_metrics(self):
        """Set the running training metrics to those of the backup (resuming
        a partial epoch: its logs then cover the whole epoch)."""
        values = (self.restored or {}).get("metrics")
        variables = self._metric_variables()
        if values is None or len(values) != len(variables):
            return
        for variable, value in zip(variables, values):
            variable.assign(np.asarray(value, dtype=variable.dtype))

    def _check_workers_agree(self):
        if self.num_workers() <= 1:
            return
        replicas = self.model.distribute_strategy.num_replicas_in_sync
        e, s = float(self.epoch), float(self.step)
        total = self._sum_over_replicas([e, s, e * e, s * s])
        # All equal iff the sums of squares equal (sum)^2 / replicas.
        if (abs(total[2] * replicas - total[0] ** 2) > 0.5
                or abs(total[3] * replicas - total[1] ** 2) > 0.5):
            raise RuntimeError(
                f"Workers restored different backups (this one: epoch {self.epoch}, step "
                f"{self.step}; mean over workers: epoch {total[0] / replicas:.2f}). The "
                f"backup folder {self.backup_dir} must be on storage every worker sees "
                "(GCS, NFS).")

    def _termination_agreed(self):
        flag = 1.0 if self._termination_requested else 0.0
        if self.num_workers() > 1:
            flag = float(self._sum_over_replicas([flag])[0])
        return flag > 0

    # -- signals -----------------------------------------------------------------
    def _on_signal(self, signum, frame):
        self._termination_requested = True

    def _install_handlers(self):
        if threading.current_thread() is not threading.main_thread():
            return  # signal handlers can only be set from the main thread
        for signum in self.signals:
            self._previous_handlers[signum] = signal.signal(signum, self._on_signal)

    def _uninstall_handlers(self):
        for signum, handler in self._previous_handlers.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
        self._previous_handlers = {}

    def _stop_if_requested(self, saved):
        if self._termination_agreed():
            if not saved:
                self.save()
            self._uninstall_handlers()
            raise TrainingPreempted(
                f"Termination requested: state saved at epoch {self.epoch + 1}, step "
                f"{self.step} ({self.epoch} epoch(s) complete) in {self.backup_dir}. "
                "Rerun the same command to resume.")

    # -- callback hooks -------------------------------------------------------------
    def on_train_begin(self, logs=None):
        if not self._restore_done:
            self.restore()
            if self.epoch or self.step:
                keras_compat.set_initial_epoch(self.model, self.epoch)
            self.step = 0  # a standalone fit replays a partial epoch from its start
        self._first_epoch = True
        self._install_handlers()

    def on_epoch_begin(self, epoch, logs=None):
        # The first epoch of a fit that resumes a partial epoch continues its
        # step count (train() feeds it only the remaining steps).
        if self._first_epoch and epoch == self.epoch:
            self._step_offset = self.step
            if self.step:
                self._restore_metrics()  # Keras has just reset them
        else:
            self._step_offset = 0
            self.step = 0
            self.batch_logs = {}
        self._last_batch_logs = None
        self._first_epoch = False
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        self.step = self._step_offset + batch + 1
        self._last_batch_logs = logs  # read at the next save only: no host sync per step
        saved = bool(self.save_every_steps) and self.step % self.save_every_steps == 0
        if saved:
            self.save()
        self._stop_if_requested(saved)

    def on_epoch_end(self, epoch, logs=None):
        self.epoch, self.step, self.batch_logs = epoch + 1, 0, {}
        for key, value in (logs or {}).items():
            self.history.setdefault(key, []).append(float(value))
        self.save()
        self._stop_if_requested(saved=True)

    def on_train_end(self, logs=None):
        self._uninstall_handlers()
        if keras_compat.initial_epoch(self.model) is not None:
            keras_compat.set_initial_epoch(self.model, None)
        if self.delete_on_completion and self.epoch >= self.params.get("epochs", 0):
            self.delete()
