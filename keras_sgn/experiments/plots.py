"""The reproduction's figures: validation robust accuracy against training wall
time and against epochs, one mean line per method with a min-max band over its
seeds, markers on every epoch, and PGD-AT's target as a horizontal line."""

import textwrap

from keras_sgn import reporting
from keras_sgn.errors import ArgumentError
from keras_sgn.experiments.analysis import mean_std

# x axis key of a curve point -> (file suffix, axis label)
AXES = {"train_seconds": ("time", "cumulative training wall time (s, evaluation excluded)"),
        "epoch": ("epochs", "epoch")}
MARKERS = "osD^vP*Xh<>p"


def _seeds(count):
    return "1 seed" if count == 1 else f"mean of {count} seeds"


def method_band(method_runs, x_key):
    """Per epoch index over the seeds of one method: the mean x, and the
    mean, min and max robust accuracy. Runs of different lengths count at the
    epochs they have (a one-epoch run gives one point)."""
    length = max(len(r["curve"]) for r in method_runs)
    xs, means, lows, highs = [], [], [], []
    for index in range(length):
        points = [r["curve"][index] for r in method_runs if index < len(r["curve"])]
        robust = [p["robust_accuracy"] for p in points]
        xs.append(mean_std([p[x_key] for p in points])[0])
        means.append(mean_std(robust)[0])
        lows.append(min(robust))
        highs.append(max(robust))
    return xs, means, lows, highs


def _on_the_axis(bands):
    """The methods the y axis is scaled to: those whose best mean reaches half the
    best method's. A method far below (`standard`, near 0 under attack) would
    otherwise stretch the axis to 0 and squash the band where the others differ;
    it is named in the legend with its best value instead."""
    best = max(max(means) for _, means, _, _ in bands.values())
    return [method for method, (_, means, _, _) in bands.items() if max(means) >= best / 2]


def robust_figure(runs, x_key, target=None, title="", y_label="validation robust accuracy",
                  reference="pgd"):
    """`(figure, axes)`: per method the mean over seeds (line + markers) and
    the min-max band, and `target` as a dashed horizontal line. The caller
    saves it (`reporting.save_figure`); tests read the artists."""
    if x_key not in AXES:
        raise ArgumentError(f"x_key must be one of {tuple(AXES)}. Received: {x_key!r}.")
    by_method = {}
    for run in runs:
        by_method.setdefault(run["method"], []).append(run)
    fig, ax = reporting.plots.new_figure(figsize=(8, 5))
    bands = {method: method_band(method_runs, x_key) for method, method_runs in by_method.items()}
    shown = _on_the_axis(bands)
    for index, (method, (xs, means, lows, highs)) in enumerate(bands.items()):
        color = f"C{index % 10}"
        label = f"{method} ({_seeds(len(by_method[method]))})"
        if method not in shown:
            label += f", below the axis: best {max(means):.3f}"
        ax.fill_between(xs, lows, highs, color=color, alpha=0.18, linewidth=0)
        ax.plot(xs, means, color=color, marker=MARKERS[index % len(MARKERS)], markersize=5,
                linewidth=1.8, label=label)
    low = min([min(bands[method][2]) for method in shown] + ([target] if target else []))
    high = max([max(bands[method][3]) for method in shown] + ([target] if target else []))
    margin = max(0.02, 0.05 * (high - low))
    ax.set_ylim(max(0.0, low - margin), min(1.0, high + margin))
    if target is not None:
        ax.axhline(target, color="black", linestyle="--", linewidth=1,
                   label=f"target: {reference} best val robust ({target:.3f})")
    ax.set_xlim(left=0)  # speed is read from the start of training
    if x_key == "epoch":
        ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_xlabel(AXES[x_key][1])
    ax.set_ylabel(y_label)
    # Long subtitles (the protocol) wrap instead of running off the figure.
    ax.set_title("\n".join(textwrap.fill(line, 95) for line in title.splitlines()), fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    return fig, ax


def plot(runs, path_prefix, target=None, title="", y_label="validation robust accuracy",
         reference="pgd"):
    """Write `{path_prefix}robust_vs_time.png` and `{path_prefix}robust_vs_epochs.png`
    (see `robust_figure`); returns the paths."""
    paths = []
    for x_key, (suffix, _) in AXES.items():
        fig, _ = robust_figure(runs, x_key, target, title, y_label, reference)
        path = f"{path_prefix}robust_vs_{suffix}.png"
        paths.append(reporting.plots.save_figure(fig, path, dpi=110))
    return paths
