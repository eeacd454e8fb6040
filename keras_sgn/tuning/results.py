"""A search's results: one row per trial, the winner as a `tools/train.py`
flags file, and the files `write_outputs` leaves in the output folder."""

import json
import math
import os

from keras_sgn.config import flat_settings
from keras_sgn.io_utils import atomic_write_json, atomic_write_text
from keras_sgn.tuning import budget as sgn_budget
from keras_sgn.tuning.hypermodel import OBJECTIVE
from keras_sgn.tuning.report import format_table, plot_trials
from keras_sgn.tuning.space import default_point

# The settings a trial's row reports: the ones the space sets (`clean_weight` and
# `second_order` are options of the searched methods).
SEARCHED_FIELDS = ("sites", "beta", "normalization", "step_size", "clean_weight",
                   "second_order", "learning_rate", "weight_decay")
OUTPUT_FILES = ("best_hyperparameters.json", "best_recipe.flags", "default_recipe.flags",
                "trials.json", "results.md", "trials_objective.png")


def _metric(trial, name):
    """A trial's `name` metric at its best epoch (KerasTuner records the best epoch's)."""
    if not trial.metrics.exists(name):
        return None
    value = trial.metrics.get_last_value(name)
    return None if value is None else float(value)


def trial_number(trial_id):
    """The number a trial is shown with everywhere (table, plot, tools/tune.py,
    KerasTuner's "Running Trial #N" log): its start order, from 1. KerasTuner's
    `trial_id` (its folder `trial_<id>`, its TensorBoard run `logs/<id>`)
    counts from 0."""
    return int(trial_id) + 1


def _trial_row(trial, hypermodel, default):
    values = dict(trial.hyperparameters.values)
    config = hypermodel.config_for(values)
    initial_epoch = int(values.get("tuner/initial_epoch", 0))
    return {
        "trial": trial_number(trial.trial_id),
        "trial_id": trial.trial_id,
        "status": trial.status,
        "default": config == default,
        # A Hyperband round continues a trial of the previous round from its checkpoint.
        "continues": (trial_number(values["tuner/trial_id"])
                      if "tuner/trial_id" in values else None),
        OBJECTIVE: float(trial.score) if trial.score is not None else None,
        "val_accuracy": _metric(trial, "val_accuracy"),
        "epochs": int(values.get("tuner/epochs", hypermodel.config.epochs)),
        "best_epoch": (initial_epoch + trial.best_step + 1
                       if trial.best_step is not None else None),
        "hyperparameters": values,
        "config": {k: flat_settings(config.to_dict()).get(k) for k in SEARCHED_FIELDS},
        **_budget_fields(trial),
    }


def _budget_fields(trial):
    """A time-budget trial's spending (`keras_sgn.tuning.budget`): epochs run
    (`epochs`) and planned, its measured epoch time, training CPU and wall
    seconds, and whether the safety stop ended it; {} for an epoch-budget trial."""
    run = _metric(trial, sgn_budget.EPOCHS_RUN)
    if run is None:
        return {}
    planned = _metric(trial, sgn_budget.PLANNED_EPOCHS)
    return {
        "epochs": int(run),
        "planned_epochs": None if planned is None else int(planned),
        "epoch_seconds": _metric(trial, sgn_budget.EPOCH_SECONDS),
        "train_cpu_seconds": _metric(trial, sgn_budget.TRAIN_CPU_SECONDS),
        "train_seconds": _metric(trial, sgn_budget.TRAIN_SECONDS),
        "budget_stopped": bool(_metric(trial, sgn_budget.STOPPED)),
    }


def trial_rows(tuner, hypermodel):
    """One dict per trial, best first: its number (`trial`, from 1, as in the
    log; see `trial_number`) and KerasTuner's `trial_id`, status, `default`
    (the base setting, the baseline), `continues` (the trial a Hyperband
    round continues, or None), score (`val_robust_accuracy` of the best
    epoch), `val_accuracy` of that epoch, epochs, the hyperparameter values and
    the trial's `TrainConfig` fields that the space sets; under a time budget
    also what the trial spent (`planned_epochs`, `epoch_seconds`,
    `train_cpu_seconds`, `train_seconds`, `budget_stopped`)."""
    oracle = tuner.oracle
    default = hypermodel.config_for(default_point(oracle.get_space()))
    rows = [_trial_row(trial, hypermodel, default) for trial in oracle.trials.values()]
    # Best robust accuracy first; ties go to the better clean accuracy.
    rows.sort(key=lambda r: (r[OBJECTIVE] is None, -(r[OBJECTIVE] or 0.0),
                             -(r["val_accuracy"] or 0.0), r["trial"]))
    return rows


