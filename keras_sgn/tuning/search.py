"""Tuners over an `SGNHyperModel`, running (or resuming) a search, and the
one-call `tune()`."""

import os

import keras
import keras_tuner

from keras_sgn import training
from keras_sgn.errors import ArgumentError
from keras_sgn.tuning.budget import check_time_budget
from keras_sgn.tuning.hypermodel import SGNHyperModel, objective
from keras_sgn.tuning.results import write_outputs
from keras_sgn.tuning.space import default_point

TUNERS = ("hyperband", "bayesian", "random")


def _default_first(oracle_class):
    """`oracle_class` running the base configuration (the space's defaults) as
    its first trial, so the default setting is measured in the same search as
    the others: the baseline they have to beat."""

    class DefaultFirst(oracle_class):
        include_default = True

        def populate_space(self, trial_id):
            if not self.include_default or self.trials:
                return super().populate_space(trial_id)
            default = default_point(self.hyperparameters)
            if not issubclass(oracle_class, keras_tuner.oracles.HyperbandOracle):
                return {"status": "RUNNING", "values": default}
            # Hyperband opens its first bracket with this trial and gives it the
            # bracket's epoch budget (its `tuner/...` values): keep those.
            response = super().populate_space(trial_id)
            if response.get("status") != "RUNNING":
                return response
            budget = {name: value for name, value in response["values"].items()
                      if name.startswith("tuner/")}
            return {**response, "values": {**default, **budget}}

    DefaultFirst.__name__ = f"DefaultFirst{oracle_class.__name__}"
    return DefaultFirst


class _Hyperband(keras_tuner.Hyperband):
    """KerasTuner's Hyperband tuner (its epoch budgets and checkpoint reloads)
    over a given oracle: `keras_tuner.Hyperband` always makes its own."""

    def __init__(self, oracle, **kwargs):
        keras_tuner.Tuner.__init__(self, oracle=oracle, **kwargs)


def _hyperband_oracle(max_epochs, factor, hyperband_iterations, max_trials, include_default,
                      **oracle_args):
    """The Hyperband oracle, running the default setting first."""
    oracle = _default_first(keras_tuner.oracles.HyperbandOracle)(
        max_epochs=max_epochs, factor=factor, hyperband_iterations=hyperband_iterations,
        **oracle_args)
    oracle.max_trials = max_trials  # an extra cap on Hyperband's own budget
    oracle.include_default = bool(include_default)
    return oracle


