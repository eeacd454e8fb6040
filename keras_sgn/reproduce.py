"""Kept for existing imports: the reproduction runner lives in
`keras_sgn.experiments.reproduce`."""

from keras_sgn.experiments.reproduce import *  # noqa: F403
from keras_sgn.experiments.reproduce import __all__  # noqa: F401
