"""What a finished run writes: the final test of its best model (`summary.json`),
`history.json` and the training curves, and the lines the tools print about them.

The final test is at least the `quick` suite of `keras_sgn.evaluation` (adaptive
APGD attacks run as a cascade, each only on the points still robust; robust
accuracy is the per-example worst case), never a single weak attack: the number
people quote is the one in `summary.json`. Its `per_attack` means what it means
in the `report.json` of `tools/evaluate.py`: the accuracy left after the cascade
up to and including that attack; `protocol` says so beside the numbers.
"""

import contextlib
import dataclasses
import os
import signal
import threading

from keras_sgn import data as sgn_data
from keras_sgn import evaluation, provenance, reporting
from keras_sgn.attacks import parse_attacks
from keras_sgn.io_utils import atomic_write_json, load_model_file
from keras_sgn.reporting.model_card import validation_label
from keras_sgn.training.callbacks import TrainingPreempted
from keras_sgn.training.callbacks.hparams import write_hparams

FINAL_TEST_SUITE = "quick"
# The run's TensorBoard logs (epoch curves, then its HParams row), under output_dir.
TENSORBOARD_DIR = "logs"
PER_ATTACK_MEANS = ("accuracy after the cascade up to and including this attack (each "
                    "attack runs only on the points still robust), as in tools/evaluate.py's "
                    "report.json")


def final_test_attacks(config):
    """The attacks of the final test: the `quick` suite, `config.test_steps`
    and `config.test_restarts` replacing each attack's own steps and restarts
    where given (and where the attack has that option)."""
    overrides = {"steps": config.test_steps, "restarts": config.test_restarts}
    specs = []
    for spec in parse_attacks(FINAL_TEST_SUITE):
        settings = spec.settings()
        options = dict(spec.options)
        options.update({k: v for k, v in overrides.items() if v is not None and k in settings})
        specs.append(dataclasses.replace(spec, options=tuple(options.items())))
    return tuple(specs)


def final_test(config, model, test_ds, num_classes):
    """The robustness report of `model` on the test split (see the module doc)."""
    report = evaluation.evaluate_robustness(
        model, test_ds, epsilon=config.epsilon, norm=config.norm,
        attacks=final_test_attacks(config), cascade=True, run_sanity_checks=False,
        seed=config.seed, verbose=bool(config.verbose), num_classes=num_classes)
    given = [name for name in ("test_steps", "test_restarts") if getattr(config, name)]
    report["protocol"] = {
        **report["protocol"], "split": "test", "order": config.test_order,
        "suite": FINAL_TEST_SUITE + (f" with {' and '.join(given)} set" if given else ""),
        "per_attack": PER_ATTACK_MEANS,
    }
    return report


def validation_record(config, strategy_name=None, restarts=1):
    """How `best_val_robust_accuracy` (which picks the kept epoch) was measured:
    `validation_estimate` (the `SGNModel` validation attack: PGD-`eval_steps`,
    cross-entropy, step epsilon/4, random start, on the fixed validation split
    or its first `n_eval` images, every epoch) and `validation_protocol`, the
    same in the words the model card uses."""
    n_examples = sgn_data.info(config.dataset).num_examples["validation"]
    if config.n_eval:
        n_examples = min(n_examples, config.n_eval)
    if strategy_name == "tpu":  # the validation batches are all full on TPUs
        n_examples -= n_examples % config.batch_size
    estimate = {"attack": "pgd", "loss": "cross-entropy", "steps": config.eval_steps,
                "restarts": int(restarts), "step_size": "epsilon/4", "random_start": True,
                "norm": config.norm, "epsilon": config.epsilon, "split": "validation",
                "n_examples": n_examples, "when": "every epoch"}
    return {"validation_estimate": estimate,
            "validation_protocol": validation_label({"validation_estimate": estimate})}


