"""KerasTuner search over the self-gradient feedback hyperparameters.

The search maximises `val_robust_accuracy`: PGD (`eval_steps` steps, step
epsilon/4, random start, BatchNorm in inference mode) on a fixed validation
subset (the first `n_eval` images of the dataset's `validation` split, which is
disjoint from `train` and from `test`). A trial's score is its best epoch, as
`tools/train.py` keeps its best epoch by the same number.

What is searched (DESIGN section 2), and how a `space` entry is written:

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

Distributed tuning uses KerasTuner's own environment variables: run the same
program once with `KERASTUNER_TUNER_ID=chief` (it only serves the oracle) and
once per worker with `KERASTUNER_TUNER_ID=tuner0, tuner1, ...`, all with the
same `KERASTUNER_ORACLE_IP` / `KERASTUNER_ORACLE_PORT` and the same
`directory` (shared storage: Hyperband continues trials from their checkpoints).
"""

import contextlib
import dataclasses
import json
import math
import os

import keras
import keras_tuner
import tensorflow as tf

from keras_sgn import data as sgn_data
from keras_sgn import layers as sgn_layers
from keras_sgn import models as sgn_models
from keras_sgn import training
from keras_sgn.io_utils import atomic_write_json, atomic_write_text

OBJECTIVE = "val_robust_accuracy"
TUNERS = ("hyperband", "bayesian", "random")
TUNABLE = ("sites", "beta", "normalization", "input_step", "clean_weight", "second_order",
           "learning_rate", "weight_decay")
METHODS = ("sgn", "sgn-pgd")
INPUT_SITE = "input"
BETA_PREFIX = "beta_"
# TrainConfig fields left out of a recipe: where and how a run executes, not what it trains.
RECIPE_EXCLUDE = ("output_dir", "verbose", "data_dir", "strategy", "jit_compile")
_BOOL = {"true": True, "false": False, "1": True, "0": False, "yes": True, "no": False}


def objective():
    """The objective every tuner maximises."""
    return keras_tuner.Objective(OBJECTIVE, direction="max")


def site_choices(site_names):
    """Default `sites` choices for a network whose sites are `site_names`
    (input first): the input alone (FGSM-RS), the input plus each hidden site,
    and all sites (the `"default"` of the model builders)."""
    names = list(site_names)
    hidden = [s for s in names if s != INPUT_SITE]
    choices = [INPUT_SITE] + [f"{INPUT_SITE},{s}" for s in hidden]
    if len(hidden) > 1:
        choices.append(",".join(names))
    return choices


def default_space(config, site_names):
    """The default search space for a resolved `TrainConfig` (see the module docstring)."""
    steps = [0.5, 0.75, 1.0, 1.25] if config.method == "sgn" else [0.1, 0.25, 0.5]
    return {
        "sites": site_choices(site_names),
        "beta": (1e-3, 1e-1),
        "normalization": ["l2_relative", "sign"],
        "input_step": steps,
        "clean_weight": [0.0, 0.1, 0.25, 0.5],
        "second_order": [False, True],
        "learning_rate": (config.learning_rate / 5, config.learning_rate * 5),
        "weight_decay": [0.0, 1e-4, 5e-4, 1e-3],
    }


# --------------------------------------------------------------------------
# Space specs from strings (the command line)
# --------------------------------------------------------------------------


def _typed(name, text):
    text = text.strip()
    if name in ("sites", "normalization"):
        return text
    if name == "second_order":
        if text.lower() not in _BOOL:
            raise ValueError(f"second_order must be true or false, got {text!r}.")
        return _BOOL[text.lower()]
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"{name} must be a number, got {text!r}.") from None


def parse_spec(name, text):
    """One space entry from a string: `a|b|c` choices, `low:high` a range, else a
    fixed value. `beta` may also be per site: `stage1=0.02,stage2=0.005`
    (returned as `{"beta_stage1": 0.02, ...}`)."""
    text = str(text).strip()
    if name == "beta" and "=" in text:
        return {BETA_PREFIX + site: float(value)
                for site, value in training.parse_beta(text).items()}
    if "|" in text:
        return {name: [_typed(name, part) for part in text.split("|")]}
    if ":" in text and name not in ("sites", "normalization"):
        low, high = text.split(":", 1)
        return {name: (_typed(name, low), _typed(name, high))}
    return {name: _typed(name, text)}


