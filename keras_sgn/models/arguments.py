"""Checks of the arguments every backbone builder takes.

Each check returns the cleaned value or raises a `ValueError` that names the
parameter, shows what it received and says what would be accepted.
"""

import math
import numbers

from keras_sgn.errors import ArgumentError
from keras_sgn.layers import NORMALIZATIONS


def _is_int(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_int(value, param, minimum=1):
    """An integer >= `minimum` (booleans are refused)."""
    if not _is_int(value) or value < minimum:
        raise ArgumentError(
            f"{param} must be an integer >= {minimum}. Received: {param}={value!r}."
        )
    return int(value)


def check_int_sequence(values, param, minimum=1):
    """A non-empty sequence of integers >= `minimum`, returned as a tuple."""
    try:
        items = tuple(values)
    except TypeError:
        items = ()
    if not items or not all(_is_int(v) and v >= minimum for v in items):
        raise ArgumentError(
            f"{param} must be a non-empty sequence of integers >= {minimum}, e.g. "
            f"(64, 128). Received: {param}={values!r}."
        )
    return tuple(int(v) for v in items)


def check_bool(value, param):
    if not isinstance(value, bool):
        raise ArgumentError(f"{param} must be True or False. Received: {param}={value!r}.")
    return value


def check_rate(value, param):
    """A rate in [0, 1), such as a dropout rate."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0.0 <= value < 1.0:
        raise ArgumentError(
            f"{param} must be a number in [0, 1) (0 turns it off). Received: {param}={value!r}."
        )
    return float(value)


def check_num_classes(num_classes):
    if not _is_int(num_classes) or num_classes < 2:
        raise ArgumentError(
            f"num_classes must be an integer >= 2. Received: num_classes={num_classes!r}."
        )
    return int(num_classes)


def check_input_shape(input_shape, min_size=1):
    """`(height, width, channels)` of positive integers, height and width >= `min_size`."""
    try:
        shape = tuple(input_shape)
    except TypeError:
        shape = None
    if shape is None or len(shape) != 3 or not all(_is_int(d) and d >= 1 for d in shape):
        raise ArgumentError(
            "input_shape must be (height, width, channels) with three positive "
            f"integers (channels last, batch excluded). Received: input_shape={input_shape!r}."
        )
    shape = tuple(int(d) for d in shape)
    if min(shape[:2]) < min_size:
        raise ArgumentError(
            f"input_shape: height and width must be >= {min_size} for this network. "
            f"Received: input_shape={shape}. Resize the images or pick another model."
        )
    return shape


def _as_floats(value, param):
    if isinstance(value, numbers.Real):
        value = (value,)
    try:
        values = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        raise ArgumentError(
            f"{param} must be a number or a sequence of numbers. Received: {param}={value!r}."
        ) from None
    if not values or not all(math.isfinite(v) for v in values):
        raise ArgumentError(
            f"{param} must be a non-empty sequence of finite numbers. Received: "
            f"{param}={value!r}."
        )
    return values


def check_mean_std(mean, std, channels):
    """Per-channel input statistics: 1 or `channels` values each, std > 0."""
    mean = _as_floats(mean, "mean")
    std = _as_floats(std, "std")
    allowed = "1 value" if channels == 1 else f"1 or {channels} values (one per input channel)"
    for param, values in (("mean", mean), ("std", std)):
        if len(values) not in (1, channels):
            raise ArgumentError(
                f"{param} must have {allowed} for {channels}-channel images. "
                f"Received: {param}={values} ({len(values)} values)."
            )
    if len(mean) != len(std):
        raise ArgumentError(
            "mean and std must have the same length. Received: "
            f"mean={mean} and std={std}."
        )
    if not all(s > 0 for s in std):
        raise ArgumentError(f"std values must be > 0. Received: std={std}.")
    return mean, std


def check_normalization(normalization):
    if normalization not in NORMALIZATIONS:
        raise ArgumentError(
            f"normalization must be one of {NORMALIZATIONS}. "
            f"Received: normalization={normalization!r}."
        )
    return normalization


def check_name(name):
    if not isinstance(name, str) or not name:
        raise ArgumentError(f"name must be a non-empty string. Received: name={name!r}.")
    return name
