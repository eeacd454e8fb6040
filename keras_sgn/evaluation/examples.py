"""A few adversarial examples of an evaluation, kept to be shown.

`evaluate_robustness(..., examples=AdversarialExamples(8))` fills the collector
while it runs: for each example the worst-case adversarial image the suite
found (the one that fooled the model, or the last attack's attempt if none
did) and both predictions. Memory stays bounded: at most `2 * n` images are
held, whatever the size of the dataset.
"""

import numpy as np


class AdversarialExamples:
    """Collects up to `n` examples, those the attacks fooled first.

    Args:
        n: how many examples to keep (fooled ones first, then ones that stayed
            robust; examples misclassified without attack are skipped).

    After the evaluation, `arrays()` gives what
    `keras_sgn.reporting.adversarial_examples_figure` draws.
    """

    def __init__(self, n=8):
        if not (isinstance(n, int) and n >= 1):
            raise ValueError(f"n must be an integer >= 1. Received: n={n!r}.")
        self.n = n
        self._fooled, self._robust = [], []

    def add(self, x, y, x_adv, clean_predictions, adversarial_predictions, attacks):
        """Offer one batch: images, labels, worst-case adversarial images, both
        predictions and the label of the attack behind each adversarial image."""
        correct = clean_predictions == y
        fooled = correct & (adversarial_predictions != y)
        for mask, kept in ((fooled, self._fooled), (correct & ~fooled, self._robust)):
            for i in np.flatnonzero(mask)[: self.n - len(kept)]:
                kept.append((x[i], y[i], x_adv[i], clean_predictions[i],
                             adversarial_predictions[i], attacks[i]))

    @property
    def full(self):
        """Whether enough fooled examples are kept (no need to offer more)."""
        return len(self._fooled) >= self.n

    def __len__(self):
        return min(self.n, len(self._fooled) + len(self._robust))

    def arrays(self):
        """`{"clean", "adversarial", "labels", "clean_predictions",
        "adversarial_predictions", "attacks"}`: fooled examples first."""
        rows = (self._fooled + self._robust)[: self.n]
        if not rows:
            raise ValueError("No examples were kept: the evaluation classified none of its "
                             "images correctly, or has not run yet.")
        columns = list(zip(*rows))
        return {"clean": np.stack(columns[0]), "labels": np.asarray(columns[1]),
                "adversarial": np.stack(columns[2]),
                "clean_predictions": np.asarray(columns[3]),
                "adversarial_predictions": np.asarray(columns[4]),
                "attacks": list(columns[5])}