def parse_space(text):
    """A space from `name=spec;name=spec` (see `parse_spec`), e.g.
    `"beta=0.001:0.05;normalization=l2_relative;sites=input|input,stage1"`."""
    space = {}
    for item in (text or "").split(";"):
        if not item.strip():
            continue
        if "=" not in item:
            raise ValueError(f"space: expected name=spec, got {item.strip()!r}.")
        name, spec = item.split("=", 1)
        space.update(parse_spec(name.strip(), spec))
    return space


def space_from_strings(space="", **entries):
    """A space from the command line: `space` as for `parse_space`, then one
    string per name (`sites="input|input,stage1"`, `beta="0.001:0.05"`,
    `normalization="sign"`...; None or "" leaves the name to `space`/the default)."""
    result = parse_space(space)
    for name, text in entries.items():
        if name not in TUNABLE:
            raise ValueError(f"unknown tunable {name!r}; valid names: {list(TUNABLE)}.")
        if text is not None and str(text).strip():
            result.update(parse_spec(name, text))
    return result


# --------------------------------------------------------------------------
# The hypermodel
# --------------------------------------------------------------------------


def _canonical_sites(sites, site_names):
    """A `sites` value as the comma list of the selected names, in network order."""
    resolved = sgn_models.resolve_sites(training.parse_sites(sites), 0.0,
                                        len(site_names) - 1)
    return ",".join(resolved)


