"""KerasTuner search over the self-gradient feedback hyperparameters.

The search maximises `val_robust_accuracy`: PGD (`eval_steps` steps, step
epsilon/4, random start, BatchNorm in inference mode) on a fixed validation
subset (the first `n_eval` images of the dataset's `validation` split, which is
disjoint from `train` and from `test`). A trial's score is its best epoch, as
`tools/train.py` keeps its best epoch by the same number.

What is searched (the feedback hyperparameters), and how a `space` entry is written:

| name            | default space                            | meaning                      |
|-----------------|------------------------------------------|------------------------------|
| `sites`         | input; input + each hidden site; all     | feedback sites (comma lists) |
| `beta`          | `(1e-3, 1e-1)`, log-uniform              | beta of each selected site   |
| `beta_<site>`   | follows `beta`                           | beta of one site             |
| `normalization` | `["l2_relative", "sign"]`                | N(g) of the hidden sites     |
| `input_step`    | `[0.5, 0.75, 1.0, 1.25]` (`sgn`)         | input step, alpha / epsilon  |
| `clean_weight`  | `[0.0, 0.1, 0.25, 0.5]`                  | lambda (self-gradient loss)  |
| `second_order`  | `[False, True]`                          | backprop through the deltas  |
| `learning_rate` | recipe value / 5 .. x 5, log-uniform     | peak learning rate           |
| `weight_decay`  | `[0.0, 1e-4, 5e-4, 1e-3]`                | decoupled weight decay       |

A list is a set of choices, a `(low, high)` pair a range (log-uniform when
`low > 0`), a single value fixes the hyperparameter. `beta_<site>`,
`normalization`, `second_order` and `input_step` are conditional: they only
exist in trials whose `sites` use them. `raw` normalisation is not in the
default space: `beta * g` is tiny next to the activations, so the `beta` range
above would mean no feedback at all.

Every trial is a `keras_sgn.training.TrainConfig` (`SGNHyperModel.config_for`),
so the winner is written as a flags file that `tools/train.py --flagfile=...`
accepts as is (`recipe_flags`).

Example:

```python
from keras_sgn import training, tuning

config = training.TrainConfig(dataset="digits", epochs=10)
hypermodel = tuning.SGNHyperModel(config, space={"normalization": "l2_relative"})
tuner = tuning.make_tuner(hypermodel, "random", max_trials=8, directory="tuning",
                          project_name="digits")
tuning.search(tuner, verbose=2)   # resumes if tuning/digits already holds a search
rows = tuning.trial_rows(tuner, hypermodel)
print(tuning.format_table(rows))
tuning.write_outputs(tuner, hypermodel, "runs/tune-digits")
```

At a fixed training time instead of a fixed number of epochs
(`SGNHyperModel(config, time_budget_minutes=5)`, `tune(..., time_budget_minutes=5)`,
`tools/tune.py --time_budget_minutes=5`; random or Bayesian tuners): a configuration
slower per step (more feedback sites, `second_order`) would otherwise get more compute
than a cheap one, and the objective would reward cost, not the recipe. Each trial
first times a few training steps of its own compiled model (a discarded copy, after
a warm-up) and extrapolates its epoch time; it then trains
`max(1, floor(budget / epoch time))` epochs with its learning-rate schedule spread
over them, as the budgets study (`keras_sgn.experiments.budgets`) gives each method
its epochs; a safety stop ends it once its training CPU time passes the budget by
25%. The budget is training CPU time, validation excluded (minutes of one core when
the process is pinned to one). The trial table records each trial's epochs
(`best/run`, `of planned` if stopped) and its training CPU seconds (`train s`);
`trials.json` also its epoch time and wall seconds. Module `budget`.

Distributed tuning uses KerasTuner's own environment variables: run the same
program once with `KERASTUNER_TUNER_ID=chief` (it only serves the oracle) and
once per worker with `KERASTUNER_TUNER_ID=tuner0, tuner1, ...`, all with the
same `KERASTUNER_ORACLE_IP` / `KERASTUNER_ORACLE_PORT` and the same
`directory` (shared storage: Hyperband continues trials from their checkpoints).

Modules: `space` (the search space and its string form), `hypermodel`
(`SGNHyperModel`), `search` (tuners, `search`, `tune`), `results` (trial rows,
recipes, output files), `report` (the table and the plot), `budget` (trials at a
fixed training time).
"""

from keras_sgn.errors import require_extra as _require_extra

_require_extra("tune", "keras-tuner", "keras_tuner", "keras_sgn.tuning")

# Loaded so that `tuning.<module>.<name>` works after importing the package.
from keras_sgn.tuning import report  # noqa: F401
from keras_sgn.tuning.hypermodel import SGNHyperModel
from keras_sgn.tuning.results import load_best, write_outputs
from keras_sgn.tuning.search import TUNERS, make_tuner, search, tune
from keras_sgn.tuning.space import default_space, parse_space

__all__ = [
    "SGNHyperModel",
    "TUNERS",
    "tune",
    "search",
    "make_tuner",
    "default_space",
    "parse_space",
    "load_best",
    "write_outputs",
]
