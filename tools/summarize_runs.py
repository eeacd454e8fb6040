"""Print a markdown table (mean ± std over seeds) of tools/train.py runs.

    python tools/summarize_runs.py --runs='runs/compare/*'

Runs are grouped by every recipe setting of their config.json but the seed
(keras_sgn.config.recipe_fields()), so only seeds are ever averaged; the
settings in which the groups differ get a column of their own. Two folders
holding the same run (same recipe, seed included: a copy, or a rerun) are
refused: a mean over copies of one seed is not a mean over runs.
"""

import collections
import glob
import json
import os
import statistics

# First, before anything imports keras_sgn: keras_sgn without TensorFlow (tools/quiet_start.py);
# this tool reads JSON files and never starts TensorFlow.
import quiet_start  # noqa: F401

# isort: split
from absl import flags

from keras_sgn import cli, io_utils
from keras_sgn.errors import UserError

FLAGS = flags.FLAGS
flags.DEFINE_string("runs", "runs/*", "Glob of run folders holding summary.json.")


def _mean_std(values):
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} ± {statistics.pstdev(values):.3f}"


#: What a summary.json of a finished tools/train.py run holds that the table shows.
SUMMARY_KEYS = ("method", "model", "dataset", "clean_accuracy", "robust_accuracy",
                "train_seconds")


def _fix(folder):
    return (f"Received: --runs={FLAGS.runs} matching {folder}. Narrow --runs to finished "
            "tools/train.py runs, or move that folder away.")


def read_run(folder):
    """`(summary, settings)` of a run folder: its summary.json and its config.json ({}
    without one); damaged files and a summary without the table's numbers are refused
    naming the folder."""
    summary = io_utils.read_json_object(os.path.join(folder, "summary.json"), _fix(folder))
    missing = [key for key in SUMMARY_KEYS if key not in summary]
    if missing:
        raise UserError(f"{folder}/summary.json has no {', '.join(missing)}: not the summary "
                        f"of a finished tools/train.py run. {_fix(folder)}")
    path = os.path.join(folder, "config.json")
    settings = io_utils.read_json_object(path, _fix(folder)) if os.path.exists(path) else {}
    return summary, settings


def _group_key(summary, settings, recipe_fields):
    """The run's recipe settings but the seed (a run without config.json: its summary's)."""
    settings = settings or {k: summary.get(k) for k in ("method", "model", "dataset",
                                                         "epsilon")}
    return tuple(sorted((k, json.dumps(v)) for k, v in settings.items()
                        if k in recipe_fields and k != "seed"))


def _duplicates(runs):
    """`[(seed, [folder, ...])]` of the runs that share a group and a known seed."""
    found = []
    for group in runs.values():
        by_seed = collections.defaultdict(list)
        for summary in group:
            if summary.get("seed") is not None:
                by_seed[json.dumps(summary["seed"])].append(summary["_folder"])
        found += [(seed, folders) for seed, folders in by_seed.items() if len(folders) > 1]
    return found


def _differing(keys):
    """Settings whose values differ between the groups."""
    values = collections.defaultdict(set)
    for key in keys:
        for name, value in key:
            values[name].add(value)
    return sorted(name for name, seen in values.items() if len(seen) > 1)


def main(argv):
    del argv
    from keras_sgn import config, method_options

    # Each method option is a setting of its own (a run's config.json of any layout).
    recipe_fields = set(config.recipe_fields()) | {o.field for o in method_options.declared()}
    runs = collections.defaultdict(list)
    for path in sorted(glob.glob(os.path.join(FLAGS.runs, "summary.json"))):
        folder = os.path.dirname(path)
        summary, settings = read_run(folder)
        settings = config.flat_settings(config.saved_settings(settings)) if settings else {}
        summary["seed"] = settings.get("seed")
        summary["_folder"] = folder
        runs[_group_key(summary, settings, recipe_fields)].append(summary)
    if not runs:
        raise UserError(f"--runs={FLAGS.runs}: no summary.json in the folders it matches. "
                        "Give a glob of run folders, e.g. --runs='runs/*'.")
    duplicates = _duplicates(runs)
    if duplicates:
        seed, folders = duplicates[0]
        raise UserError(
            f"--runs={FLAGS.runs} matches {len(folders)} folders holding the same run (same "
            f"settings, seed {seed}): {', '.join(folders)}. A mean over copies of one seed is "
            f"not a mean over runs. Received: {sum(len(f) for _, f in duplicates)} folders of "
            "repeated runs. Narrow --runs to one folder of each run, or move the copies away.")
    attack_names = sorted({name for group in runs.values() for s in group
                           for name in s.get("per_attack", {})})
    differing = [name for name in _differing(runs) if name not in ("method", "model",
                                                                   "dataset")]
    print("| method | model | dataset | settings | clean accuracy | robust accuracy (worst "
          "case) | " + " | ".join(attack_names) + " | train seconds | runs (seeds) |")
    print("|" + "---|" * (8 + len(attack_names)))
    for key, group in runs.items():
        settings = dict(key)
        method, model, dataset = (group[0][k] for k in ("method", "model", "dataset"))
        shown = ", ".join(f"{name}={json.loads(settings[name])}" for name in differing
                          if name in settings) or "-"
        cells = [_mean_std([s["per_attack"][name] for s in group
                            if name in s.get("per_attack", {})]
                           or [float("nan")]) for name in attack_names]
        print(f"| `{method}` | {model} | {dataset} | {shown} | "
              f"{_mean_std([s['clean_accuracy'] for s in group])} | "
              f"{_mean_std([s['robust_accuracy'] for s in group])} | " + " | ".join(cells)
              + f" | {statistics.mean(s['train_seconds'] for s in group):.1f} | "
              f"{len(group)} ({', '.join(str(s.get('seed', '?')) for s in group)}) |")


if __name__ == "__main__":
    cli.run_tool(main)
