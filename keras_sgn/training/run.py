"""`train()`: one training run, as a short sequence of named steps."""

import collections
import os
import shutil
import tempfile
import time

import keras
import tensorflow as tf

from keras_sgn import data as sgn_data
from keras_sgn import methods as sgn_methods
from keras_sgn.config import ConfigError, resumable_fields, saved_settings
from keras_sgn.io_utils import check_free_space, model_file_bytes
from keras_sgn.training import distribute, keras_compat, outputs, run_folder
from keras_sgn.training.callbacks import (
    MethodSwitch,
    PreemptionCheckpoint,
    SafeCheckpoint,
    StopOnNonFiniteLoss,
    TrainingClock,
    TrainingDiverged,
)
from keras_sgn.training.optimization import build_model, check_model_fits, compile_for_training

# The splits of a run; `steps_per_epoch` counts full global batches of `train`.
Splits = collections.namedtuple("Splits", "train validation test steps_per_epoch")
# Files a run may hold at once: best model, last weights, two backups, one temporary.
_MODEL_FILES_AT_ONCE = 5


def train(config, strategy=None, callbacks=()):
    """Train, keep the best model by validation robust accuracy, evaluate it on
    the test split, and write `output_dir/{model.keras, summary.json, ...}`.

    `config.batch_size` is the global batch, split across replicas (and
    workers). Training batches are all full (`drop_remainder`): every step has
    the same global batch on every strategy, TPUs get static shapes and no
    replica gets an empty batch.

    The run folder belongs to this run (`keras_sgn.training.run_folder`): a
    lock keeps other runs out; stale temporary files are removed; a folder
    holding a finished run of the same settings is not trained again (the
    returned summary has `already_complete: True`); a finished or unfinished
    run of other settings is refused unless `config.overwrite`, which moves
    its outputs to `output_dir/previous/<time>/`.

    Preemption-safe at every step: the state is backed up atomically in
    `output_dir/backup` at every epoch end (and every `backup_every_steps`
    steps); rerunning the same command after a crash or a kill resumes from
    it, finishing a partial epoch on its remaining steps, with the weights and
    logs of an uninterrupted run. On SIGTERM the state is saved at the end of
    the current batch and `TrainingPreempted` is raised. The backup is removed
    once `summary.json` is written. A NaN or infinite training loss raises
    `TrainingDiverged` at the end of its batch, before anything of it is saved:
    `model.keras` and the backup of the last finished epoch are kept.

    Multi-worker (`strategy="multi_worker"`): every worker runs the same
    command with its own `TF_CONFIG`; only the chief takes the folder and
    writes into `output_dir` (the others use a temporary folder, removed at the
    end), and only the chief runs the final test and returns the summary (other
    workers return `{"chief": False, ...}`). `output_dir` must be on storage all
    workers see for resuming.

    The dataset is found or downloaded first (`keras_sgn.data.prepare`, as
    `config.download` allows): a run without its data stops with
    `DatasetNotAvailableError` before it creates its folder.

    Args:
        config: a `TrainConfig`.
        strategy: a `tf.distribute.Strategy` to use instead of creating one
            from `config.strategy` (create `multi_worker` ones at program start).
        callbacks: more Keras callbacks (e.g. a study's per-epoch hook). Each
            epoch's logs hold the training metrics, `val_accuracy`,
            `val_robust_accuracy`, `train_seconds` and `train_cpu_seconds`;
            they run after the run's clock and before its checkpoint and backup.

    Returns the summary dict (`clean_accuracy`, `robust_accuracy`, `epochs`,
    `method`, `train_seconds`, ...).
    """
    # The data first: a run that cannot have its dataset stops before anything
    # else (a log line, the run folder) and leaves nothing behind.
    checked = config.resolved()
    sgn_data.prepare(checked.dataset, checked.data_dir, download=checked.download)
    config, strategy_name, strategy = _set_up(config, strategy)
    chief = distribute.worker_info(strategy)[3]
    folder = run_folder.RunFolder(config.output_dir) if chief else None
    try:
        state = _open_folder(config, folder, strategy)
        if state.status == "complete":
            return _already_complete(config, folder, strategy)
        return _run(config, strategy, strategy_name, folder, list(callbacks))
    finally:
        if folder is not None:
            folder.close()


