"""Kept for existing imports: the benchmark lives in `keras_sgn.experiments.benchmark`."""

from keras_sgn.experiments.benchmark import *  # noqa: F403
from keras_sgn.experiments.benchmark import __all__  # noqa: F401