@contextlib.contextmanager
def stopped_by_termination(backup):
    """Inside, a termination signal (`backup.signals`, SIGTERM) raises `TrainingPreempted`
    at once. After training, the backup's own handler is gone (it saves at the end of a
    batch) and the default one killed the process (exit -15, not the documented preemption
    code); the backup holds the finished training, so the same command reruns what is
    left (the final test)."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be set from the main thread
        return

    def stop(signum, frame):
        raise TrainingPreempted(
            f"Termination requested during the final test: training is complete and saved "
            f"in {backup.backup_dir}. Rerun the same command to run the final test.")

    previous = {signum: signal.signal(signum, stop) for signum in backup.signals}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)


def write_outputs(config, write_dir, test_ds, checkpoint, backup, execution, num_classes):
    """The chief's final files: `history.json`, `training_curves.png`,
    `summary.json` with the final test of the best model, and the run's
    hyperparameters and final metrics in its TensorBoard logs (HParams);
    returns the summary. A termination signal meanwhile stops it with
    `TrainingPreempted` (`stopped_by_termination`)."""
    with stopped_by_termination(backup):
        return _write_outputs(config, write_dir, test_ds, checkpoint, backup, execution,
                              num_classes)


def _write_outputs(config, write_dir, test_ds, checkpoint, backup, execution, num_classes):
    title = (f"{config.method} / {config.model} on {config.dataset}, {config.norm} "
             f"eps={config.epsilon:.4g}")
    write_history(backup.history, write_dir, checkpoint.best_epoch, title=title)
    best = load_model_file(checkpoint.best_path)
    report = final_test(config, best, test_ds, num_classes)
    summary = {
        "clean_accuracy": report["clean_accuracy"],
        "robust_accuracy": report["robust_accuracy"],
        "per_attack": report["per_attack"],
        "protocol": report["protocol"],
        "n_test_examples": report["n_examples"],
        "epochs": backup.epoch,
        "best_epoch": checkpoint.best_epoch,
        "best_val_robust_accuracy": checkpoint.best,
        **validation_record(config, execution.get("strategy"),
                            getattr(getattr(checkpoint, "model", None), "eval_restarts", 1)),
        "method": config.method,
        "model": config.model,
        "dataset": config.dataset,
        "epsilon": config.epsilon,
        "norm": config.norm,
        **execution,  # strategy, replicas, workers, train_seconds, resumed_from_epoch
        "parameters": int(best.count_params()),
        "provenance": provenance.provenance(),  # keras_sgn version, git commit, libraries
    }
    atomic_write_json(os.path.join(write_dir, "summary.json"), summary)
    write_hparams(os.path.join(write_dir, TENSORBOARD_DIR), config, summary)
    return summary


def write_history(history, write_dir, best_epoch=None, title=None):
    """`history.json` and `training_curves.png`: the losses, and every other
    logged metric (accuracies), per epoch."""
    from matplotlib.ticker import MaxNLocator  # after reporting picks the headless backend

    atomic_write_json(os.path.join(write_dir, "history.json"), history)
    fig, (ax_loss, ax_acc) = reporting.plots.new_figure(1, 2, figsize=(10, 4))
    losses = sorted(key for key in history if key.endswith("loss"))
    for axis, keys in ((ax_loss, losses),
                       (ax_acc, sorted(key for key in history if key not in losses))):
        for key in keys:
            if history.get(key):  # each series on its own epochs
                axis.plot(range(1, len(history[key]) + 1), history[key], marker=".",
                          label=key)
        if best_epoch:
            axis.axvline(best_epoch, color="grey", linestyle=":", label="best epoch")
        axis.set_xlabel("epoch")
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.legend()
    ax_loss.set_ylabel("loss")
    ax_acc.set_ylabel("accuracy")
    ax_acc.set_ylim(0, 1)
    ax_loss.set_title("loss per epoch")
    ax_acc.set_title("accuracy per epoch\n(adv_: on the training attack's inputs)", fontsize=10)
    if title:
        fig.suptitle(f"Training curves: {title}")
    reporting.plots.save_figure(fig, os.path.join(write_dir, "training_curves.png"), dpi=100)


def describe_protocol(protocol):
    """The final test's protocol in a few words (for the one-line result)."""
    names = []
    for attack in protocol.get("attacks", []):
        budget = [f"{attack['steps']} steps"] if "steps" in attack else []
        if attack.get("restarts", 1) > 1:
            budget.append(f"{attack['restarts']} restarts")
        names.append(attack.get("name", "?") + (f" ({', '.join(budget)})" if budget else ""))
    names = " then ".join(names)
    cascade = "cascade, " if protocol.get("cascade") else ""
    return (f"{protocol.get('norm')} eps={protocol.get('epsilon', 0):.4g}, "
            f"{protocol.get('suite', 'attacks')}: {names}; {cascade}worst case per example")


def result_lines(summary, output_dir):
    """The two lines a training tool ends with: where it wrote, and the result."""
    if summary.get("already_complete"):
        wrote = (f"nothing written: {output_dir} already holds this run, complete: see "
                 f"{os.path.join(output_dir, 'summary.json')} (--overwrite trains it again)")
    else:
        files = ("model.keras", "summary.json", "history.json", "training_curves.png",
                 "config.json", TENSORBOARD_DIR + "/")
        wrote = "wrote " + ", ".join(os.path.join(output_dir, f) for f in files)
    result = (f"clean accuracy {summary['clean_accuracy']:.4f}, robust accuracy "
              f"{summary['robust_accuracy']:.4f} ({describe_protocol(summary['protocol'])}; "
              f"{summary.get('n_test_examples', '?')} test images)")
    return wrote, result