def _set_up(config, strategy):
    """Resolve and check the config, create the strategy (the run's first
    TensorFlow work), seed, set the precision; log the strategy."""
    config = config.resolved()
    strategy_name = distribute.resolve_strategy_name(config.strategy, config.tpu)
    if strategy is None:
        strategy = distribute.get_strategy(strategy_name, tpu=config.tpu)
    keras.utils.set_random_seed(config.seed)
    if config.mixed_precision:
        policy = "mixed_float16" if tf.config.list_logical_devices("GPU") else "mixed_bfloat16"
        keras.mixed_precision.set_global_policy(policy)
    distribute.check_global_batch_size(config.batch_size, strategy)
    if config.verbose:
        print(distribute.describe_strategy(strategy, strategy_name, config.batch_size),
              flush=True)
    return config, strategy_name, strategy


def _open_folder(config, folder, strategy):
    """The chief takes the run folder (`RunFolder.open`); every worker then
    learns its verdict (a refusal or a complete run stops them all). Returns
    the `FolderState`."""
    state = error = None
    if folder is not None:
        try:
            state = folder.open(config.to_dict(), resumable_fields(), config.overwrite)
        except run_folder.RunFolderError as refused:  # raised once the workers know
            error = refused
    complete, refused = distribute.agree_with_chief(
        strategy, [state is not None and state.status == "complete", error is not None])
    if error is not None:
        raise error
    if refused:
        raise run_folder.RunFolderError(f"The chief refused --output_dir={config.output_dir}: "
                                        "its log says why.")
    if folder is None:
        return run_folder.FolderState("complete" if complete else "resume", None, None)
    if config.verbose:
        _log_folder(folder, state)
    return state


def _log_folder(folder, state):
    if folder.lock.took_over:
        owner = folder.lock.took_over
        print(f"Took over the lock of {folder.path} left by pid {owner.get('pid')} on "
              f"{owner.get('host')} (that run is gone).", flush=True)
    if folder.cleaned:
        print(f"Removed {len(folder.cleaned)} temporary file(s) of interrupted writes in "
              f"{folder.path}.", flush=True)
    if state.archived:
        print(f"--overwrite: moved the previous outputs of {folder.path} to {state.archived}.",
              flush=True)


def _already_complete(config, folder, strategy):
    """A finished run of the same settings: nothing to train."""
    if folder is None:
        task_type, task_id = distribute.worker_info(strategy)[:2]
        return {"chief": False, "task": f"{task_type}:{task_id}", "epochs": None,
                "replicas": strategy.num_replicas_in_sync, "already_complete": True}
    if config.verbose:
        print(f"{config.output_dir} already holds this run (same settings), complete: nothing "
              "to train. Returning its summary.json; --overwrite trains it again.", flush=True)
    return {**folder.summary(), "already_complete": True}


def _run(config, strategy, strategy_name, folder, extra_callbacks=()):
    """Build, train, test and write: the run proper, in a folder already taken."""
    task_type, task_id, num_workers, chief = distribute.worker_info(strategy)
    info = sgn_data.info(config.dataset)
    write_dir = _writing_folder(config, chief, task_type, task_id)
    try:
        with strategy.scope():
            model = build_model(config, info)
        check_model_fits(model, config, info)  # before loading any data
        check_free_space(write_dir, _MODEL_FILES_AT_ONCE * model_file_bytes(model),
                         flag="--output_dir")
        switch = _method_switch(config)
        keyed = [sgn_methods.registry.method_class(config.method)] + [s.finish for s in switch]
        splits = _load_splits(config, strategy,
                              with_index=any(method.keyed_by_example for method in keyed))
        with strategy.scope():
            compile_for_training(model, config, splits.steps_per_epoch, strategy)
            methods = [model.method] + [s.finish for s in switch]
            build_method_state(config, methods)
        clock = TrainingClock()
        checkpoint, backup = _backup_callbacks(config, model, write_dir, clock, methods)
        state = _resume(config, folder, backup, strategy, splits.steps_per_epoch)
        logs = keras.callbacks.TensorBoard(os.path.join(write_dir, outputs.TENSORBOARD_DIR))
        # First: a NaN loss stops the run before the checkpoint or the backup saves its weights.
        diverged = StopOnNonFiniteLoss(hint=f"--learning_rate={config.learning_rate} "
                                       f"(--method={config.method}, --optimizer="
                                       f"{config.optimizer})")
        train_seconds = _fit(config, model, splits, backup,
                             [diverged, clock, *extra_callbacks] + switch
                             + [checkpoint, backup, logs])
        if chief:
            execution = {"strategy": strategy_name, "workers": num_workers,
                         "replicas": strategy.num_replicas_in_sync,
                         "train_seconds": round(train_seconds, 2),
                         "resumed_from_epoch": None if state is None else state["epoch"]}
            summary = outputs.write_outputs(config, write_dir, splits.test, checkpoint,
                                            backup, execution, info.num_classes)
        backup.delete()  # only now: a kill before summary.json resumes after training
        backup.barrier()  # the other workers wait for the chief's final files
        if not chief:
            return {"chief": False, "task": f"{task_type}:{task_id}",
                    "epochs": backup.epoch, "replicas": strategy.num_replicas_in_sync}
        return summary
    finally:
        if not chief:
            shutil.rmtree(write_dir, ignore_errors=True)


