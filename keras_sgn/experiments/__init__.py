"""Experiments that measure the project's claims: `benchmark` (the cost of
each training method's step) and `reproduce` (every method, several seeds, one
budget: the seed paper's speed and robustness claims, measured on validation).

`reproduce` is made of `runs` (one run: training with per-epoch validation,
its best model, its test evaluations; resumable files), `analysis` (time to
target, speed-up, collapse), `tables` (results.md), `plots` (the figures) and
`progress` (the per-epoch progress lines with ETA).

They sit on top of training, evaluation, methods, models and data, and show
their numbers through `keras_sgn.reporting`.
"""

from keras_sgn.experiments import budgets, reproduce

__all__ = [
    "budgets",
    "reproduce",
]
