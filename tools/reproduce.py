"""Reproduce the SGN claims: methods x seeds under one budget, measured on validation.

    # The claims on Fashion-MNIST (every method, 3 seeds single-step / 2 multi-step),
    # the models under runs/, the results (JSON, Markdown, plots) under docs/:
    python tools/reproduce.py --dataset=fashion_mnist --study=claims \
        --output_dir=runs/reproduce/fashion_mnist-claims \
        --results_dir=docs/reproduce/fashion_mnist
    # Catastrophic overfitting at eps = 0.2 (fast, sgn, pgd):
    python tools/reproduce.py --dataset=fashion_mnist --study=collapse \
        --output_dir=runs/reproduce/fashion_mnist-collapse \
        --results_dir=docs/reproduce/fashion_mnist-collapse
    # One minute on digits:
    python tools/reproduce.py --dataset=digits --methods=sgn,pgd --seeds=0 --epochs=3 \
        --n_test=100 --best_attacks=quick --output_dir=runs/reproduce-demo

Rerun the same command to continue after an interruption: finished runs and
evaluations are skipped, a run killed midway resumes from its last backup. Writes
RESULTS_DIR/results.json, results.md, robust_vs_time.png, robust_vs_epochs.png
(after every method) and OUTPUT_DIR/runs/<method>-seed<k>/.
"""

# First, before anything imports keras_sgn: keras_sgn without TensorFlow until the flags
# are parsed, then TensorFlow without its start-up logs (tools/quiet_start.py).
import quiet_start

# isort: split
import logging
import os
import sys

from absl import app, flags

# Neither imports TensorFlow (`--help` stays quick); the studies are imported where they run.
from keras_sgn import cli, names

FLAGS = flags.FLAGS
MULTI_STEP = ", ".join(names.MULTI_STEP_METHODS)
flags.DEFINE_enum("study", "claims", list(names.STUDIES) + ["budgets"],
                  "; ".join(f"{name}: {s['about']} (methods {','.join(s['methods'])}, "
                            f"epsilon {s['epsilon'] or 'of the recipe'})"
                            for name, s in names.STUDIES.items())
                  + "; budgets: every method at several training-time budgets (the front of "
                  "robust accuracy against time; keras_sgn.experiments.budgets)")
flags.DEFINE_list("budgets", None, "--study=budgets: minutes of training of every method "
                  "(default: 5,10,20,40; PGD-AT also 80,160).")
flags.DEFINE_list("recalibrate", None, "--study=budgets: measure these entries' epoch time "
                  "again by training epochs beside the cheapest other entry, and move their runs "
                  "planned with the old time to OUTPUT_DIR/superseded/ (the study then trains "
                  "those cells again), e.g. --recalibrate=sgn-memory.")
flags.DEFINE_bool("final_evaluations", False, "--study=budgets: after the planned runs, "
                  "evaluate each method's best budget (by validation robust accuracy; seed 0) "
                  "with quick and standard on the whole test split (resumable; results.* "
                  "gain a table of them).")
flags.DEFINE_string("reference_run", None, "--study=budgets: converged PGD-AT (e.g. the "
                    "anchor's recipe), the level 'within 1 point' refers to: a tools/evaluate.py "
                    "report (folder or report.json) measured like the runs (--attacks=quick, "
                    "--n_examples=N_TEST, --order=original), or a run folder (its final test).")
flags.DEFINE_string("dataset", "fashion_mnist", "A dataset with a recipe (fashion_mnist, "
                    "mnist, digits offline, cifar10 with --data_dir).")
flags.DEFINE_string("data_dir", None, "Where the dataset files are (see keras_sgn.data).")
flags.DEFINE_string("model", None, "Model name (default: the dataset recipe's).")
flags.DEFINE_list("methods", None, "Methods to compare (default: the study's).")
flags.DEFINE_list("seeds", None, "Seeds of every method (default: 0,1,2 for single-step "
                  f"methods, 0,1 for the multi-step ones: {MULTI_STEP}). With "
                  "--study=budgets: only the plan's cells of these seeds.")
flags.DEFINE_integer("epochs", None, "Epoch budget (default: the dataset recipe's; free "
                     "trains epochs / replays).")
flags.DEFINE_float("epsilon", None, "Threat radius (default: the study's, else the recipe's).")
flags.DEFINE_integer("attack_steps", None,
                     f"Inner attack steps of {MULTI_STEP} (default: the method's own).")
flags.DEFINE_integer("n_train", None, "Train on the first N training images (default: all).")
flags.DEFINE_integer("n_val", None, "Per-epoch validation on the first N validation images "
                     "(default: all).")
flags.DEFINE_integer("n_test", None, "Final evaluations on the first N test images "
                     "(default: all).")
flags.DEFINE_integer("val_steps", names.DEFAULT_VAL_STEPS, "Steps of the per-epoch robust "
                     "estimate (PGD, step epsilon/4, random start) on the validation images.")
