"""The options that belong to a training method, declared as data.

`keras_sgn.config.TrainConfig` holds what every run shares (dataset, model, threat model,
schedule...). A setting that only some methods take (Free-AT's replays, TRADES' beta, the
self-gradient loss weight...) is declared here once, with `declare`:

```python
from keras_sgn import method_options

method_options.declare(
    "warmup_share", type=float, default=0.1, methods=("my-method",),
    help="Share of the epochs trained clean before the attack starts.")
```

From that declaration `tools/train.py` gets a flag `--warmup_share` (its help names the
methods that take it), `TrainConfig(method="my-method", warmup_share=0.3)` keeps the value
in `TrainConfig.options`, fills the default when it is not given, and refuses it for a
method that does not take it; `keras_sgn.methods.registry.options_from_run` passes it to
the method's constructor as the argument `argument` (default: the option's name), and the
constructor validates the value. A new method that takes an option already declared (a new
self-gradient variant taking `clean_weight`) says so with `take`.

Importing this module imports no TensorFlow: the tools make their flags (and answer
`--help`) from it. Declare options before the tools define their flags (at import time of
the module that registers the method).
"""

import dataclasses
import keyword

from keras_sgn import names
from keras_sgn.errors import ArgumentError
from keras_sgn.registry import close_matches

_TYPES = (str, int, float, bool)


@dataclasses.dataclass(frozen=True)
class MethodOption:
    """An option of one or more training methods.

    Attributes:
        field: its name in a run configuration, a flag and `TrainConfig.options`.
        argument: the method constructor's argument it sets.
        type: str, int, float or bool (the flag's type).
        default: the value a run of a method taking it uses when it is not given.
        help: one or two sentences (the flag's help).
        methods: the names of the methods that take it.
        choices: the allowed values, where they are a closed list.
    """

    field: str
    argument: str
    type: type
    default: object
    help: str
    methods: tuple
    choices: tuple = None


# field -> MethodOption, in declaration order (the order of the flags).
_DECLARED = {}


def declare(field, *, type, default, help, methods, argument=None, choices=None):
    """Declare the option `field` of the training methods `methods` (names; they
    need not be registered yet). Returns its `MethodOption`.

    Args:
        field: the option's name: a flag, a key of `TrainConfig.options`.
        type: str, int, float or bool.
        default: what a run of one of `methods` uses when the option is not given
            (the constructor's own default, so that declaring it changes no run).
        help: what it does, for the flag's help.
        methods: the names of the methods that take it.
        argument: the constructor argument it sets (default: `field`).
        choices: the allowed values, where they are a closed list.
    """
    if not (isinstance(field, str) and field.isidentifier() and not keyword.iskeyword(field)):
        raise ArgumentError(f"An option's field must be a Python identifier (it is a flag and a "
                            f"keyword argument). Received: field={field!r}.")
    if field in _DECLARED:
        raise ArgumentError(
            f"Option {field!r} is already declared (for {', '.join(_DECLARED[field].methods)}). "
            f"Received: declare({field!r}, ...) again. To let another method take it, call "
            f"method_options.take(method, {field!r}).")
    if type not in _TYPES:
        raise ArgumentError(f"Option {field!r}: type must be one of str, int, float, bool. "
                            f"Received: type={type!r}.")
    methods = (methods,) if isinstance(methods, str) else tuple(methods)
    if not methods or not all(isinstance(m, str) and m for m in methods):
        raise ArgumentError(f"Option {field!r}: methods must name at least one method. "
                            f"Received: methods={methods!r}.")
    if not isinstance(help, str) or not help.strip():
        raise ArgumentError(f"Option {field!r}: give a help text (its flag's). "
                            f"Received: help={help!r}.")
    option = MethodOption(field=field, argument=argument or field, type=type, default=default,
                          help=help, methods=methods,
                          choices=None if choices is None else tuple(choices))
    _DECLARED[field] = option
    return option


def take(method, *fields):
    """Let the method named `method` take the declared options `fields` too (e.g. a
    new self-gradient variant taking `clean_weight` and `second_order`)."""
    for field in fields:
        option = get(field)
        if method not in option.methods:
            _DECLARED[field] = dataclasses.replace(option, methods=option.methods + (method,))


