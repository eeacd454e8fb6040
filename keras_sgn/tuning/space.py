"""The search space: its names, its defaults, its checks, and how it is written
as strings on the command line (`a|b` choices, `low:high` ranges).

A space is a dict `{name: spec}`; a spec is a list (choices), a `(low, high)`
tuple (a range, log-uniform when `low > 0`) or a single value (fixed).
"""

import math

import keras_tuner

from keras_sgn import layers as sgn_layers
from keras_sgn import methods as sgn_methods
from keras_sgn import models as sgn_models
from keras_sgn.errors import ArgumentError
from keras_sgn.models.sites import parse_beta, parse_sites

TUNABLE = ("sites", "beta", "normalization", "input_step", "clean_weight", "second_order",
           "learning_rate", "weight_decay")
INPUT_SITE = "input"
BETA_PREFIX = "beta_"
# Hyperparameters whose values are names or flags: choices only, never a range.
CATEGORICAL = ("sites", "normalization", "second_order")
_BOOL = {"true": True, "false": False, "1": True, "0": False, "yes": True, "no": False}


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
    """The default search space for a resolved `TrainConfig` (see the
    `keras_sgn.tuning` docstring)."""
    # A single-step input attack wants a step near epsilon, a multi-step one a fraction of it.
    multi_step = sgn_methods.registry.method_class(config.method).multi_step
    steps = [0.1, 0.25, 0.5] if multi_step else [0.5, 0.75, 1.0, 1.25]
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


def default_input_step(method):
    """The input step of `method` when `step_size` is unset, as a fraction of epsilon."""
    return sgn_methods.registry.default_step_size(method, 1.0)


def default_point(space):
    """The values of the active hyperparameters of `space` (a
    `keras_tuner.HyperParameters`) at their defaults: the base setting."""
    hps = keras_tuner.HyperParameters()
    for hp in space.space:
        hps.merge([hp])
        if hps.is_active(hp):
            hps.values[hp.name] = hp.default
    return dict(hps.values)


# --------------------------------------------------------------------------
# Space specs from strings (the command line)
# --------------------------------------------------------------------------


def _typed(name, text):
    text = text.strip()
    if name in ("sites", "normalization"):
        return text
    if name == "second_order":
        if text.lower() not in _BOOL:
            raise ArgumentError(f"second_order must be true or false. Received: {text!r}.")
        return _BOOL[text.lower()]
    try:
        return float(text)
    except ValueError:
        raise ArgumentError(f"{name} must be a number. Received: {text!r}.") from None


def parse_spec(name, text):
    """One space entry from a string: `a|b|c` choices, `low:high` a range, else a
    fixed value. `beta` may also be per site: `stage1=0.02,stage2=0.005`
    (returned as `{"beta_stage1": 0.02, ...}`)."""
    text = str(text).strip()
    if name == "beta" and "=" in text:
        return {BETA_PREFIX + site: float(value) for site, value in parse_beta(text).items()}
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
            raise ArgumentError(f"space: expected name=spec. Received: {item.strip()!r}.")
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
            raise ArgumentError(f"Unknown tunable {name!r}; valid names: {list(TUNABLE)}.")
        if text is not None and str(text).strip():
            result.update(parse_spec(name, text))
    return result


# --------------------------------------------------------------------------
# Checking a space against a network's sites
# --------------------------------------------------------------------------


def canonical_sites(sites, site_names):
    """A `sites` value as the comma list of the selected names, in network order."""
    resolved = sgn_models.sites.resolve_sites(parse_sites(sites), 0.0, len(site_names) - 1)
    return ",".join(resolved)


def check_space(space, site_names):
    """`space` checked against a network with sites `site_names` (input first):
    `sites` written canonically, numbers as floats. Raises `ValueError` naming
    the entry at fault."""
    hidden = [s for s in site_names if s != INPUT_SITE]
    valid = set(TUNABLE) | {BETA_PREFIX + s for s in hidden}
    unknown = sorted(set(space) - valid)
    if unknown:
        raise ArgumentError(f"space: unknown name(s) {unknown}; valid names: {sorted(valid)}.")
    return {name: _checked_spec(name, spec, site_names) for name, spec in space.items()}


def _checked_spec(name, spec, site_names):
    if isinstance(spec, list) and not spec:
        raise ArgumentError(f"space: {name} has no choices.")
    if isinstance(spec, tuple):
        if name in CATEGORICAL:
            raise ArgumentError(f"space: {name} takes choices (a list), not a range. "
                                f"Received: {spec!r}.")
        if len(spec) != 2 or not spec[0] < spec[1]:
            raise ArgumentError(f"space: a range for {name} is (low, high) with "
                                f"low < high. Received: {spec!r}.")
    values = spec if isinstance(spec, (list, tuple)) else [spec]
    if name == "sites":
        values = [canonical_sites(v, site_names) for v in values]
        spec = values if isinstance(spec, list) else values[0]
        if not all(values):
            raise ArgumentError("space: sites must select at least one site (a network "
                                f"without sites has no feedback). Received: {spec!r}.")
    for value in values:
        check_value(name, value)
    if name in CATEGORICAL:
        return spec
    # 0 and 0.1 in one list: one type for KerasTuner.
    if isinstance(spec, (list, tuple)):
        return type(spec)(float(v) for v in spec)
    return float(spec)


def check_value(name, value):
    """Raise `ValueError` unless `value` is a valid value of hyperparameter `name`."""

    def fail(what):
        raise ArgumentError(f"space: {name} {what}. Received: {value!r}.")

    if name == "normalization" and value not in sgn_layers.NORMALIZATIONS:
        fail(f"must be one of {sgn_layers.NORMALIZATIONS}")
    if name == "second_order" and not isinstance(value, bool):
        fail("must be True or False")
    if name in CATEGORICAL:
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
