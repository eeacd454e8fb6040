"""Presentation: Markdown tables, headless plots, model cards.

A leaf of the house: domain modules (evaluation, hub, tuning, experiments)
compute numbers and hand them here to be shown; nothing here computes a metric.
"""

# Loaded so that `reporting.<module>.<name>` works after importing the package.
from keras_sgn.reporting import plots, tables  # noqa: F401
from keras_sgn.reporting.adversarial_examples import (
    adversarial_examples_figure,
    plot_adversarial_examples,
)
from keras_sgn.reporting.robustness_report import accuracy_vs_epsilon_figure

__all__ = [
    "accuracy_vs_epsilon_figure",
    "adversarial_examples_figure",
    "plot_adversarial_examples",
]