def _method_switch(config):
    """`[MethodSwitch]` for a run with a `finish_method` (cheap, then strong), else `[]`."""
    finish = config.finish_options()
    if finish is None:
        return []
    options, switch_epoch = finish
    return [MethodSwitch(sgn_methods.get(config.finish_method, **options), switch_epoch)]


def build_method_state(config, methods):
    """Create each training method's per-example state (e.g. `sgn-memory`'s
    memory) for the training split of `config` (resolved); call under the
    strategy's scope."""
    info = sgn_data.info(config.dataset)
    num_examples = info.num_examples["train"]
    if config.n_train is not None:
        num_examples = min(num_examples, config.n_train)
    for method in methods:
        method.build_state(num_examples, info.image_shape)


def _load_splits(config, strategy, with_index=False):
    """Training (full batches, shuffled; `(images, labels, index)` with
    `with_index`), validation and test splits."""
    on_tpu = isinstance(strategy, tf.distribute.TPUStrategy)
    where = {"data_dir": config.data_dir, "download": config.download}
    train_ds = sgn_data.load(config.dataset, "train", config.batch_size, seed=config.seed,
                             n_examples=config.n_train, drop_remainder=True,
                             with_index=with_index, **where)
    val_ds = sgn_data.load(config.dataset, "validation", config.batch_size,
                           n_examples=config.n_eval, drop_remainder=on_tpu, **where)
    test_ds = sgn_data.load(config.dataset, "test", config.batch_size,
                            n_examples=config.n_test or config.n_eval, order=config.test_order,
                            **where)
    steps_per_epoch = int(train_ds.cardinality())
    if steps_per_epoch < 0:
        steps_per_epoch = sum(1 for _ in train_ds)
    if steps_per_epoch < 1:
        raise ConfigError(
            "batch_size", f"Fewer training examples than one global batch (batch_size="
            f"{config.batch_size}, n_train={config.n_train}): lower --batch_size or raise "
            "--n_train.")
    return Splits(distribute.shard_by_example(train_ds), distribute.shard_by_example(val_ds),
                  test_ds, steps_per_epoch)


def _writing_folder(config, chief, task_type, task_id):
    """Where this process writes: `output_dir` on the chief; the other workers
    write the same files (saving may involve collective reads) into a
    temporary folder, removed at the end of `train`."""
    write_dir = config.output_dir if chief else tempfile.mkdtemp(
        prefix=f"keras_sgn-{task_type or 'worker'}{task_id}-")
    os.makedirs(write_dir, exist_ok=True)
    return write_dir


def _backup_callbacks(config, model, write_dir, clock, methods):
    """The best checkpoint and the preemption backup (which keeps the
    checkpoint's state, so a resumed run still replaces it only on improvement,
    and the per-example state of the run's `methods`)."""
    checkpoint = SafeCheckpoint(os.path.join(write_dir, "model.keras"),
                                os.path.join(write_dir, "checkpoints", "last.weights.h5"))
    backup = PreemptionCheckpoint(
        os.path.join(config.output_dir, "backup"),
        save_dir=os.path.join(write_dir, "backup"),
        save_every_steps=config.backup_every_steps,
        stateful={"safe_checkpoint": checkpoint, "training_clock": clock},
        own_variables={f"method{i}": method for i, method in enumerate(methods)},
        delete_on_completion=False)
    backup.set_model(model)
    return checkpoint, backup


