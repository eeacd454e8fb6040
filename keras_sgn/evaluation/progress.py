"""Progress of a long evaluation: a Keras progress bar with ETA, or nothing.

An attack suite runs minutes per batch on real data, so the bars advance after
every attack of a batch, and the sanity checks show a bar of their own.
"""

import keras


class Progress:
    """A titled progress bar over `total` units that says nothing when not verbose.

    Args:
        total: units of work (examples, attacks...).
        unit: the units' name, shown with the time per unit.
        title: a line printed once before the bar (what is running).
        verbose: False: no output at all.
    """

    def __init__(self, total, unit, title=None, verbose=True):
        self.done = 0.0
        self.bar = None
        if verbose:
            if title:
                print(title, flush=True)
            # interval=0: the bar moves at every update (updates are per attack, seconds apart).
            self.bar = keras.utils.Progbar(total, unit_name=unit, interval=0.0,
                                           stateful_metrics=("clean", "robust"))

    def update(self, done, **values):
        """Set the units done so far (may be fractional) and the shown metrics."""
        self.done = done
        if self.bar is not None:
            self.bar.update(done, list(values.items()))

    def advance(self, units=1, **values):
        """`units` more done."""
        self.update(self.done + units, **values)

    def finish(self):
        """End the bar's line if the last update did not (unknown or unmet total)."""
        bar = self.bar
        if bar is not None and (bar.target is None or self.done < bar.target):
            bar.update(self.done, finalize=True)


def quiet():
    """A `Progress` that prints nothing."""
    return Progress(0, "step", verbose=False)
