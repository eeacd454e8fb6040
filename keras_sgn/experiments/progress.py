"""Progress lines of a long reproduction: which run, epoch k/N, the epoch's
numbers, and the time left for this run and for everything still to do.

Time left is estimated from what was measured in this session: seconds per
epoch (training + validation) of each method; a method not measured yet is
scaled from the measured ones by its passes per step
(`keras_sgn.methods.registry.expected_cost`); test evaluations by the mean duration
of the evaluations of the same role so far (none measured: not counted, and
the line says so).
"""

import statistics
import sys
import time


def format_duration(seconds):
    """`1h02m`, `4m05s` or `12s`."""
    seconds = int(round(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    if seconds >= 60:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds}s"


class Progress:
    """Prints one line per epoch, per skipped run and per evaluation.

    Args:
        plan: `[(method, seed, epochs, cost_per_epoch), ...]`, one per run in order.
        evaluations: `{role: count}` of the test evaluations planned.
        stream: where lines go (None: stdout); `enabled=False` prints nothing.
        finished: indices of the runs already finished (left out of the ETA).
    """

    def __init__(self, plan, evaluations=None, stream=None, enabled=True, finished=()):
        self.plan = list(plan)
        self.finished = set(finished)
        self.pending_evaluations = dict(evaluations or {})
        self.stream, self.enabled = stream, enabled
        self.epoch_seconds = {}  # method -> [seconds of each epoch measured]
        self.evaluation_seconds = {}  # role -> [seconds]
        self.index = -1
        self._epoch_start = None

    def _print(self, text):
        if self.enabled:
            print(text, file=self.stream or sys.stdout, flush=True)

    def _tag(self, index=None):
        index = self.index if index is None else index
        method, seed, _, _ = self.plan[index]
        return f"[run {index + 1}/{len(self.plan)}] {method} seed {seed}"

    def start_run(self, index, folder, skipped_result=None):
        """Announce run `index` of the plan (trained now, or found finished)."""
        self.index = index
        _, _, epochs, _ = self.plan[index]
        if skipped_result is not None:
            self._print(f"{self._tag()}: finished earlier, skipped (best val robust "
                        f"{skipped_result['best_val_robust_accuracy']:.3f} at epoch "
                        f"{skipped_result['best_epoch']}/{skipped_result['epochs']})")
            return
        self._print(f"{self._tag()}: training {epochs} epoch(s) into {folder}")
        self._epoch_start = time.perf_counter()

    def _seconds_per_epoch(self, method, cost):
        own = self.epoch_seconds.get(method)
        if own:
            return statistics.mean(own)
        # Seconds per pass of every method measured, scaled to this one's passes.
        rates = [statistics.mean(v) / self._cost(m) for m, v in self.epoch_seconds.items()]
        return statistics.mean(rates) * cost if rates else None

    def _cost(self, method):
        return next(c for m, _, _, c in self.plan if m == method)

    def _index_of(self, method, seed):
        return next(i for i, (m, s, _, _) in enumerate(self.plan) if (m, s) == (method, seed))

    def remaining_seconds(self, epochs_done):
        """Seconds left (this run's epochs after `epochs_done`, later runs, and
        the evaluations measured so far), or None before any measurement."""
        method, _, epochs, cost = self.plan[self.index]
        total = 0.0
        later = [(m, e, c) for i, (m, _, e, c) in enumerate(self.plan)
                 if i > self.index and i not in self.finished]
        for m, e, c in [(method, epochs - epochs_done, cost)] + later:
            rate = self._seconds_per_epoch(m, c)
            if rate is None:
                return None
            total += rate * e
        for role, count in self.pending_evaluations.items():
            if self.evaluation_seconds.get(role):
                total += statistics.mean(self.evaluation_seconds[role]) * count
        return total

    def epoch(self, point, epochs):
        """One line for a finished epoch (`point` of the validation curve)."""
        now = time.perf_counter()
        method = self.plan[self.index][0]
        self.epoch_seconds.setdefault(method, []).append(now - self._epoch_start)
        self._epoch_start = now
        run_left = statistics.mean(self.epoch_seconds[method][-3:]) * (epochs - point["epoch"])
        left = self.remaining_seconds(point["epoch"])
        unmeasured = [r for r, n in self.pending_evaluations.items()
                      if n and not self.evaluation_seconds.get(r)]
        all_left = "?" if left is None else format_duration(left)
        if unmeasured and left is not None:
            all_left += f" + {'/'.join(unmeasured)} evaluations"
        self._print(
            f"{self._tag()} | epoch {point['epoch']}/{epochs} | train "
            f"{point['train_seconds']:.1f} s (+{point['val_seconds']:.1f} s val) | val clean "
            f"{point['clean_accuracy']:.3f} robust {point['robust_accuracy']:.3f} | run ETA "
            f"{format_duration(run_left)} | all ETA {all_left}")

    def run_finished(self, report):
        """One line with the final test of the run just trained."""
        self._print(f"{self._tag()}: final test ({report.get('suite', 'quick')}) clean "
                    f"{report['clean_accuracy']:.3f} robust {report['robust_accuracy']:.3f} on "
                    f"{report['n_examples']} test images")

    def evaluation_started(self, role, suite, n_test, method, seed):
        """Announce a test evaluation of the best model of the run (method, seed)."""
        images = "all" if n_test is None else f"the first {n_test}"
        tag = self._tag(self._index_of(method, seed))
        self._print(f"{tag}: test evaluation '{role}' ({suite}) on {images} test images of "
                    "the best-val-epoch model")
        self._evaluation_start = time.perf_counter()

    def evaluation_finished(self, role, report, method, seed, skipped=False):
        """One line with the evaluation's numbers (or that it was done earlier)."""
        tag = self._tag(self._index_of(method, seed))
        self.pending_evaluations[role] = max(0, self.pending_evaluations.get(role, 0) - 1)
        if skipped:
            self._print(f"{tag}: test evaluation '{role}' finished earlier, skipped "
                        f"(clean {report['clean_accuracy']:.3f} robust "
                        f"{report['robust_accuracy']:.3f})")
            return
        seconds = time.perf_counter() - self._evaluation_start
        self.evaluation_seconds.setdefault(role, []).append(seconds)
        self._print(f"{tag}: '{role}' clean {report['clean_accuracy']:.3f} robust "
                    f"{report['robust_accuracy']:.3f} on {report['n_examples']} test images "
                    f"({format_duration(seconds)})")