def check_resumable(saved_config, config):
    """Refuse to resume the backup of a run of `saved_config` (a dict, from its
    `config.json`; None: nothing to check) with `config` if a field outside
    `keras_sgn.config.resumable_fields()` differs (`train` checks it through
    `RunFolder.open`). A `config.json` of an older layout (each method option a key
    of its own) compares as today's (`keras_sgn.config.saved_settings`)."""
    if saved_config is None:
        return
    changed = run_folder.differences(saved_settings(saved_config), config.to_dict(),
                                     ignore=resumable_fields())
    if changed:
        raise run_folder.RunFolderError(
            f"{config.output_dir} holds a backup of an unfinished run with other settings "
            f"({run_folder.describe_differences(changed)}). Rerun the same command to resume "
            "it, pick another --output_dir, or pass --overwrite to move its outputs to "
            "previous/<time>/ and train afresh.")


def _resume(config, folder, backup, strategy, steps_per_epoch):
    """Record the config (`config.json`, the chief), restore the backup if
    any; returns its state or None."""
    if folder is not None:
        folder.write_settings(config.to_dict())
    with strategy.scope():  # optimizer variables are built under the strategy
        state = backup.restore()
    if state is not None and config.verbose:
        partial = (f", epoch {backup.epoch + 1} at step {backup.step}/{steps_per_epoch}"
                   if backup.step else "")
        print(f"Resuming from {backup.backup_dir}: {backup.epoch} of {config.epochs} "
              f"epoch(s) complete{partial}", flush=True)
    return state


def _fit(config, model, splits, backup, callbacks):
    """Train the epochs not done yet (finishing a partial one on its remaining
    steps); returns the seconds it took. A non-finite loss raises
    `TrainingDiverged` (the callbacks' train end run, the last good state kept)."""
    try:
        return _fit_epochs(config, model, splits, backup, callbacks)
    except TrainingDiverged:
        backup.on_train_end()  # its signal handlers go; its files stay (not deleted here)
        raise


def _fit_epochs(config, model, splits, backup, callbacks):
    start = time.time()
    epoch = backup.epoch
    # The shuffle and augmentation of keras_sgn.data draw new seeds for each
    # iterator, and fit makes KERAS_ITERATORS_PER_EPOCH per epoch: create those of
    # the epochs already done, so a resumed run sees the data of an uninterrupted one.
    for _ in range(keras_compat.KERAS_ITERATORS_PER_EPOCH * min(epoch, config.epochs)):
        iter(splits.train)
    if backup.step and epoch < config.epochs:
        callback_list = keras.callbacks.CallbackList(
            callbacks, add_history=True, add_progbar=config.verbose != 0,
            verbose=config.verbose, epochs=config.epochs,
            steps=splits.steps_per_epoch - backup.step, model=model)
        if backup.step >= splits.steps_per_epoch:
            for _ in range(keras_compat.KERAS_ITERATORS_PER_EPOCH):
                iter(splits.train)  # those of the epoch, as if fit had run it
            _end_trained_epoch(config, model, splits.validation, callback_list, backup)
        else:
            model.fit(splits.train.skip(backup.step), epochs=epoch + 1, initial_epoch=epoch,
                      validation_data=splits.validation, callbacks=callback_list,
                      verbose=config.verbose, shuffle=False)
        epoch += 1
    if epoch < config.epochs:
        model.fit(splits.train, epochs=config.epochs, initial_epoch=epoch,
                  validation_data=splits.validation, callbacks=callbacks,
                  verbose=config.verbose,
                  shuffle=False)  # keras_sgn.data already shuffles the training split
    return time.time() - start


def _end_trained_epoch(config, model, validation, callback_list, backup):
    """The end of an epoch whose every training step was done before the
    preemption (the backup was taken after its last step): validation, then
    the callbacks' epoch end with the epoch's training logs from the backup,
    as `fit` would have run them."""
    epoch = backup.epoch
    if config.verbose:
        print(f"Epoch {epoch + 1}/{config.epochs}: all its steps were done before the "
              "interruption; validating.", flush=True)
    callback_list.on_train_begin()
    callback_list.on_epoch_begin(epoch)
    train_logs = dict(backup.batch_logs)
    val_logs = model.evaluate(validation, callbacks=callback_list, return_dict=True,
                              verbose=0)
    logs = {**train_logs, **{f"val_{name}": value for name, value in val_logs.items()}}
    callback_list.on_epoch_end(epoch, logs)
    callback_list.on_train_end(logs)