def get(field):
    """The `MethodOption` declared as `field` (close matches in the error)."""
    if field not in _DECLARED:
        match = close_matches(field, _DECLARED, n=1, cutoff=0.6)
        hint = f" Did you mean {match[0]!r}?" if match else ""
        raise ArgumentError(f"No method option {field!r} is declared.{hint} Received: "
                            f"{field!r}. Declared: {', '.join(_DECLARED)}.")
    return _DECLARED[field]


def declared():
    """Every declared `MethodOption`, in declaration order."""
    return tuple(_DECLARED.values())


def options_of(*methods):
    """The `MethodOption`s that any of the methods named `methods` takes (None
    entries are skipped: a run without a finish method)."""
    return tuple(option for option in _DECLARED.values()
                 if any(method in option.methods for method in methods if method))


def arguments_of(method):
    """`{field: constructor argument}` of the options method `method` takes."""
    return {option.field: option.argument for option in options_of(method)}


def defaults_of(*methods):
    """`{field: default}` of the options the methods `methods` take."""
    return {option.field: option.default for option in options_of(*methods)}


def flag_help(option):
    """The help of `option`'s flag: its own text and the methods that take it."""
    return f"{option.help} Methods: {', '.join(option.methods)}."


# -- the options of the built-in methods ------------------------------------------------
# Their defaults are the constructors' own (keras_sgn/methods), so a run that leaves an
# option out trains as the method's constructor does.

#: The methods built on `SelfGradientTraining` (its loss weight and double backprop).
SELF_GRADIENT_METHODS = ("sgn", "sgn-pgd", "sgn-ramp", "sgn-align", "sgn-nfgsm", "sgn-memory",
                         "sgn-learned-start")

declare("clean_weight", type=float, default=0.0, methods=SELF_GRADIENT_METHODS,
        help="Weight of the self-gradient pass loss, in [0, 1].")
declare("second_order", type=bool, default=False, methods=SELF_GRADIENT_METHODS,
        help="Backpropagate through the deltas.")
declare("adversarial_fraction", type=float, default=1.0, methods=("pgd", "fast"),
        help="Share of each batch that is attacked (its first rows; the rest trains clean); "
             "Croce et al.'s anchor uses 0.5.")
declare("free_replays", argument="replays", type=int, default=8, methods=("free", "sgn-reuse"),
        help="Replays m of each batch (updates per batch).")
declare("trades_beta", type=float, default=6.0, methods=("trades",),
        help="Weight of TRADES' KL (robustness) term.")
declare("memory_decay", type=float, default=1.0, methods=("sgn-memory",),
        help="Weight in [0, 1] of each example's perturbation of the previous epoch in its "
             "next start (the rest is a fresh random start; 0 is sgn).")
declare("memory_reset_every", type=int, default=0, methods=("sgn-memory",),
        help="Forget each example's perturbation every N epochs (0: never).")
declare("generator_width", type=int, default=8, methods=("sgn-learned-start",),
        help="Channels of the hidden layers of the generator that proposes the start.")
declare("generator_learning_rate", type=float, default=1e-3, methods=("sgn-learned-start",),
        help="Adam learning rate of the generator's ascent.")
declare("generator_input", type=str, default="sign", methods=("sgn-learned-start",),
        choices=names.GENERATOR_INPUTS,
        help="What the generator sees besides the image: the sign of its input gradient, the "
             "gradient scaled to a largest magnitude of 1, or none (saves a pass).")
declare("ramp", type=str, default="up", methods=("sgn-ramp",), choices=("up", "down"),
        help="Direction of the hidden-site strength schedule.")
declare("ramp_steps", type=int, default=1000, methods=("sgn-ramp",),
        help="Optimizer steps of the hidden-site strength ramp.")
declare("align_weight", type=float, default=0.2, methods=("sgn-align",),
        help="Weight of the GradAlign term.")
declare("noise_scale", type=float, default=2.0, methods=("sgn-nfgsm",),
        help="N-FGSM's noise radius as a multiple of epsilon.")
