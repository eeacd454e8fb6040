"""Presentation: Markdown tables, headless plots, model cards.

A leaf of the house: domain modules (evaluation, hub, tuning, experiments)
compute numbers and hand them here to be shown; nothing here computes a metric.
"""

from keras_sgn.reporting.plots import new_figure, save_figure
from keras_sgn.reporting.tables import markdown_table

__all__ = ["markdown_table", "new_figure", "save_figure"]