class SGNHyperModel(keras_tuner.HyperModel):
    """Builds and trains one self-gradient network per trial.

    Args:
        config: the base `keras_sgn.training.TrainConfig` (dataset, model,
            method `sgn` or `sgn-pgd`, epsilon, batch size, schedule...). Its
            `epochs` is the epoch budget of a trial (Hyperband's `max_epochs`);
            the learning-rate schedule always spans that many epochs, so a
            trial is the start of the run `tools/train.py` would make.
        space: `{name: spec}` overriding entries of `default_space` (a list:
            choices; `(low, high)`: a range, log-uniform if low > 0; a value:
            fixed). Names: `TUNABLE` and `beta_<site>`.
        model_kwargs: extra builder arguments (e.g. `width=8` for a tiny
            `sgn_small_cnn` in tests). `tools/train.py` has no flag for them,
            so they do not reach the recipe.
        train_data, validation_data: datasets to use instead of loading
            `config.dataset` (`n_train` / `n_eval` first images).
        name, tunable: as for `keras_tuner.HyperModel`.
    """

    def __init__(self, config=None, space=None, model_kwargs=None, train_data=None,
                 validation_data=None, name=None, tunable=True):
        super().__init__(name=name, tunable=tunable)
        config = (config or training.TrainConfig()).resolved()
        if config.method not in METHODS:
            raise ValueError(f"tuning searches self-gradient feedback: method must be one of "
                             f"{METHODS}, got {config.method!r}.")
        self.config = config
        self.info = sgn_data.info(config.dataset)
        self.model_kwargs = dict(model_kwargs or {})
        self._train_data = train_data
        self._validation_data = validation_data
        self._steps_per_epoch = None
        probe = self._build_model(config, sites="default")
        self.site_names = tuple(layer.name[len(sgn_models.SITE_PREFIX):]
                                for layer in sgn_layers.sites_of(probe))
        del probe
        self.space = self._check_space({**default_space(config, self.site_names),
                                        **dict(space or {})})

    # -- the space ----------------------------------------------------------
    @property
    def hidden_sites(self):
        return tuple(s for s in self.site_names if s != INPUT_SITE)

    def _check_space(self, space):
        valid = set(TUNABLE) | {BETA_PREFIX + s for s in self.hidden_sites}
        unknown = sorted(set(space) - valid)
        if unknown:
            raise ValueError(f"space: unknown name(s) {unknown}; valid names: {sorted(valid)}.")
        checked = {}
        for name, spec in space.items():
            if isinstance(spec, list) and not spec:
                raise ValueError(f"space: {name} has no choices.")
            if isinstance(spec, tuple):
                if name in ("sites", "normalization", "second_order"):
                    raise ValueError(f"space: {name} takes choices (a list), not a range.")
                if len(spec) != 2 or not spec[0] < spec[1]:
                    raise ValueError(f"space: a range for {name} is (low, high) with "
                                     f"low < high, got {spec!r}.")
            values = spec if isinstance(spec, (list, tuple)) else [spec]
            if name == "sites":
                values = [_canonical_sites(v, self.site_names) for v in values]
                spec = values if isinstance(spec, list) else values[0]
                if not all(values):
                    raise ValueError("space: sites must select at least one site (a "
                                     f"network without sites has no feedback), got {spec!r}.")
            for value in values:
                self._check_value(name, value)
            if name not in ("sites", "normalization", "second_order"):  # 0 and 0.1: one type
                spec = (type(spec)(float(v) for v in spec) if isinstance(spec, (list, tuple))
                        else float(spec))
            checked[name] = spec
        return checked

    def _check_value(self, name, value):
        def fail(what):
            raise ValueError(f"space: {name} {what}, got {value!r}.")

        if name == "normalization" and value not in sgn_layers.NORMALIZATIONS:
            fail(f"must be one of {sgn_layers.NORMALIZATIONS}")
        if name == "second_order" and not isinstance(value, bool):
            fail("must be True or False")
        if name in ("sites", "normalization", "second_order"):
            return
        if isinstance(value, bool) or not isinstance(value, (int, float)) \
                or not math.isfinite(value):
            fail("must be a finite number")
        if name == "clean_weight" and not 0.0 <= value <= 1.0:
            fail("must be in [0, 1]")
        if name in ("learning_rate", "input_step") and not value > 0:
            fail("must be > 0")
        if (name == "weight_decay" or name.startswith("beta")) and not value >= 0:
            fail("must be >= 0")

    def _spec(self, name):
        if name.startswith(BETA_PREFIX) and name not in self.space:
            return self.space["beta"]
        return self.space[name]

    def default_values(self):
        """The value of each hyperparameter in the base config (the search's
        "default" point), before clipping to the space."""
        config = self.config
        beta = training.parse_beta(config.beta)
        values = {
            "sites": _canonical_sites(config.sites, self.site_names),
            "normalization": config.normalization,
            "input_step": (config.step_size / config.epsilon
                           if config.step_size is not None and config.epsilon > 0
                           else (1.25 if config.method == "sgn" else 0.25)),
            "clean_weight": config.clean_weight,
            "second_order": config.second_order,
            "learning_rate": config.learning_rate,
            "weight_decay": config.weight_decay,
        }
        for site in self.hidden_sites:
            values[BETA_PREFIX + site] = (beta.get(site, sgn_models.DEFAULT_BETA)
                                          if isinstance(beta, dict) else float(beta))
        return values

    def _define(self, hp, name, default, parent=None):
        """Register `name` on `hp` from its spec; None when inactive."""
        spec = self._spec(name)
        scope = (hp.conditional_scope("sites", parent) if parent is not None
                 else contextlib.nullcontext())
        with scope:
            if isinstance(spec, list):
                if len(spec) == 1:
                    return hp.Fixed(name, spec[0])
                if sorted(spec) == [False, True] and all(isinstance(v, bool) for v in spec):
                    return hp.Boolean(name, default=bool(default))
                return hp.Choice(name, spec, default=default if default in spec else spec[0])
            if isinstance(spec, tuple):
                low, high = float(spec[0]), float(spec[1])
                return hp.Float(name, low, high, sampling="log" if low > 0 else "linear",
                                default=min(max(float(default), low), high))
            return hp.Fixed(name, spec)

    def declare(self, hp):
        """Register the space on `hp`; return `{name: value}` of the active ones."""
        defaults = self.default_values()
        sites_spec = self.space["sites"]
        choices = sites_spec if isinstance(sites_spec, list) else [sites_spec]
        values = {"sites": self._define(hp, "sites", defaults["sites"])}

        def parent(condition):
            selected = [c for c in choices if condition(c.split(","))]
            if len(selected) == len(choices):
                return None, True
            return selected, bool(selected)

        dependants = [("input_step", lambda s: INPUT_SITE in s)]
        dependants += [("normalization", lambda s: any(x != INPUT_SITE for x in s)),
                       ("second_order", lambda s: any(x != INPUT_SITE for x in s))]
        dependants += [(BETA_PREFIX + site, lambda s, site=site: site in s)
                       for site in self.hidden_sites]
        for name, condition in dependants:
            scope, used = parent(condition)
            if used:
                values[name] = self._define(hp, name, defaults[name], scope)
        for name in ("clean_weight", "learning_rate", "weight_decay"):
            values[name] = self._define(hp, name, defaults[name])
        return {k: v for k, v in values.items() if v is not None}

    def config_for(self, values):
        """The `TrainConfig` of a trial from its hyperparameter values (a dict
        or `keras_tuner.HyperParameters`; `tuner/...` entries are ignored)."""
        if isinstance(values, keras_tuner.HyperParameters):
            values = values.values
        values = {k: v for k, v in values.items() if not k.startswith("tuner/")}
        config = self.config
        sites = values.get("sites", _canonical_sites(config.sites, self.site_names))
        selected = [s for s in sites.split(",") if s]
        hidden = [s for s in selected if s != INPUT_SITE]
        beta = config.beta if "=" not in str(config.beta) else repr(sgn_models.DEFAULT_BETA)
        if hidden:
            betas = self.default_values()
            beta = ",".join(f"{s}={float(values.get(BETA_PREFIX + s, betas[BETA_PREFIX + s]))!r}"
                            for s in hidden)
        changes = dict(sites=sites, beta=beta)
        if "input_step" in values:
            changes["step_size"] = float(values["input_step"]) * config.epsilon
        for name in ("normalization", "clean_weight", "second_order", "learning_rate",
                     "weight_decay"):
            if name in values:
                changes[name] = values[name]
        for name in ("clean_weight", "learning_rate", "weight_decay"):
            if name in changes:
                changes[name] = float(changes[name])
        if "second_order" in changes:
            changes["second_order"] = bool(changes["second_order"])
        return dataclasses.replace(config, **changes).resolved()

    # -- building and training ------------------------------------------------
    def _build_model(self, config, sites=None):
        if sites is not None:
            config = dataclasses.replace(config, sites=sites)
        # Exactly what train() builds (model_kwargs: builder-only options).
        return training.build_model(config, self.info, **(self.model_kwargs or {}))

    def train_data(self):
        """The training split as `tools/train.py` reads it (full batches only).
        Without `train_data=` each call builds a fresh pipeline, so every trial
        sees the same sequence of shuffled epochs as a train.py run."""
        if self._train_data is not None:
            return self._train_data
        c = self.config
        return sgn_data.load(c.dataset, "train", c.batch_size, data_dir=c.data_dir,
                             seed=c.seed, n_examples=c.n_train, drop_remainder=True)

    def validation_data(self):
        """The fixed validation subset the objective is measured on."""
        if self._validation_data is None:
            c = self.config
            self._validation_data = sgn_data.load(c.dataset, "validation", c.batch_size,
                                                  data_dir=c.data_dir, n_examples=c.n_eval)
        return self._validation_data

    def steps_per_epoch(self):
        """Training steps per epoch, known without loading the data (a chief
        that only serves the oracle never loads it)."""
        if self._steps_per_epoch is None:
            if self._train_data is None:
                size = self.info.num_examples["train"]
                if self.config.n_train is not None:
                    size = min(size, self.config.n_train)
                steps = size // self.config.batch_size
            else:
                steps = int(self._train_data.cardinality())
                if steps < 0:
                    steps = sum(1 for _ in self._train_data)
            if steps < 1:
                raise ValueError(
                    f"Fewer training examples than one batch (batch_size="
                    f"{self.config.batch_size}, n_train={self.config.n_train}).")
            self._steps_per_epoch = steps
        return self._steps_per_epoch

    def build(self, hp):
        config = self.config_for(self.declare(hp))
        keras.utils.set_random_seed(config.seed)
        strategy = tf.distribute.get_strategy()
        training.check_global_batch_size(config.batch_size, strategy)
        model = self._build_model(config)
        if not model.built:  # subclassed backbones: create the weights (reloads need them)
            model(tf.zeros((1,) + tuple(self.info.image_shape)))
        # As train() compiles, so a trial (under a strategy too) trains like train.py.
        training.compile_for_training(model, config, self.steps_per_epoch(), strategy)
        # Built now, a Hyperband continuation also reloads its parent's optimizer state.
        model.optimizer.build(model.trainable_variables)
        return model

    def fit(self, hp, model, *args, **kwargs):
        """`model.fit` on the training data with the validation subset (unless
        given). A Hyperband continuation (`initial_epoch > 0`) resumes the
        learning-rate schedule where its parent trial stopped."""
        if not args and kwargs.get("x") is None:
            kwargs["x"] = self.train_data()
        if kwargs.get("validation_data") is None:
            kwargs["validation_data"] = self.validation_data()
        kwargs.setdefault("epochs", self.config.epochs)
        kwargs.setdefault("verbose", self.config.verbose)
        kwargs.setdefault("shuffle", False)  # keras_sgn.data shuffles the training split
        initial_epoch = int(kwargs.get("initial_epoch", 0) or 0)
        if initial_epoch:
            model.optimizer.iterations.assign(initial_epoch * self.steps_per_epoch())
        return model.fit(*args, **kwargs)