flags.DEFINE_integer("test_steps", None, "Iterations of each attack of every run's final test "
                     "(the quick suite: APGD-CE, APGD-T; default: their 100).")
flags.DEFINE_string("best_attacks", "standard", "Suite run on each method's best seed.")
flags.DEFINE_bool("best_sanity_checks", True, "Run the sanity checks with --best_attacks.")
flags.DEFINE_string("output_dir", None, "Where the runs go: curves, best models, evaluations "
                    "(default: runs/reproduce/<dataset>-<study>).")
flags.DEFINE_string("results_dir", None, "Where results.json, results.md and the plots go "
                    "(default: --output_dir), e.g. docs/reproduce/fashion_mnist.")
flags.DEFINE_integer("verbose", 1, "0: only the final table; 1: a line per epoch, run and "
                     "evaluation, with ETA; 2: also TensorFlow's warnings.")


def _seeds(values):
    """--seeds as integers >= 0, or a one-line usage error naming the flag."""
    try:
        seeds = [int(value) for value in values]
    except ValueError:
        seeds = None
    if not seeds or min(seeds) < 0:
        raise app.UsageError(f"--seeds must be integers >= 0 separated by commas, e.g. "
                             f"--seeds=0,1. Received: --seeds={','.join(values)}.")
    return seeds


def main(argv):
    del argv
    seeds = None if FLAGS.seeds is None else _seeds(FLAGS.seeds)  # before TensorFlow starts
    if FLAGS.final_evaluations and FLAGS.study != "budgets":
        raise app.UsageError("--final_evaluations evaluates the best cells of the budgets "
                             f"study: give it with --study=budgets. Received: "
                             f"--study={FLAGS.study}.")
    quiet_start.start_tensorflow()
    from keras_sgn.experiments import reproduce

    if FLAGS.verbose < 2:
        logging.getLogger("tensorflow").setLevel(logging.ERROR)
    output_dir = FLAGS.output_dir or reproduce.default_output_dir(FLAGS.dataset, FLAGS.study)
    if FLAGS.study == "budgets":
        from keras_sgn import training
        from keras_sgn.experiments import budgets

        minutes = (budgets.BUDGET_MINUTES if FLAGS.budgets is None
                   else tuple(float(m) for m in FLAGS.budgets))
        if FLAGS.recalibrate:
            seconds = budgets.recalibrate(FLAGS.results_dir or output_dir, FLAGS.dataset,
                                          FLAGS.recalibrate, output_dir,
                                          model=FLAGS.model, epsilon=FLAGS.epsilon,
                                          data_dir=FLAGS.data_dir)
            print("Recalibrated (seconds per epoch): " + ", ".join(
                f"{label} {value:g}" for label, value in seconds.items()), flush=True)
        try:
            budgets.study(
                dataset=FLAGS.dataset, methods=tuple(FLAGS.methods or budgets.DEFAULT_ENTRIES),
                output_dir=output_dir, results_dir=FLAGS.results_dir, budgets=minutes,
                reference_budgets=() if FLAGS.budgets else budgets.REFERENCE_MINUTES,
                n_test=FLAGS.n_test or 2000, reference_run=FLAGS.reference_run,
                verbose=min(FLAGS.verbose, 1) and 2, data_dir=FLAGS.data_dir, seeds=seeds,
                model=FLAGS.model, n_train=FLAGS.n_train, n_eval=FLAGS.n_val,
                epsilon=FLAGS.epsilon, final_evaluations=FLAGS.final_evaluations)
        except training.callbacks.TrainingPreempted as stop:  # SIGTERM: the run saved its state
            print(stop, flush=True)
            sys.exit(names.PREEMPTION_EXIT_CODE)
        with open(os.path.join(FLAGS.results_dir or output_dir, "results.md")) as f:
            print(f.read())
        return
    reproduce.reproduce(
        dataset=FLAGS.dataset, methods=FLAGS.methods, study=FLAGS.study,
        seeds=seeds,
        epochs=FLAGS.epochs, epsilon=FLAGS.epsilon, output_dir=output_dir,
        results_dir=FLAGS.results_dir,
        data_dir=FLAGS.data_dir, model=FLAGS.model, n_train=FLAGS.n_train, n_val=FLAGS.n_val,
        n_test=FLAGS.n_test, val_steps=FLAGS.val_steps, test_steps=FLAGS.test_steps,
        best_attacks=FLAGS.best_attacks, best_sanity_checks=FLAGS.best_sanity_checks,
        attack_steps=FLAGS.attack_steps, verbose=FLAGS.verbose)
    with open(os.path.join(FLAGS.results_dir or output_dir, "results.md")) as f:
        print(f.read())


if __name__ == "__main__":
    cli.run_tool(main)