def _sampling_oracle(tuner, max_trials, num_initial_points, include_default, **oracle_args):
    """The random or Bayesian oracle, running the default setting first."""
    if tuner == "random":
        oracle_class, extra = keras_tuner.oracles.RandomSearchOracle, {}
    else:
        oracle_class = keras_tuner.oracles.BayesianOptimizationOracle
        if num_initial_points is None:
            num_initial_points = max(3, (max_trials or 6) // 2)
        extra = dict(num_initial_points=num_initial_points)
    oracle = _default_first(oracle_class)(max_trials=max_trials, **oracle_args, **extra)
    oracle.include_default = bool(include_default)
    return oracle


def _check_budget_tuner(tuner, time_budget_minutes):
    if tuner == "hyperband" and time_budget_minutes is not None:
        raise ArgumentError(
            "A time budget per trial (time_budget_minutes, --time_budget_minutes) sets each "
            "trial's epochs from its measured epoch time; Hyperband sets them itself. Use "
            "tuner 'random' or 'bayesian' (--tuner=random). Received: tuner='hyperband', "
            f"time_budget_minutes={time_budget_minutes!r}.")


def make_tuner(hypermodel, tuner="hyperband", max_trials=10, directory="tuning",
               project_name="sgn", overwrite=False, seed=1, distribution_strategy=None,
               factor=3, hyperband_iterations=1, num_initial_points=None,
               include_default=True, executions_per_trial=1, max_retries_per_trial=0,
               max_consecutive_failed_trials=3, tensorboard=True):
    """A KerasTuner tuner over `hypermodel`'s space, maximising `val_robust_accuracy`.

    Args:
        hypermodel: an `SGNHyperModel`.
        tuner: `"hyperband"` (default), `"bayesian"` or `"random"`.
        max_trials: cap on the number of trials (for Hyperband an extra cap on
            top of its own budget, which `hypermodel.config.epochs` (max_epochs),
            `factor` and `hyperband_iterations` set; None: no cap).
        directory, project_name: where the search lives. An existing project is
            resumed (finished trials are kept, an interrupted one is rerun)
            unless `overwrite=True`. Resume with the same space.
        seed: seed of the oracle's sampling (KerasTuner draws a random one for 0 or None).
        distribution_strategy: a `tf.distribute` strategy each trial runs under
            (e.g. `MirroredStrategy`); `batch_size` stays global.
        num_initial_points: Bayesian only: random trials before the Gaussian
            process proposes; default `max(3, max_trials // 2)` (KerasTuner's own
            default, 3 per dimension, would make short searches purely random).
        include_default: the first trial (trial 1) is the base config's own
            setting (the space's defaults), the baseline the others must beat;
            in a Hyperband search it opens the first bracket with that
            bracket's epoch budget and is continued if it is among the best.
        executions_per_trial, max_retries_per_trial,
        max_consecutive_failed_trials: as in KerasTuner.
        tensorboard: log each trial with TensorBoard, with its hyperparameters
            for the HParams dashboard, under `directory/project_name/logs`.

    Returns:
        A `keras_tuner.Tuner`; run it with `search(tuner, verbose=...)` and no
        data (the hypermodel loads its dataset), or pass `x=...`,
        `validation_data=...`.
    """
    if tuner not in TUNERS:
        raise ArgumentError(f"tuner must be one of {TUNERS}. Received: {tuner!r}.")
    _check_budget_tuner(tuner, getattr(hypermodel, "time_budget_minutes", None))
    if max_trials is not None and (int(max_trials) != max_trials or max_trials < 1):
        raise ArgumentError("max_trials must be an integer >= 1 (or None for no cap). "
                            f"Received: {max_trials}.")
    common = dict(hypermodel=hypermodel, directory=directory, project_name=project_name,
                  overwrite=overwrite, distribution_strategy=distribution_strategy,
                  executions_per_trial=executions_per_trial)
    if distribution_strategy is not None:
        training.distribute.check_global_batch_size(hypermodel.config.batch_size,
                                                    distribution_strategy)
    oracle_args = dict(objective=objective(), seed=seed,
                       max_retries_per_trial=max_retries_per_trial,
                       max_consecutive_failed_trials=max_consecutive_failed_trials)
    if tuner == "hyperband":
        oracle = _hyperband_oracle(hypermodel.config.epochs, factor, hyperband_iterations,
                                   max_trials, include_default, **oracle_args)
        instance = _Hyperband(oracle=oracle, **common)
    else:
        oracle = _sampling_oracle(tuner, max_trials, num_initial_points, include_default,
                                  **oracle_args)
        instance = keras_tuner.Tuner(oracle=oracle, **common)
    instance.sgn_tensorboard = bool(tensorboard)
    return instance


def search(tuner, verbose=1, callbacks=(), **fit_kwargs):
    """`tuner.search` with the TensorBoard/HParams logging `make_tuner` asked for."""
    callbacks = list(callbacks)
    if getattr(tuner, "sgn_tensorboard", False):
        callbacks.append(keras.callbacks.TensorBoard(os.path.join(tuner.project_dir, "logs"),
                                                     write_graph=False))
    tuner.search(callbacks=callbacks, verbose=verbose, **fit_kwargs)
    if role() != "worker":
        # A chief's oracle saves a trial's end before it drops it from the
        # ongoing trials; save again so a resumed search does not rerun it.
        tuner.save()
    return tuner


def role():
    """`"chief"`, `"worker"` or `"standalone"`, from KerasTuner's
    `KERASTUNER_TUNER_ID` / `KERASTUNER_ORACLE_IP` / `KERASTUNER_ORACLE_PORT`."""
    if "KERASTUNER_ORACLE_IP" not in os.environ:
        return "standalone"
    return "chief" if "chief" in os.environ.get("KERASTUNER_TUNER_ID", "") else "worker"


def tune(config, space=None, tuner="hyperband", max_trials=10, directory="tuning",
         project_name=None, output_dir=None, overwrite=False, seed=1,
         distribution_strategy=None, factor=3, hyperband_iterations=1,
         num_initial_points=None, include_default=True, tensorboard=True,
         model_kwargs=None, verbose=1, time_budget_minutes=None):
    """Run (or resume) a search and, unless this process is a distributed
    worker, write its results (`write_outputs`) to `output_dir`.

    `config.epochs` is the per-trial epoch budget (`max_epochs`), unless
    `time_budget_minutes` gives every trial that much training time instead
    (`SGNHyperModel`; random or Bayesian tuners only); the project
    is `directory/project_name` (default `"{dataset}-{model}-{tuner}"`) and
    `output_dir` defaults to its `results` folder. See `SGNHyperModel` and
    `make_tuner` for the other arguments.

    Returns `write_outputs`'s dict plus `"role"`, or `{"role": "worker"}` on a
    worker (the chief holds the results).
    """
    _check_budget_tuner(tuner, check_time_budget(time_budget_minutes))
    hypermodel = SGNHyperModel(config, space=space, model_kwargs=model_kwargs,
                               time_budget_minutes=time_budget_minutes)
    if project_name is None:
        project_name = f"{hypermodel.config.dataset}-{hypermodel.config.model}-{tuner}"
    instance = make_tuner(hypermodel, tuner, max_trials=max_trials, directory=directory,
                          project_name=project_name, overwrite=overwrite, seed=seed,
                          distribution_strategy=distribution_strategy, factor=factor,
                          hyperband_iterations=hyperband_iterations,
                          num_initial_points=num_initial_points,
                          include_default=include_default, tensorboard=tensorboard)
    search(instance, verbose=verbose)
    current = role()
    if current == "worker":
        return {"role": current}
    result = write_outputs(instance, hypermodel, output_dir or os.path.join(
        directory, project_name, "results"), tuner_name=tuner)
    result["role"] = current
    return result