# --------------------------------------------------------------------------
# Tuners
# --------------------------------------------------------------------------


def default_point(space):
    """The values of the active hyperparameters of `space` (a
    `keras_tuner.HyperParameters`) at their defaults: the base setting."""
    hps = keras_tuner.HyperParameters()
    for hp in space.space:
        hps.merge([hp])
        if hps.is_active(hp):
            hps.values[hp.name] = hp.default
    return dict(hps.values)


def _default_first(oracle_class):
    """An oracle that runs the base configuration as its first trial, so the
    default setting is measured in the same search as the others."""

    class DefaultFirst(oracle_class):
        include_default = True

        def populate_space(self, trial_id):
            if self.include_default and not self.trials:
                return {"status": "RUNNING",
                        "values": default_point(self.hyperparameters)}
            return super().populate_space(trial_id)

    DefaultFirst.__name__ = f"DefaultFirst{oracle_class.__name__}"
    return DefaultFirst


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
        include_default: random and Bayesian: the first trial is the base
            config's own setting, the baseline the others must beat.
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
        raise ValueError(f"tuner must be one of {TUNERS}, got {tuner!r}.")
    if max_trials is not None and (int(max_trials) != max_trials or max_trials < 1):
        raise ValueError(f"max_trials must be an integer >= 1 (or None), got {max_trials}.")
    common = dict(hypermodel=hypermodel, directory=directory, project_name=project_name,
                  overwrite=overwrite, distribution_strategy=distribution_strategy,
                  executions_per_trial=executions_per_trial)
    if distribution_strategy is not None:
        training.check_global_batch_size(hypermodel.config.batch_size, distribution_strategy)
    oracle_args = dict(objective=objective(), seed=seed,
                       max_retries_per_trial=max_retries_per_trial,
                       max_consecutive_failed_trials=max_consecutive_failed_trials)
    if tuner == "hyperband":
        instance = keras_tuner.Hyperband(max_epochs=hypermodel.config.epochs, factor=factor,
                                         hyperband_iterations=hyperband_iterations,
                                         **oracle_args, **common)
        instance.oracle.max_trials = max_trials
    else:
        if tuner == "random":
            oracle_class = keras_tuner.oracles.RandomSearchOracle
            extra = {}
        else:
            oracle_class = keras_tuner.oracles.BayesianOptimizationOracle
            if num_initial_points is None:
                num_initial_points = max(3, (max_trials or 6) // 2)
            extra = dict(num_initial_points=num_initial_points)
        oracle = _default_first(oracle_class)(max_trials=max_trials, **oracle_args, **extra)
        oracle.include_default = bool(include_default)
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


# --------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------


def _metric(trial, name):
    """A trial's `name` metric at its best epoch (KerasTuner records the best epoch's)."""
    if not trial.metrics.exists(name):
        return None
    value = trial.metrics.get_last_value(name)
    return None if value is None else float(value)


def trial_rows(tuner, hypermodel):
    """One dict per trial, best first: id, status, score (`val_robust_accuracy`
    of the best epoch), `val_accuracy` of that epoch, epochs, the hyperparameter
    values and the trial's `TrainConfig` fields that the space sets."""
    oracle = tuner.oracle
    default = hypermodel.config_for(default_point(oracle.get_space()))
    rows = []
    for trial in oracle.trials.values():
        values = dict(trial.hyperparameters.values)
        config = hypermodel.config_for(values)
        initial_epoch = int(values.get("tuner/initial_epoch", 0))
        rows.append({
            "trial_id": trial.trial_id,
            "status": trial.status,
            "default": config == default,
            OBJECTIVE: float(trial.score) if trial.score is not None else None,
            "val_accuracy": _metric(trial, "val_accuracy"),
            "epochs": int(values.get("tuner/epochs", hypermodel.config.epochs)),
            "best_epoch": (initial_epoch + trial.best_step + 1
                           if trial.best_step is not None else None),
            "hyperparameters": values,
            "config": {k: getattr(config, k) for k in (
                "sites", "beta", "normalization", "step_size", "clean_weight",
                "second_order", "learning_rate", "weight_decay")},
        })
    # Best robust accuracy first; ties go to the better clean accuracy.
    rows.sort(key=lambda r: (r[OBJECTIVE] is None, -(r[OBJECTIVE] or 0.0),
                             -(r["val_accuracy"] or 0.0), int(r["trial_id"])))
    return rows


def _short(value):
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.3g}"
    return "" if value is None else str(value)


