"""Print a markdown table (mean ± std over seeds) of tools/train.py runs.

    python tools/summarize_runs.py --runs='runs/compare/*'
"""

import collections
import glob
import json
import os
import statistics
import sys

from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_string("runs", "runs/*", "Glob of run folders holding summary.json.")


def _mean_std(values):
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} ± {statistics.pstdev(values):.3f}"


def main(argv):
    del argv
    runs = collections.defaultdict(list)
    for path in sorted(glob.glob(os.path.join(FLAGS.runs, "summary.json"))):
        with open(path) as f:
            summary = json.load(f)
        runs[(summary["method"], summary["model"], summary["dataset"])].append(summary)
    if not runs:  # one line and code 2 as keras_sgn.cli (which would import TensorFlow)
        print(f"error: --runs={FLAGS.runs}: no summary.json in the folders it matches. Give "
              "a glob of run folders, e.g. --runs='runs/*'.", file=sys.stderr)
        sys.exit(2)
    attack_names = sorted({name for group in runs.values() for s in group
                           for name in s.get("per_attack", {})})
    print("| method | model | dataset | clean accuracy | robust accuracy (worst case) | "
          + " | ".join(attack_names) + " | train seconds | runs |")
    print("|" + "---|" * (7 + len(attack_names)))
    for (method, model, dataset), group in runs.items():
        cells = [_mean_std([s["per_attack"][name] for s in group]) for name in attack_names]
        print(f"| `{method}` | {model} | {dataset} | "
              f"{_mean_std([s['clean_accuracy'] for s in group])} | "
              f"{_mean_std([s['robust_accuracy'] for s in group])} | " + " | ".join(cells)
              + f" | {statistics.mean(s['train_seconds'] for s in group):.1f} | {len(group)} |")


if __name__ == "__main__":
    app.run(main)
