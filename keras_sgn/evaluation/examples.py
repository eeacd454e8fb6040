"""A few adversarial examples of an evaluation, kept to be shown.

`evaluate_robustness(..., examples=AdversarialExamples(8))` fills the collector
while it runs: for each example the worst-case adversarial image the suite
found (the one that fooled the model, or the last attack's attempt if none
did) and both predictions. Memory stays bounded: at most `2 * n` images are
held, whatever the size of the dataset.
"""

import numpy as np

from keras_sgn.errors import ArgumentError


class AdversarialExamples:
    """Collects up to `n` examples: fooled ones and ones that stayed robust.

    A grid of fooled images only would hide what the attacks failed on, so half
    the places (rounded up) go to fooled examples and the rest to robust ones;
    when one kind runs short, the other fills its places.

    Args:
        n: how many examples to keep (examples misclassified without attack are
            skipped).

    After the evaluation, `arrays()` gives what
    `keras_sgn.reporting.adversarial_examples_figure` draws.
    """

    def __init__(self, n=8):
        if not (isinstance(n, int) and n >= 1):
            raise ArgumentError(f"n must be an integer >= 1. Received: n={n!r}.")
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
    def n_fooled(self):
        """The places of fooled examples in the grid (half, rounded up)."""
        return (self.n + 1) // 2

    @property
    def full(self):
        """Whether both kinds have their places filled (no need to offer more)."""
        return len(self._fooled) >= self.n_fooled and len(self._robust) >= self.n - self.n_fooled

    def __len__(self):
        return min(self.n, len(self._fooled) + len(self._robust))

    def arrays(self):
        """`{"clean", "adversarial", "labels", "clean_predictions",
        "adversarial_predictions", "attacks"}`: fooled examples first, then robust ones."""
        n_robust = min(len(self._robust), self.n - min(len(self._fooled), self.n_fooled))
        rows = self._fooled[: self.n - n_robust] + self._robust[:n_robust]
        if not rows:
            raise ArgumentError("No examples were kept: the evaluation classified none of its "
                                "images correctly, or has not run yet.")
        columns = list(zip(*rows))
        return {"clean": np.stack(columns[0]), "labels": np.asarray(columns[1]),
                "adversarial": np.stack(columns[2]),
                "clean_predictions": np.asarray(columns[3]),
                "adversarial_predictions": np.asarray(columns[4]),
                "attacks": list(columns[5])}