def format_table(rows, epsilon=None):
    """A markdown table of `trial_rows`."""
    header = ["trial", "val robust", "val clean", "epochs", "sites", "beta", "N",
              "alpha/eps", "clean_weight", "2nd order", "lr", "wd", "status"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        c = r["config"]
        hidden = ",".join(s for s in c["sites"].split(",") if s != INPUT_SITE)
        beta = ("—" if not hidden else
                ", ".join(f"{k.replace('stage', 's')}={float(v):.2g}"
                          for k, v in training.parse_beta(c["beta"]).items()))
        alpha = (c["step_size"] / epsilon if epsilon and c["step_size"] is not None else None)
        robust = r[OBJECTIVE]
        lines.append("| " + " | ".join([
            r["trial_id"] + (" (default)" if r["default"] else ""),
            f"{robust:.4f}" if robust is not None else "—",
            f"{r['val_accuracy']:.4f}" if r["val_accuracy"] is not None else "—",
            f"{r['best_epoch'] or '—'}/{r['epochs']}",
            c["sites"],
            beta,
            c["normalization"] if hidden else "—",
            _short(alpha) if INPUT_SITE in c["sites"].split(",") else "—",
            _short(c["clean_weight"]),
            _short(c["second_order"]) if hidden else "—",
            _short(c["learning_rate"]),
            _short(c["weight_decay"]),
            r["status"],
        ]) + " |")
    return "\n".join(lines)


def _flag_value(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def recipe_flags(config, comment=None):
    """A flags file for `tools/train.py --flagfile=...`: one `--field=value` per
    line for every set `TrainConfig` field (each is a train.py flag), except
    where/how to run (`RECIPE_EXCLUDE`); append e.g. `--output_dir=...` after it."""
    lines = [f"# {line}" for line in (comment or "").splitlines()]
    for field in dataclasses.fields(training.TrainConfig):
        value = getattr(config, field.name)
        if field.name in RECIPE_EXCLUDE or value is None:
            continue
        lines.append(f"--{field.name}={_flag_value(value)}")
    return "\n".join(lines) + "\n"


def plot_trials(rows, path, title=""):
    """Objective of each trial in start order, with the best so far."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ordered = sorted(rows, key=lambda r: int(r["trial_id"]))
    xs = list(range(1, len(ordered) + 1))
    ys = [r[OBJECTIVE] for r in ordered]
    fig, ax = plt.subplots(figsize=(7, 4))
    done = [(x, y) for x, y in zip(xs, ys) if y is not None]
    if done:
        ax.scatter([x for x, _ in done], [y for _, y in done], s=30, label="trial",
                   zorder=3)
        best, best_line = -math.inf, []
        for x, y in done:
            best = max(best, y)
            best_line.append(best)
        ax.step([x for x, _ in done], best_line, where="post", color="C1",
                label="best so far")
    defaults = [(x, r[OBJECTIVE]) for x, r in zip(xs, ordered)
                if r["default"] and r[OBJECTIVE] is not None]
    if defaults:
        ax.scatter([x for x, _ in defaults], [y for _, y in defaults], s=90,
                   facecolors="none", edgecolors="C2", label="default setting", zorder=4)
    ax.set_xlabel("trial (start order)")
    ax.set_ylabel(OBJECTIVE)
    ax.set_ylim(0, 1)
    ax.set_title(title)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_outputs(tuner, hypermodel, output_dir, tuner_name=None):
    """Write the search's results into `output_dir`:

    * `best_hyperparameters.json`: the winner's values, score, trial and config;
    * `best_recipe.flags`: train the winner with
      `python tools/train.py --flagfile=OUTPUT_DIR/best_recipe.flags --output_dir=...`;
    * `default_recipe.flags`: the base config's own setting, to compare;
    * `trials.json` and `results.md`: every trial (the table);
    * `trials_objective.png`: the objective of each trial.

    Returns `{"rows", "table", "best", "paths"}`.
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
    paths = {name: os.path.join(output_dir, name) for name in (
        "best_hyperparameters.json", "best_recipe.flags", "default_recipe.flags",
        "trials.json", "results.md", "trials_objective.png")}
    source = f"{tuner_name or type(tuner.oracle).__name__} search in {tuner.project_dir}"
    atomic_write_json(paths["best_hyperparameters.json"], {
        "objective": OBJECTIVE,
        "direction": "max",
        "score": best[OBJECTIVE],
        "val_accuracy": best["val_accuracy"],
        "trial_id": best["trial_id"],
        "best_epoch": best["best_epoch"],
        "hyperparameters": best["hyperparameters"],
        "train_config": dataclasses.asdict(best_config),
        "model_kwargs": hypermodel.model_kwargs,
        "trials_completed": len(completed),
        "search": source,
        "recipe": paths["best_recipe.flags"],
    })
    note = ("\nNot in the recipe (no train.py flag): model_kwargs "
            f"{hypermodel.model_kwargs}." if hypermodel.model_kwargs else "")
    atomic_write_text(paths["best_recipe.flags"], recipe_flags(best_config, comment=(
        f"Winner of the {source}: trial {best['trial_id']}, {OBJECTIVE}="
        f"{best[OBJECTIVE]:.4f} (best epoch {best['best_epoch']} of {best['epochs']}).\n"
        f"Train it: python tools/train.py --flagfile={paths['best_recipe.flags']} "
        f"--output_dir=runs/best{note}")))
    atomic_write_text(paths["default_recipe.flags"], recipe_flags(
        hypermodel.config_for(hypermodel.default_values()), comment=(
            "The base setting of the search (the feedback defaults), to compare with the "
            f"winner.\nTrain it: python tools/train.py --flagfile="
            f"{paths['default_recipe.flags']} --output_dir=runs/default{note}")))
    atomic_write_json(paths["trials.json"], rows)
    table = format_table(rows, epsilon=config.epsilon)
    n_val = hypermodel.info.num_examples["validation"]
    n_val = min(n_val, config.n_eval) if config.n_eval else n_val
    atomic_write_text(paths["results.md"], (
        f"# {source}\n\nObjective: {OBJECTIVE} (PGD-{config.eval_steps}, eps={config.epsilon:g}"
        f" {config.norm}, on {n_val} fixed validation images), maximised; each trial's "
        f"best epoch (best/trained epochs).\n\n{table}\n"))
    plot_trials(rows, paths["trials_objective.png"],
                title=f"{config.dataset} / {config.model}: {len(completed)} trials")
    return {"rows": rows, "table": table, "best": best, "best_config": best_config,
            "paths": paths}


def tune(config, space=None, tuner="hyperband", max_trials=10, directory="tuning",
         project_name=None, output_dir=None, overwrite=False, seed=1,
         distribution_strategy=None, factor=3, hyperband_iterations=1,
         num_initial_points=None, include_default=True, tensorboard=True,
         model_kwargs=None, verbose=1):
    """Run (or resume) a search and, unless this process is a distributed
    worker, write its results (`write_outputs`) to `output_dir`.

    `config.epochs` is the per-trial epoch budget (`max_epochs`); the project
    is `directory/project_name` (default `"{dataset}-{model}-{tuner}"`) and
    `output_dir` defaults to its `results` folder. See `SGNHyperModel` and
    `make_tuner` for the other arguments.

    Returns `write_outputs`'s dict plus `"role"`, or `{"role": "worker"}` on a
    worker (the chief holds the results).
    """
    hypermodel = SGNHyperModel(config, space=space, model_kwargs=model_kwargs)
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


def load_best(path):
    """The contents of a `best_hyperparameters.json`."""
    with open(path) as f:
        return json.load(f)
