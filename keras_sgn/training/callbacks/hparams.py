"""A finished run's hyperparameters and final metrics for TensorBoard's HParams
dashboard (`tensorboard --logdir runs/`: one row per run, to compare runs)."""

import tensorflow as tf

from keras_sgn.config import flat_settings

# summary.json key -> the scalar tag of the final metric in TensorBoard.
FINAL_METRICS = {
    "clean_accuracy": "final/test_clean_accuracy",
    "robust_accuracy": "final/test_robust_accuracy",
    "best_val_robust_accuracy": "final/best_val_robust_accuracy",
}


def run_hparams(config):
    """`{name: value}` of a run's recipe (method, model, dataset, epsilon,
    learning rate, epochs, batch size, feedback and method options...): the
    set fields of `config.recipe()`, each option of the run's method a
    hyperparameter of its own (`config.options` holds only those). Values are
    bool, int, float or str."""
    return {name: value if isinstance(value, (bool, int, float, str)) else str(value)
            for name, value in flat_settings(config.recipe()).items()
            if value is not None}


def write_hparams(log_dir, config, summary):
    """Write the run's hyperparameters (`run_hparams`) and its final metrics
    (`FINAL_METRICS`, from `summary`, at step `summary["epochs"]`) into
    `log_dir`, the root of the run's TensorBoard logs (the HParams dashboard
    finds the epoch curves of `log_dir/train` and `log_dir/validation` beside
    them). Returns the hyperparameters written."""
    from tensorboard.plugins.hparams import api as hp  # TensorBoard ships with TensorFlow

    values = run_hparams(config)
    writer = tf.summary.create_file_writer(log_dir)
    try:
        with writer.as_default(step=int(summary.get("epochs") or 0)):
            hp.hparams(values)
            for key, tag in FINAL_METRICS.items():
                if summary.get(key) is not None:
                    tf.summary.scalar(tag, float(summary[key]))
        writer.flush()
    finally:
        writer.close()
    return values
