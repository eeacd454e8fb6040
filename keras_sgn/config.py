"""The run configuration: `TrainConfig`, one typed field per setting of a training run.

Every field says once, in its metadata, what it is (`field_specs()` reads it):

- **group**: `data`, `model`, `method`, `evaluation` or `runtime` (how help and
  documentation are organised);
- **recipe or runtime**: a *recipe* field changes the trained model (the
  weights of `model.keras`, including which epoch is kept as the best); a
  *runtime* field only changes where and how the run executes and reports.
  The runtime fields are `data_dir`, `download`, `test_steps`, `test_restarts`,
  `n_test`, `test_order`,
  `allow_large_epsilon`, `strategy`, `tpu`, `jit_compile`, `output_dir`,
  `overwrite`, `backup_every_steps` and `verbose`. Decisions worth knowing:
  `strategy`/`tpu` are runtime because N replicas train like one replica at
  the same global batch (tests/test_distributed.py checks it), `jit_compile`
  because XLA compiles the same attack (same gradients to float tolerance); `seed`,
  `sync_batch_norm`, `mixed_precision` (numerics), `eval_steps` and `n_eval`
  (they choose the best epoch) are recipe; `test_steps`/`test_restarts` only
  change the final test report, so they are runtime;
- **resumable**: whether a rerun may change it and still resume the unfinished
  run in `output_dir/backup` (exactly the runtime fields);
- **help**: the one help text, from which `tools/flags.py` makes the flags;
- **choices**: the allowed values, where they are a closed list.

`recipe_fields()`, `runtime_fields()` and `resumable_fields()` list the names;
`TrainConfig.recipe()` gives the values of the recipe fields.

The fields are what every run shares. A setting only some methods take
(`free_replays`, `trades_beta`, `clean_weight`...) is no field: the methods
declare it in `keras_sgn.method_options`, and the field `options` (a recipe
field) holds the values of the run's method and finish method by name.
`resolved()` fills their declared defaults (so equal runs have equal configs)
and refuses an option neither takes. `from_dict` reads a `config.json` of the
earlier layout (each option a key of its own), and `saved_settings` puts a saved
one in today's form before a rerun compares itself with it.

Importing this module imports no TensorFlow (the choices come from `keras_sgn.names`), so
the tools' `--help` is quick; the checks import the parts they use when they run.

Settings that cannot give a usable model are refused by `validate()` with a
`ConfigError` naming the field (the tools print it as one line naming the flag):

- `epsilon=0` is the clean baseline of `method=standard` (valid end to end);
  the adversarial methods refuse it (their adversary would have nothing to do);
- an implausible threat radius (L-inf epsilon >= 0.5 on [0, 1] images, or an
  L2 radius as large as that L-inf ball's) needs `allow_large_epsilon=True`;
- a self-gradient method (`sgn`, `sgn-pgd`) needs feedback sites (`sites`).
"""

import contextlib
import dataclasses
import importlib
import math

from keras_sgn import method_options, names, recipes
from keras_sgn.errors import ArgumentError
from keras_sgn.registry import close_matches


def _part(name):
    """The part `name` of keras_sgn, imported on first use: the checks need it, the flags
    and `--help` of the tools (made from this module) do not, and it imports TensorFlow."""
    return importlib.import_module(f"keras_sgn.{name}")

GROUPS = ("data", "model", "method", "evaluation", "runtime")
STRATEGIES = ("auto", "default", "one_device", "mirrored", "multi_worker", "tpu")
SCHEDULES = ("constant", "piecewise", "cyclic", "cosine")
OPTIMIZERS = ("sgd", "adam")
_FOLLOWS_DATASET = " Default: follows --dataset (keras_sgn.recipes)."
# An L-inf radius this large (on images in [0, 1]) reaches mid-grey from any
# pixel: no classifier can be robust, so it is almost surely a unit mistake.
LARGE_LINF_EPSILON = 0.5
# At epsilon = 0 every attack step is projected back onto the image, so the step
# size has no effect; methods refuse a step of 0, so a saved model records this.
_STEP_SIZE_AT_EPSILON_ZERO = 1.0


