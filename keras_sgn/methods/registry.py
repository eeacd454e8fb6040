"""The method registry: name -> class, and every question callers ask about a
method by name (its options in a run configuration, cost, compute budget,
default step), so no caller switches on method names."""

from keras_sgn import method_options
from keras_sgn.errors import ArgumentError
from keras_sgn.methods.adversarial import AdversarialTraining, Fast, Free, Standard, Trades
from keras_sgn.methods.base import TrainingMethod
from keras_sgn.methods.learned_start import SelfGradientLearnedStart
from keras_sgn.methods.memory import SelfGradientMemory
from keras_sgn.methods.self_gradient import SelfGradientPGD, SelfGradientTraining
from keras_sgn.methods.variants import (
    SelfGradientAlign,
    SelfGradientNoise,
    SelfGradientRamp,
    SelfGradientReuse,
)
from keras_sgn.registry import Registry

# name -> class; `get` refuses an unknown name listing close matches and the valid names.
METHODS = Registry("method", {
    "standard": Standard,
    "fast": Fast,
    "pgd": AdversarialTraining,
    "free": Free,
    "trades": Trades,
    "sgn": SelfGradientTraining,
    "sgn-pgd": SelfGradientPGD,
    # Variants of the reconstruction under study (docs/reproduce/fashion_mnist-variants).
    "sgn-reuse": SelfGradientReuse,
    "sgn-ramp": SelfGradientRamp,
    "sgn-align": SelfGradientAlign,
    "sgn-nfgsm": SelfGradientNoise,
    # Per-example perturbation memory across epochs.
    "sgn-memory": SelfGradientMemory,
    # A start proposed by a generator trained against the classifier.
    "sgn-learned-start": SelfGradientLearnedStart,
}, param="method")


def list_methods(variants=True):
    """Registered method names, sorted. `variants=False` leaves out the
    variants of the reconstruction under study (`TrainingMethod.variant`),
    keeping the methods of docs/guide.md's "Training methods"."""
    return sorted(name for name, cls in METHODS.items() if variants or not cls.variant)


def get(method, **kwargs):
    """A training method by name (`standard`, `fast`, `pgd`, `free`, `trades`,
    `sgn`, `sgn-pgd`, and the variants `sgn-reuse`, `sgn-ramp`, `sgn-align`,
    `sgn-nfgsm`), configured by `kwargs`; a `TrainingMethod` passes through.

    Example:

    ```python
    method = keras_sgn.methods.get("sgn", epsilon=8/255, clean_weight=0.2)
    ```
    """
    if isinstance(method, TrainingMethod):
        if kwargs:
            raise ArgumentError("Pass method options either in the TrainingMethod or as "
                                f"keyword arguments, not both (got {sorted(kwargs)}).")
        return method
    cls = METHODS.get(method)
    try:
        instance = cls(**kwargs)
    except TypeError as error:
        raise ArgumentError(f"Bad option for method {method!r}: {error}") from None
    instance.name = method
    return instance


def serialize(method):
    return {"name": method.name, "config": method.get_config()}


def deserialize(config):
    return get(config["name"], **config["config"])


def method_class(name):
    """The class registered under `name` (close matches in the error)."""
    return METHODS.get(name)


def run_options(name):
    """`{run-configuration field: constructor argument}` of every setting method
    `name` takes: the shared fields its class lists (`run_options`: epsilon,
    norm...) and the options declared for it in `keras_sgn.method_options`."""
    return {**method_class(name).run_options, **method_options.arguments_of(name)}


def options_from_run(name, values):
    """Constructor arguments of method `name` from run-configuration `values`
    (a mapping of fields and method options by name, such as
    `keras_sgn.config.flat_settings(config.to_dict())`): only the ones the
    method takes; `None` means the method's default."""
    return {arg: values[field] for field, arg in run_options(name).items()
            if field in values and values[field] is not None}


def expected_cost(name, **options):
    """Forward+backward passes per step relative to standard training."""
    return float(get(name, **options).cost)


def budget_epochs(name, epochs, **options):
    """Epochs that give method `name` the same compute budget as `epochs`
    epochs of the others (Free-AT replays each batch, so it trains epochs/m)."""
    return get(name, **options).budget_epochs(epochs)


def default_step_size(name, epsilon, **options):
    """The attack step the method uses when `step_size` is not given."""
    return get(name, epsilon=epsilon, **options).step_size