def _flag_value(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    return str(value)


#: The search's budget, not the winner's recipe: a trial's epochs (--max_epochs)
#: and its training and validation subsets. Training the winner with them would
#: train it as briefly as a trial; without them train.py uses the dataset's recipe.
SEARCH_BUDGET_FIELDS = ("epochs", "n_train", "n_eval")


def recipe_flags(config, comment=None, exclude=()):
    """A flags file for `tools/train.py --flagfile=...`: one `--field=value` per
    line for every set recipe field of `config` (`TrainConfig.recipe()`; each
    is a train.py flag) not in `exclude`. The runtime fields
    (`keras_sgn.config.runtime_fields()`: where and how to run) are left out:
    append e.g. `--output_dir=...` after it."""
    lines = [f"# {line}" for line in (comment or "").splitlines()]
    lines += [f"--{name}={_flag_value(value)}"
              for name, value in flat_settings(config.recipe()).items()
              if value is not None and name not in exclude]
    return "\n".join(lines) + "\n"


def _budget_note(config):
    """The comment line naming the search-budget flags left out of a recipe."""
    left_out = [f"--{name}={_flag_value(getattr(config, name))}"
                for name in SEARCH_BUDGET_FIELDS if getattr(config, name) is not None]
    return ("" if not left_out else "\nLeft out, the search's budget (train.py then uses the "
            f"dataset recipe's): {' '.join(left_out)}.")


def noise_note(rows, n_val):
    """A warning when the winner's lead over the runner-up is within sampling
    noise: under two standard errors of an accuracy measured on `n_val` images
    (sqrt(p(1-p)/n)); '' otherwise, or with fewer than two completed trials."""
    scores = sorted((r[OBJECTIVE] for r in rows
                     if r["status"] == "COMPLETED" and r[OBJECTIVE] is not None), reverse=True)
    if len(scores) < 2 or not n_val:
        return ""
    best, second = scores[0], scores[1]
    error = math.sqrt(max(best * (1 - best), 1e-12) / n_val)
    if best - second >= 2 * error:
        return ""
    images = round((best - second) * n_val)
    return (f"The winner leads the runner-up by {images} of {n_val} validation images "
            f"({best:.4f} vs {second:.4f}), within two standard errors "
            f"(+-{2 * error:.4f}) of an accuracy on {n_val} images: the ranking is noise at "
            "this size. Retrain the top trials with more validation images (--n_eval) or "
            "seeds before choosing.")


def _best_summary(best, best_config, hypermodel, completed, source, recipe_path):
    budget = ({} if hypermodel.time_budget_minutes is None else
              {"time_budget_minutes": hypermodel.time_budget_minutes,
               **{k: best.get(k) for k in ("epochs", "planned_epochs", "train_cpu_seconds",
                                           "train_seconds")}})
    return {
        "objective": OBJECTIVE,
        "direction": "max",
        "score": best[OBJECTIVE],
        "val_accuracy": best["val_accuracy"],
        "trial": best["trial"],
        "trial_id": best["trial_id"],
        "best_epoch": best["best_epoch"],
        "hyperparameters": best["hyperparameters"],
        "train_config": best_config.to_dict(),
        "model_kwargs": hypermodel.model_kwargs,
        "trials_completed": len(completed),
        "search": source,
        "recipe": recipe_path,
        **budget,
    }


def _write_recipes(paths, best, best_config, hypermodel, source, noise):
    note = ("\nNot in the recipe (no train.py flag): model_kwargs "
            f"{hypermodel.model_kwargs}." if hypermodel.model_kwargs else "")
    note += _budget_note(best_config) + (f"\n{noise}" if noise else "")
    atomic_write_text(paths["best_recipe.flags"], recipe_flags(best_config, comment=(
        f"Winner of the {source}: trial {best['trial']}, {OBJECTIVE}="
        f"{best[OBJECTIVE]:.4f} (best epoch {best['best_epoch']} of {best['epochs']}).\n"
        f"Train it: python tools/train.py --flagfile={paths['best_recipe.flags']} "
        f"--output_dir=runs/best{note}"), exclude=SEARCH_BUDGET_FIELDS))
    atomic_write_text(paths["default_recipe.flags"], recipe_flags(
        hypermodel.config_for(hypermodel.default_values()), comment=(
            "The base setting of the search (the feedback defaults), to compare with the "
            f"winner.\nTrain it: python tools/train.py --flagfile="
            f"{paths['default_recipe.flags']} --output_dir=runs/default{note}"),
        exclude=SEARCH_BUDGET_FIELDS))


def validation_size(hypermodel):
    """The number of validation images a trial's objective is measured on."""
    n_val = hypermodel.info.num_examples["validation"]
    return min(n_val, hypermodel.config.n_eval) if hypermodel.config.n_eval else n_val


def _budget_markdown(hypermodel):
    if hypermodel.time_budget_minutes is None:
        return ""
    return (f" Every trial had the same training time, {hypermodel.time_budget_minutes:g} "
            "min of CPU time (validation excluded): its epochs = the budget / its own "
            "measured epoch time, its learning-rate schedule over them, a safety stop at "
            f"{sgn_budget.OVERRUN:g}x the budget; `train s` is its measured training CPU "
            "seconds.")


def _results_markdown(source, table, hypermodel, noise):
    config = hypermodel.config
    return (f"# {source}\n\nObjective: {OBJECTIVE} (PGD-{config.eval_steps}, "
            f"eps={config.epsilon:g} {config.norm}, on {validation_size(hypermodel)} fixed "
            "validation images), maximised; each trial's best epoch (best/trained epochs). "
            "Trials are numbered from 1 in start order, as in the log and the plot; `default` "
            "marks the base setting (the baseline the others have to beat)."
            f"{_budget_markdown(hypermodel)}\n\n"
            f"{table}\n" + (f"\n**Noise:** {noise}\n" if noise else ""))


def write_outputs(tuner, hypermodel, output_dir, tuner_name=None):
    """Write the search's results into `output_dir`:

    * `best_hyperparameters.json`: the winner's values, score, trial and config;
    * `best_recipe.flags`: train the winner with
      `python tools/train.py --flagfile=OUTPUT_DIR/best_recipe.flags --output_dir=...`;
    * `default_recipe.flags`: the base config's own setting, to compare;
    * `trials.json` and `results.md`: every trial (the table);
    * `trials_objective.png`: the objective of each trial.

    Returns `{"rows", "table", "best", "best_config", "paths", "noise"}` (`noise`:
    `noise_note`'s warning, or '').
    """
    rows = trial_rows(tuner, hypermodel)
    completed = [r for r in rows if r["status"] == "COMPLETED" and r[OBJECTIVE] is not None]
    if not completed:
        raise RuntimeError(f"No trial of {tuner.project_dir} completed; see the trial "
                           "messages in its trial_*/trial.json files.")
    best = completed[0]
    config = hypermodel.config
    best_config = hypermodel.config_for(best["hyperparameters"])
    os.makedirs(output_dir, exist_ok=True)
    paths = {name: os.path.join(output_dir, name) for name in OUTPUT_FILES}
    source = f"{tuner_name or type(tuner.oracle).__name__} search in {tuner.project_dir}"
    atomic_write_json(paths["best_hyperparameters.json"], _best_summary(
        best, best_config, hypermodel, completed, source, paths["best_recipe.flags"]))
    noise = noise_note(rows, validation_size(hypermodel))
    _write_recipes(paths, best, best_config, hypermodel, source, noise)
    atomic_write_json(paths["trials.json"], rows)
    table = format_table(rows, epsilon=config.epsilon)
    atomic_write_text(paths["results.md"], _results_markdown(source, table, hypermodel, noise))
    plot_trials(rows, paths["trials_objective.png"],
                title=f"{config.dataset} / {config.model}: {len(completed)} trials")
    return {"rows": rows, "table": table, "best": best, "best_config": best_config,
            "paths": paths, "noise": noise}


def load_best(path):
    """The contents of a `best_hyperparameters.json`."""
    with open(path) as f:
        return json.load(f)
