"""Presentation: Markdown tables, headless plots, model cards.

A leaf of the house: domain modules (evaluation, hub, tuning, experiments)
compute numbers and hand them here to be shown; nothing here computes a metric.
"""

from keras_sgn.reporting.adversarial_examples import (
    adversarial_examples_figure,
    class_name,
    plot_adversarial_examples,
)
from keras_sgn.reporting.plots import new_figure, save_figure
from keras_sgn.reporting.robustness_report import accuracy_vs_epsilon_figure, software_line
from keras_sgn.reporting.tables import markdown_table

__all__ = ["accuracy_vs_epsilon_figure", "adversarial_examples_figure",
           "class_name", "markdown_table", "new_figure", "plot_adversarial_examples",
           "save_figure", "software_line"]
