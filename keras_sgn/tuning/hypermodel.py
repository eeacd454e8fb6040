"""`SGNHyperModel`: one self-gradient network per trial, built, compiled and
trained exactly as `tools/train.py` would run the trial's `TrainConfig`."""

import contextlib
import dataclasses
import json

import keras
import keras_tuner
import tensorflow as tf

from keras_sgn import data as sgn_data
from keras_sgn import layers as sgn_layers
from keras_sgn import methods as sgn_methods
from keras_sgn import models as sgn_models
from keras_sgn import training
from keras_sgn.errors import ArgumentError
from keras_sgn.models.sites import parse_beta
from keras_sgn.tuning import budget as sgn_budget
from keras_sgn.tuning import space as sgn_space
from keras_sgn.tuning.space import BETA_PREFIX, INPUT_SITE

OBJECTIVE = "val_robust_accuracy"
# The methods whose feedback hyperparameters there are to search.
# The variants under study (sgn-ramp, ...) are left out: their own options are not searched.
METHODS = tuple(name for name in sgn_methods.list_methods(variants=False)
                if issubclass(sgn_methods.registry.method_class(name),
                              sgn_methods.SelfGradientTraining))


def objective():
    """The objective every tuner maximises."""
    return keras_tuner.Objective(OBJECTIVE, direction="max")


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
        time_budget_minutes: None (default): every trial trains `config.epochs`.
            A number > 0: every trial trains for that many minutes of training
            CPU time instead (`keras_sgn.tuning.budget`): its epochs are
            `max(1, floor(budget / its measured epoch time))`, its schedule spans
            them, and it stops if its clock passes the budget by 25%;
            `config.epochs` is then unused. Not with Hyperband.
        name, tunable: as for `keras_tuner.HyperModel`.
    """

    def __init__(self, config=None, space=None, model_kwargs=None, train_data=None,
                 validation_data=None, name=None, tunable=True, time_budget_minutes=None):
        super().__init__(name=name, tunable=tunable)
        # Checked first: a bad budget is refused before anything is built.
        self.time_budget_minutes = sgn_budget.check_time_budget(time_budget_minutes)
        self._plans = {}  # trial values -> (epochs, measured epoch seconds)
        config = (config or training.TrainConfig()).resolved()
        if config.method not in METHODS:
            raise ArgumentError(f"Tuning searches self-gradient feedback: method must be one of "
                                f"{METHODS}. Received: {config.method!r}.")
        self.config = config
        self.info = sgn_data.info(config.dataset)
        self.model_kwargs = dict(model_kwargs or {})
        self._train_data = train_data
        self._validation_data = validation_data
        self._steps_per_epoch = None
        probe = self._build_model(config, sites="default")
        self.site_names = tuple(layer.name[len(sgn_models.sites.SITE_PREFIX):]
                                for layer in sgn_layers.sites_of(probe))
        del probe
        self.space = sgn_space.check_space(
            {**sgn_space.default_space(config, self.site_names), **dict(space or {})},
            self.site_names)

    # -- the space ----------------------------------------------------------
    @property
    def hidden_sites(self):
        return tuple(s for s in self.site_names if s != INPUT_SITE)

    def _spec(self, name):
        if name.startswith(BETA_PREFIX) and name not in self.space:
            return self.space["beta"]
        return self.space[name]

    def default_values(self):
        """The value of each hyperparameter in the base config (the search's
        "default" point), before clipping to the space."""
        config = self.config
        beta = parse_beta(config.beta)
        values = {
            "sites": sgn_space.canonical_sites(config.sites, self.site_names),
            "normalization": config.normalization,
            "input_step": (config.step_size / config.epsilon
                           if config.step_size is not None and config.epsilon > 0
                           else sgn_space.default_input_step(config.method)),
            "clean_weight": config.options["clean_weight"],
            "second_order": config.options["second_order"],
            "learning_rate": config.learning_rate,
            "weight_decay": config.weight_decay,
        }
        for site in self.hidden_sites:
            values[BETA_PREFIX + site] = (beta.get(site, sgn_models.sites.DEFAULT_BETA)
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
        sites = values.get("sites", sgn_space.canonical_sites(config.sites, self.site_names))
        hidden = [s for s in sites.split(",") if s and s != INPUT_SITE]
        beta = config.beta if "=" not in str(config.beta) else repr(sgn_models.sites.DEFAULT_BETA)
        if hidden:
            betas = self.default_values()
            beta = ",".join(f"{s}={float(values.get(BETA_PREFIX + s, betas[BETA_PREFIX + s]))!r}"
                            for s in hidden)
        changes = dict(sites=sites, beta=beta, options=dict(config.options))
        if "input_step" in values:
            changes["step_size"] = float(values["input_step"]) * config.epsilon
        if "normalization" in values:
            changes["normalization"] = values["normalization"]
        if "second_order" in values:
            changes["options"]["second_order"] = bool(values["second_order"])
        if "clean_weight" in values:
            changes["options"]["clean_weight"] = float(values["clean_weight"])
        for name in ("learning_rate", "weight_decay"):
            if name in values:
                changes[name] = float(values[name])
        return dataclasses.replace(config, **changes).resolved()

    # -- building and training ------------------------------------------------
    def _build_model(self, config, sites=None):
        if sites is not None:
            config = dataclasses.replace(config, sites=sites)
        # Exactly what train() builds (model_kwargs: builder-only options).
        return training.optimization.build_model(config, self.info, **(self.model_kwargs or {}))

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
                raise ArgumentError(
                    f"Fewer training examples than one batch (batch_size="
                    f"{self.config.batch_size}, n_train={self.config.n_train}). "
                    "Lower batch_size or raise n_train.")
            self._steps_per_epoch = steps
        return self._steps_per_epoch

    @property
    def time_budget_seconds(self):
        return None if self.time_budget_minutes is None else self.time_budget_minutes * 60.0

    @staticmethod
    def _trial_key(hp):
        values = hp.values if isinstance(hp, keras_tuner.HyperParameters) else hp
        return json.dumps({k: v for k, v in values.items() if not k.startswith("tuner/")},
                          sort_keys=True, default=str)

    def _compiled(self, config):
        keras.utils.set_random_seed(config.seed)
        strategy = tf.distribute.get_strategy()
        training.distribute.check_global_batch_size(config.batch_size, strategy)
        model = self._build_model(config)
        if not model.built:  # subclassed backbones: create the weights (reloads need them)
            model(tf.zeros((1,) + tuple(self.info.image_shape)))
        # As train() compiles, so a trial (under a strategy too) trains like train.py.
        training.optimization.compile_for_training(model, config, self.steps_per_epoch(), strategy)
        return model

    def plan(self, hp, config=None):
        """`(epochs, epoch_seconds)` of a trial under the time budget: its epoch
        time measured on a copy of its compiled model (once per setting), and the
        epochs that fit the budget."""
        key = self._trial_key(hp)
        if key not in self._plans:
            config = config or self.config_for(hp)
            timed = self._compiled(config)
            seconds = sgn_budget.measure_epoch_seconds(timed, self.train_data(),
                                                       self.steps_per_epoch())
            del timed
            self._plans[key] = (sgn_budget.budget_epochs(self.time_budget_seconds, seconds),
                                seconds)
        return self._plans[key]

    def build(self, hp):
        config = self.config_for(self.declare(hp))
        if self.time_budget_minutes is not None:
            # Timed before the trial's own model: its seed and data order stay train.py's.
            epochs, _ = self.plan(hp, config)
            config = dataclasses.replace(config, epochs=epochs)
        model = self._compiled(config)
        # Built now, a Hyperband continuation also reloads its parent's optimizer state.
        model.optimizer.build(model.trainable_variables)
        return model

    def fit(self, hp, model, *args, **kwargs):
        """`model.fit` on the training data with the validation subset (unless
        given). A Hyperband continuation (`initial_epoch > 0`) resumes the
        learning-rate schedule where its parent trial stopped. Under a time
        budget the trial trains its planned epochs (`plan`), with a
        `budget.BudgetStop`, and its history carries the budget metrics."""
        if not args and kwargs.get("x") is None:
            kwargs["x"] = self.train_data()
        if kwargs.get("validation_data") is None:
            kwargs["validation_data"] = self.validation_data()
        clock = None
        if self.time_budget_minutes is not None:
            epochs, epoch_seconds = self.plan(hp)
            kwargs["epochs"] = epochs
            clock = sgn_budget.BudgetStop(sgn_budget.OVERRUN * self.time_budget_seconds)
            # First, so the tuner's callbacks see its train_seconds in the logs.
            kwargs["callbacks"] = [clock, *(kwargs.get("callbacks") or [])]
        kwargs.setdefault("epochs", self.config.epochs)
        kwargs.setdefault("verbose", self.config.verbose)
        kwargs.setdefault("shuffle", False)  # keras_sgn.data shuffles the training split
        initial_epoch = int(kwargs.get("initial_epoch", 0) or 0)
        if initial_epoch:
            model.optimizer.iterations.assign(initial_epoch * self.steps_per_epoch())
        history = model.fit(*args, **kwargs)
        if clock is not None:
            sgn_budget.record(history, epochs, epoch_seconds, clock)
        return history
