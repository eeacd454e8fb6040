"""How a search's trials are shown: the Markdown table and the objective plot
(through `keras_sgn.reporting`)."""

import math

from keras_sgn import reporting
from keras_sgn.models.sites import parse_beta
from keras_sgn.tuning.hypermodel import OBJECTIVE
from keras_sgn.tuning.space import INPUT_SITE

TABLE_HEADER = ("trial", "val robust", "val clean", "epochs", "sites", "beta", "N",
                "alpha/eps", "clean_weight", "2nd order", "lr", "wd", "status")
MISSING = "—"


def _short(value):
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.3g}"
    return "" if value is None else str(value)


def _accuracy(value):
    return MISSING if value is None else f"{value:.4f}"


def trial_label(row):
    """A row's trial as the table shows it: its number (from 1), `default` for
    the base setting (the baseline) and the trial a Hyperband round continues."""
    notes = (["default"] if row["default"] else []) + (
        [f"continues {row['continues']}"] if row.get("continues") else [])
    return f"{row['trial']}" + (f" ({', '.join(notes)})" if notes else "")


BUDGET_COLUMN = "train s"


def _epochs(row):
    """best/trained epochs; a time-budget trial cut short: of its planned, stopped."""
    cell = f"{row['best_epoch'] or MISSING}/{row['epochs']}"
    planned = row.get("planned_epochs")
    if planned is not None and planned != row["epochs"]:
        cell += f" of {planned}"
    return cell + (" (stopped)" if row.get("budget_stopped") else "")


def _table_row(row, epsilon):
    config = row["config"]
    selected = config["sites"].split(",")
    hidden = [s for s in selected if s != INPUT_SITE]
    beta = (", ".join(f"{k.replace('stage', 's')}={float(v):.2g}"
                      for k, v in parse_beta(config["beta"]).items())
            if hidden else MISSING)
    alpha = (config["step_size"] / epsilon
             if epsilon and config["step_size"] is not None else None)
    return [
        trial_label(row),
        _accuracy(row[OBJECTIVE]),
        _accuracy(row["val_accuracy"]),
        _epochs(row),
        config["sites"],
        beta,
        config["normalization"] if hidden else MISSING,
        _short(alpha) if INPUT_SITE in selected else MISSING,
        _short(config["clean_weight"]),
        _short(config["second_order"]) if hidden else MISSING,
        _short(config["learning_rate"]),
        _short(config["weight_decay"]),
        row["status"],
    ]


def format_table(rows, epsilon=None):
    """A Markdown table of `trial_rows` (`epsilon` turns step sizes into alpha/eps).
    A time-budget search adds `train s`, each trial's training CPU seconds."""
    cells = [_table_row(r, epsilon) for r in rows]
    header = TABLE_HEADER
    if any("train_cpu_seconds" in r for r in rows):
        at = TABLE_HEADER.index("epochs") + 1
        header = TABLE_HEADER[:at] + (BUDGET_COLUMN,) + TABLE_HEADER[at:]
        for row, cell in zip(rows, cells):
            seconds = row.get("train_cpu_seconds")
            cell.insert(at, MISSING if seconds is None else f"{seconds:.0f}")
    return reporting.tables.markdown_table(header, cells)


def _best_so_far(values):
    best, line = -math.inf, []
    for value in values:
        best = max(best, value)
        line.append(best)
    return line


def trials_figure(rows, title=""):
    """The figure of `plot_trials`: each trial's objective at its number (the
    table's and the log's), the best so far, the default setting circled."""
    ordered = sorted(rows, key=lambda r: r["trial"])
    fig, ax = reporting.plots.new_figure(figsize=(7, 4))
    done = [(r["trial"], r[OBJECTIVE]) for r in ordered if r[OBJECTIVE] is not None]
    if done:
        ax.scatter([x for x, _ in done], [y for _, y in done], s=30, label="trial", zorder=3)
        ax.step([x for x, _ in done], _best_so_far(y for _, y in done), where="post",
                color="C1", label="best so far")
    defaults = [(r["trial"], r[OBJECTIVE]) for r in ordered
                if r["default"] and r[OBJECTIVE] is not None]
    if defaults:
        numbers = ", ".join(str(x) for x, _ in defaults)
        ax.scatter([x for x, _ in defaults], [y for _, y in defaults], s=90,
                   facecolors="none", edgecolors="C2", zorder=4,
                   label=f"default setting (trial{'s' if len(defaults) > 1 else ''} {numbers})")
    ax.set_xlabel("trial (start order, as in the table and the log)")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_ylabel(OBJECTIVE)
    ax.set_ylim(0, 1)
    ax.set_title(title)
    ax.legend(loc="lower right")
    return fig


def plot_trials(rows, path, title=""):
    """Objective of each trial by trial number, with the best so far (a PNG at `path`)."""
    reporting.plots.save_figure(trials_figure(rows, title), path, dpi=100)
    return path