class ConfigError(ArgumentError):
    """A `TrainConfig` setting that cannot be used; `field` names it (the tools
    name the flag of the same name)."""

    def __init__(self, field, message):
        super().__init__(message)
        self.field = field


@contextlib.contextmanager
def _about(field):
    """Turn a `ValueError` raised inside into a `ConfigError` naming `field`."""
    try:
        yield
    except ConfigError:
        raise
    except ValueError as error:
        raise ConfigError(field, str(error)) from error


def _field(default, group, help, recipe=True, choices=None, factory=False):
    """A dataclass field with its metadata. `choices` is a tuple or a function
    returning one (for registries that may grow after import); `factory`: `default`
    makes the default (a mutable one)."""
    metadata = {"group": group, "recipe": recipe, "resumable": not recipe, "help": help,
                "choices": choices}
    if factory:
        return dataclasses.field(default_factory=default, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def _default(field):
    """The default value of the dataclass field `field`."""
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return field.default


# Its own __init__: it also takes the declared method options by name.
@dataclasses.dataclass(init=False)
class TrainConfig:
    """Everything a training run needs. `None` fields follow the dataset recipe
    (`keras_sgn.recipes`) or the method's own default (`step_size`,
    `attack_steps`). The defaults are the CIFAR10 SGN ResNet-18 recipe.

    The fields are what every run shares; `options` holds the chosen method's
    own options (declared in `keras_sgn.method_options`), by name. They may be
    given as keyword arguments: `TrainConfig(method="free", free_replays=4)` is
    `TrainConfig(method="free", options={"free_replays": 4})`.
    """

    dataset: str = _field("cifar10", "data", "cifar10, cifar100, svhn_cropped, mnist, "
                          "fashion_mnist or digits (offline).")
    data_dir: str = _field(None, "data", "Folder of prepared tfds datasets (else "
                           "TFDS_DATA_DIR).", recipe=False)
    download: bool = _field(True, "data", "Download the dataset if it is not on this machine "
                            "(as tensorflow-datasets and keras.datasets do); --nodownload "
                            "never uses the network.", recipe=False)
    model: str = _field(None, "model", "Model name (keras_sgn.models.list_models())."
                        + _FOLLOWS_DATASET)
    method: str = _field("sgn", "method", "Training method.",
                         choices=names.METHODS)
    epochs: int = _field(None, "method", "Epochs." + _FOLLOWS_DATASET)
    batch_size: int = _field(None, "method", "GLOBAL batch size (split across replicas)."
                             + _FOLLOWS_DATASET)
    learning_rate: float = _field(None, "method", "Peak learning rate." + _FOLLOWS_DATASET)
    lr_schedule: str = _field(None, "method", "Learning-rate schedule." + _FOLLOWS_DATASET,
                              choices=SCHEDULES)
    lr_decay_at: str = _field("0.5,0.75", "method", "Fractions of the run at which "
                              "--lr_schedule=piecewise divides the learning rate by 10, e.g. "
                              "'0.89' (the anchor: epoch 90 of 100).")
    optimizer: str = _field(None, "method", "Optimizer." + _FOLLOWS_DATASET,
                            choices=OPTIMIZERS)
    weight_decay: float = _field(None, "method", "Weight decay." + _FOLLOWS_DATASET)
    epsilon: float = _field(None, "method", "Threat radius in pixel units (8/255 = 0.0314 "
                            "for CIFAR); 0 only with --method=standard (a clean baseline)."
                            + _FOLLOWS_DATASET)
    norm: str = _field("linf", "method", "Threat-model norm.", choices=names.NORMS)
    allow_large_epsilon: bool = _field(False, "method", "Train with an implausible threat "
                                       "radius (L-inf epsilon >= 0.5 on [0, 1] images, or an "
                                       "L2 radius as large), refused otherwise.", recipe=False)
    step_size: float = _field(None, "method", "Attack step; default: epsilon/4 for "
                              "PGD-style, 1.25 epsilon for fast/sgn.")
    attack_steps: int = _field(None, "method", "Steps of the training attack (pgd, trades, "
                               "sgn-pgd: 10).")
    # Feedback hyperparameters (docs/guide.md, "The self-gradient mechanism").
    sites: str = _field("default", "model", "Feedback sites: 'default', 'none' or a list "
                        "like 'input,stage1,stage2'.")
    beta: str = _field("0.01", "model", "Feedback strength: a number or "
                       "'stage1=0.05,stage2=0.1'.")
    normalization: str = _field("l2_relative", "model", "Normalisation N(g) of hidden-site "
                                "gradients.", choices=names.NORMALIZATIONS)
    feedback_at_inference: bool = _field(False, "model", "Research option: self-feedback at "
                                         "test time (evaluate it with gradient-free attacks "
                                         "too).")
    finish_method: str = _field(None, "method", "Cheap, then strong: train the last "
                                "--finish_fraction of the epochs with this method instead "
                                "(e.g. --method=sgn --finish_method=pgd --finish_attack_steps=3).",
                                choices=names.METHODS)
    finish_fraction: float = _field(0.2, "method", "Share of the epochs (at least the last one) "
                                    "trained with --finish_method.")
    finish_attack_steps: int = _field(None, "method", "Attack steps of --finish_method "
                                      "(default: its own).")
    options: dict = _field(dict, "method", "The options of --method (and of --finish_method) "
                           "by name, e.g. {'free_replays': 4}: each is declared for the methods "
                           "that take it in keras_sgn.method_options, and is a flag of its own.",
                           factory=True)
    # Validation (it picks the best epoch) and the final test.
    eval_steps: int = _field(10, "evaluation", "PGD steps of validation.")
    test_steps: int = _field(None, "evaluation", "Steps of each attack of the final test (the "
                             "'quick' suite, cascade, per-example worst case); default: the "
                             "suite's own.", recipe=False)
    test_restarts: int = _field(None, "evaluation", "Restarts of each attack of the final test "
                                "that has restarts; default: the suite's own.", recipe=False)
    n_train: int = _field(None, "data", "Use only the first N training examples.")
    n_eval: int = _field(None, "data", "Use only the first N validation/test examples.")
    n_test: int = _field(None, "evaluation", "Final test on the first N test images (default: "
                         "--n_eval's, else all).", recipe=False)
    test_order: str = _field("stored", "evaluation", "Which test images are 'the first N': "
                             "'stored' (tfds' order) or 'original' (the publication's file "
                             "order; mnist and fashion_mnist).", recipe=False,
                             choices=("stored", "original"))
    # Execution.
    strategy: str = _field("default", "runtime", "Distribution strategy: auto (best local "
                           "choice), default, one_device, mirrored (all local GPUs), "
                           "multi_worker (cluster from TF_CONFIG), tpu.", recipe=False,
                           choices=STRATEGIES)
    tpu: str = _field(None, "runtime", "TPU for --strategy=tpu (or auto): its name, 'local' "
                      "on a TPU VM, or grpc://host:8470.", recipe=False)
    seed: int = _field(0, "runtime", "Random seed.")
    jit_compile: bool = _field(False, "runtime", "XLA-compile the attacks (per replica).",
                               recipe=False)
    sync_batch_norm: bool = _field(True, "runtime", "With several replicas, BatchNorm "
                                   "statistics over the global batch (as with one replica) "
                                   "instead of per replica.")
    mixed_precision: bool = _field(False, "runtime", "mixed_float16 on GPU, mixed_bfloat16 "
                                   "elsewhere.")
    output_dir: str = _field("runs/sgn", "runtime", "Where the run writes its files (one run "
                             "at a time: a lock).", recipe=False)
    overwrite: bool = _field(False, "runtime", "Train afresh in an output_dir holding a "
                             "finished run or a run with other settings (its outputs move to "
                             "previous/<time>/). An unfinished run with the same settings is "
                             "resumed regardless.", recipe=False)
    backup_every_steps: int = _field(0, "runtime", "Also back up the training state every N "
                                     "steps (0: at every epoch end only).", recipe=False)
    verbose: int = _field(1, "runtime", "Keras verbosity (0 silent, 1 progress bar, 2 "
                          "lines).", recipe=False)

    def __init__(self, **values):
        fields = {field.name: field for field in dataclasses.fields(self)}
        options = dict(values.pop("options", None) or {})
        declared = {option.field for option in method_options.declared()}
        for name in [name for name in values if name not in fields and name in declared]:
            options[name] = values.pop(name)
        unknown = sorted(set(values) - set(fields))
        if unknown:
            raise TypeError(f"TrainConfig got unknown setting(s) {unknown}. "
                            f"{_unknown_hints(unknown, set(fields) | declared)}Valid: the "
                            "fields of keras_sgn.config.field_specs() and the method options "
                            "of keras_sgn.method_options.declared().")
        for name, field in fields.items():
            setattr(self, name, values[name] if name in values else _default(field))
        self.options = options

    def resolved(self):
        """A copy with dataset-dependent defaults filled in, and the declared
        defaults of the options the method (and finish method) takes, validated."""
        with _about("dataset"):
            if self.dataset not in recipes.DATASET_RECIPES:
                _part("data").info(self.dataset)  # raises the clear unknown-dataset error
            recipe = recipes.get_recipe(self.dataset)
        values = self.to_dict()
        for key in recipes.RECIPE_KEYS:
            if values[key] is None:
                values[key] = recipe[key]
        values["options"] = {**method_options.defaults_of(self.method, self.finish_method),
                             **self.options}
        config = TrainConfig(**values)
        config.validate()
        return config

    def validate(self):
        """Raise a `ConfigError` (a `ValueError`) naming the first bad field
        (call on a `resolved()` config: the dataset-dependent fields must be set):
        first `check_values()`, then what needs the registries of methods and models."""
        self.check_values()
        sgn_methods = _part("methods")
        with _about("method"):
            sgn_methods.registry.method_class(self.method)  # close matches in the error
        if self.finish_method is not None and self.finish_method not in \
                sgn_methods.registry.METHODS:
            raise ConfigError("finish_method", "finish_method must be one of "
                              f"{tuple(sgn_methods.list_methods())}. Received: "
                              f"{self.finish_method!r}.")
        self._check_options()
        with _about("model"):
            if self.model not in _part("models").list_models():
                _part("models").get(self.model)
        _check_epsilon_for_run(self)
        self.method_options()  # validates method arguments early
        with _about("sites"):
            check_feedback_sites(self.method, _part("models.sites").parse_sites(self.sites))
        with _about("beta"):
            _part("models.sites").parse_beta(self.beta)
        self.finish_options()

    def check_values(self):
        """Raise a `ConfigError` naming the first field whose value is bad on its own (a
        count, a rate, a fraction, epsilon, a closed choice), without the registries: this
        imports no TensorFlow, so the tools refuse such a flag within a second. Fields
        still unset (before `resolved()`) are skipped; `validate()` runs it too."""
        for spec in field_specs():
            value = getattr(self, spec.name)
            if spec.name in ("method", "finish_method"):
                continue  # the method registry (checked in validate) may grow after import
            if spec.choices is not None and value is not None and value not in spec.choices:
                raise ConfigError(spec.name, f"{spec.name} must be one of {spec.choices}. "
                                  f"Received: {value!r}.")
        if self.strategy == "tpu" and not self.tpu:
            raise ConfigError("tpu", "strategy 'tpu' needs --tpu: the TPU name, 'local' on a "
                              "TPU VM, or grpc://host:8470.")
        _check_integer("seed", self.seed, minimum=0, hint=" (a random seed)")
        _check_integer("backup_every_steps", self.backup_every_steps, minimum=0,
                       hint=" (0: at epoch ends only)")
        for name in ("epochs", "batch_size", "eval_steps", "test_steps", "test_restarts",
                     "attack_steps", "finish_attack_steps"):
            if getattr(self, name) is not None:
                _check_integer(name, getattr(self, name), minimum=1)
        for name, minimum in (("learning_rate", None), ("weight_decay", 0.0)):
            value = getattr(self, name)
            # inf passes `> 0` but makes every weight NaN at the first step.
            if value is not None and not (math.isfinite(value) and (
                    value > 0 if minimum is None else value >= minimum)):
                raise ConfigError(name, f"{name} must be a finite number "
                                  f"{'> 0' if minimum is None else '>= 0'}. Received: {value}.")
        for name in ("n_train", "n_eval", "n_test"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(name, f"{name} must be >= 1 (or unset for all). "
                                  f"Received: {value}.")
        if self.epsilon is not None:
            _check_epsilon_value(self)
        with _about("lr_decay_at"):
            parse_decay_fractions(self.lr_decay_at)
        if not 0 < self.finish_fraction < 1:
            raise ConfigError("finish_fraction", "finish_fraction must be in (0, 1): the share "
                              "of the epochs trained with --finish_method. Received: "
                              f"{self.finish_fraction!r}.")

    def _check_options(self):
        """Refuse an option that neither the method nor the finish method takes (it
        would be ignored) and an option value outside its choices."""
        taken = {option.field for option in
                 method_options.options_of(self.method, self.finish_method)}
        for field, value in self.options.items():
            if field not in taken:
                raise foreign_option_error(field, value, self.method, self.finish_method)
            choices = method_options.get(field).choices
            if choices is not None and value not in choices:
                raise ConfigError(field, f"{field} must be one of {choices}. "
                                  f"Received: {value!r}.")

    def finish_options(self):
        """`(method options, first epoch)` of `finish_method`, validated (None
        without one). It takes the run's threat model and its own default step."""
        if self.finish_method is None:
            return None
        sgn_methods = _part("methods")
        values = {**flat_settings(self.to_dict()), "attack_steps": self.finish_attack_steps,
                  "step_size": None}
        options = sgn_methods.registry.options_from_run(self.finish_method, values)
        with _about("finish_method"):
            sgn_methods.get(self.finish_method, **options)
        finishing = max(1, round(self.epochs * self.finish_fraction))
        return options, max(0, self.epochs - finishing)

    def method_options(self):
        """The constructor options of `self.method` this config sets (the
        registry decides which fields a method takes), validated."""
        sgn_methods = _part("methods")
        run_options = sgn_methods.registry.run_options(self.method)
        options = sgn_methods.registry.options_from_run(self.method,
                                                        flat_settings(self.to_dict()))
        if self.epsilon == 0 and self.step_size is None and "step_size" in run_options:
            options["step_size"] = _STEP_SIZE_AT_EPSILON_ZERO
        try:
            sgn_methods.get(self.method, **options)
        except ValueError as error:
            # Name the field whose method argument the message names.
            named = [field for field, argument in run_options.items()
                     if argument in str(error)]
            raise ConfigError((named or ["method"])[0], str(error)) from error
        return options

    def to_dict(self):
        """`{field: value}` of every field (JSON-ready: `config.json` of a run)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values):
        """The config of `values` (e.g. a run's `config.json`); fields not given
        keep their defaults, unknown keys are refused.

        A method option given as a key of its own (as `config.json` files written
        before `options` existed hold every one) moves into `options` if the
        method or the finish method takes it, and is dropped otherwise: such a
        run ignored it."""
        values = dict(values)
        known = {spec.name for spec in field_specs()}
        declared = {option.field for option in method_options.declared()}
        unknown = sorted(set(values) - known - declared)
        if unknown:
            raise ArgumentError(f"TrainConfig has no field(s) {unknown}. "
                                f"{_unknown_hints(unknown, known | declared)}"
                                f"Valid fields: {', '.join(sorted(known))}; method options: "
                                f"{', '.join(sorted(declared))}.")
        flat = {key: values.pop(key) for key in sorted(set(values) - known)}
        method = values.get("method", cls.method)
        taken = {option.field for option in
                 method_options.options_of(method, values.get("finish_method"))}
        options = {**{key: value for key, value in flat.items() if key in taken},
                   **(values.pop("options", None) or {})}
        return cls(**values, options=options)

    def recipe(self):
        """`{field: value}` of the recipe fields (what makes the trained model);
        call it on a `resolved()` config to have the dataset defaults filled in."""
        return {name: getattr(self, name) for name in recipe_fields()}


def _unknown_hints(unknown, valid):
    """`'epoch': did you mean 'epochs'? ` for the names of `unknown` close to one of `valid`."""
    close = {key: close_matches(key, valid, n=1, cutoff=0.6) for key in unknown}
    hints = "; ".join(f"{key!r}: did you mean {match[0]!r}?"
                      for key, match in close.items() if match)
    return f"{hints} " if hints else ""


def foreign_option_error(field, value, method, finish_method=None, flags=False):
    """The `ConfigError` refusing the method option `field` (set to `value`) in a
    run of `method` (and `finish_method`) that does not take it: it would be
    ignored. `flags`: name the command-line flags."""
    try:
        taking = method_options.get(field).methods
    except ArgumentError as error:
        return ConfigError(field, str(error))
    dash = "--" if flags else ""
    run = f"method {method!r}" + (f" or finish method {finish_method!r}"
                                  if finish_method else "")
    return ConfigError(field, (
        f"{dash}{field} is an option of {', '.join(taking)} only, not of {run} (it would "
        f"be ignored). Received: {dash}{field}={value!r} with {dash}method={method}"
        f"{f' {dash}finish_method={finish_method}' if finish_method else ''}. Remove "
        f"{dash}{field}, or train with a method that takes it ({dash}method={taking[0]})."))


def flat_settings(values):
    """`values` (a `TrainConfig.to_dict()` or a run's `config.json`) with each
    method option as a setting of its own, as the flags name them:
    `{..., "method": "free", "free_replays": 4}`."""
    flat = {key: value for key, value in values.items() if key != "options"}
    flat.update(values.get("options") or {})
    return flat


def saved_settings(saved):
    """A run's saved `config.json` (a dict) in the form of `TrainConfig.to_dict()`,
    to compare with a new run's: method options that older files hold as keys of
    their own move into `options` (`TrainConfig.from_dict`), and an option
    declared for the method since then counts at its default (what the run used).
    Only the keys `saved` has are kept (a field added later is not compared), and
    a dict that is no `TrainConfig` (a damaged file) is returned as it is."""
    try:
        config = TrainConfig.from_dict(saved)
    except (ValueError, TypeError, AttributeError):
        return saved
    values = config.to_dict()
    values["options"] = {**method_options.defaults_of(config.method, config.finish_method),
                         **config.options}
    return {key: value for key, value in values.items() if key in saved or key == "options"}


def parse_decay_fractions(text):
    """`"0.5,0.75"` -> `(0.5, 0.75)`: increasing fractions of the run in (0, 1)."""
    try:
        fractions = tuple(float(part) for part in str(text).split(","))
    except ValueError:
        fractions = ()
    if (not fractions or any(not 0 < f < 1 for f in fractions)
            or list(fractions) != sorted(set(fractions))):
        raise ArgumentError(
            "lr_decay_at must be increasing fractions of the run in (0, 1), comma-separated, "
            f"e.g. '0.5,0.75' or '0.89'. Received: {text!r}.")
    return fractions


def _check_integer(name, value, minimum, hint=""):
    if int(value) != value or value < minimum:
        raise ConfigError(name, f"{name} must be an integer >= {minimum}{hint}. "
                          f"Received: {value}.")


def _epsilon_number(config):
    try:
        return float(config.epsilon)
    except (TypeError, ValueError):
        return math.nan


def _check_epsilon_value(config):
    """epsilon: finite, >= 0, and (L-inf) plausible unless forced: no registry needed."""
    epsilon = _epsilon_number(config)
    if not (math.isfinite(epsilon) and epsilon >= 0):
        raise ConfigError("epsilon", "epsilon must be a finite number >= 0 (the threat radius "
                          f"in pixel units, e.g. 8/255 = 0.0314). Received: {config.epsilon!r}.")
    if config.norm == "linf" and not config.allow_large_epsilon:
        _refuse_large_epsilon(config, epsilon, LARGE_LINF_EPSILON,
                              "it reaches mid-grey from any image")


def _check_epsilon_for_run(config):
    """epsilon 0 only without an adversary; an L2 radius plausible for the dataset's images
    unless forced (these need the method registry and the dataset's image shape)."""
    sgn_methods = _part("methods")
    epsilon = _epsilon_number(config)
    if epsilon == 0:
        options = {k: v for k, v in sgn_methods.registry.options_from_run(
            config.method, flat_settings(config.to_dict())).items() if k != "step_size"}
        cost = sgn_methods.registry.expected_cost(config.method, **{**options, "epsilon": 0.0})
        if cost > 1:
            raise ConfigError("epsilon", (
                f"epsilon=0 leaves method {config.method!r} no adversary: it would pay {cost:g} "
                "forward+backward passes per step for clean training. Received: epsilon=0. "
                "For a clean baseline use --method=standard --epsilon=0; for adversarial "
                "training give --epsilon > 0."))
    if config.allow_large_epsilon or config.norm == "linf":
        return
    values = math.prod(_part("data").info(config.dataset).image_shape)
    _refuse_large_epsilon(
        config, epsilon, LARGE_LINF_EPSILON * math.sqrt(values),
        f"the {config.norm} size of an L-inf radius of {LARGE_LINF_EPSILON} over "
        f"{values} pixel values, which reaches mid-grey from any image")


def _refuse_large_epsilon(config, epsilon, limit, why):
    if epsilon >= limit:
        raise ConfigError("epsilon", (
            f"epsilon={epsilon:g} is implausible for {config.norm} on images in [0, 1] (>= "
            f"{limit:.3g}: {why}, so no model can be robust). Received: epsilon={epsilon!r}. "
            "epsilon is in units of [0, 1] pixel values (8/255 = 0.0314, not 8); pass "
            "--allow_large_epsilon to train with it anyway."))


def check_feedback_sites(method, sites):
    """Refuse a self-gradient method without feedback sites (`sites`: the
    selected site names): it would be standard training under another name."""
    sgn_methods = _part("methods")
    if not sites and issubclass(sgn_methods.registry.method_class(method),
                                sgn_methods.SelfGradientTraining):
        raise ArgumentError(
            f"method {method!r} trains through feedback sites, but sites=none selects none "
            "(it would be standard training labelled as self-gradient). Received: "
            "sites=none. Give --sites=default (or a list like 'input,stage1'), or use "
            "--method=standard or --method=fast for a baseline without sites.")


@dataclasses.dataclass(frozen=True)
class FieldSpec:
    """What `TrainConfig`'s field `name` is (see the module documentation)."""

    name: str
    type: type
    default: object
    group: str
    recipe: bool
    resumable: bool
    help: str
    choices: tuple = None


def field_specs(group=None):
    """The `FieldSpec` of every `TrainConfig` field in declaration order (only
    those of `group`, one of `GROUPS`, if given)."""
    if group is not None and group not in GROUPS:
        raise ArgumentError(f"group must be one of {GROUPS}. Received: {group!r}.")
    specs = []
    for field in dataclasses.fields(TrainConfig):
        meta = field.metadata
        choices = meta["choices"]() if callable(meta["choices"]) else meta["choices"]
        specs.append(FieldSpec(
            name=field.name, type=field.type, default=_default(field), group=meta["group"],
            recipe=meta["recipe"], resumable=meta["resumable"], help=meta["help"],
            choices=None if choices is None else tuple(choices)))
    return tuple(s for s in specs if group is None or s.group == group)


def recipe_fields():
    """Names of the fields that change the trained model."""
    return tuple(spec.name for spec in field_specs() if spec.recipe)


def runtime_fields():
    """Names of the fields that only change where and how a run executes and reports."""
    return tuple(spec.name for spec in field_specs() if not spec.recipe)


def resumable_fields():
    """Names of the fields a rerun may change and still resume an unfinished run."""
    return tuple(spec.name for spec in field_specs() if spec.resumable)
