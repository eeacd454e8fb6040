"""Robustness evaluation: clean accuracy and the per-example worst case over attacks."""

import numpy as np
import keras
import tensorflow as tf

from keras_sgn import attacks


def _predict(model, x):
    return np.asarray(tf.argmax(model(x, training=False), axis=-1, output_type=tf.int32))


def evaluate(model, dataset, epsilon, norm="linf", steps=20, restarts=1, losses=("ce", "cw"),
             step_size=None, n_examples=None, seed=0, verbose=True):
    """Clean accuracy and robust accuracy under PGD with several losses.

    Each example counts as robust only if it is classified correctly and no
    attack (PGD-`steps` with each loss in `losses`, `restarts` random starts
    each) fools the model: the per-example worst case. The model runs with
    `training=False` (BatchNorm in inference mode).

    Args:
        model: a Keras model returning logits, images in [0, 1].
        dataset: a `tf.data.Dataset` (or iterable) of `(images, labels)` batches.
        epsilon: threat-model radius in pixel units.
        norm: `"linf"` or `"l2"`.
        steps, restarts, step_size: PGD settings (step default epsilon/4).
        losses: attack losses, among `"ce"` and `"cw"`.
        n_examples: stop after this many examples (None: the whole dataset).
        seed: seed of the random starts.
        verbose: show a progress bar.

    Returns:
        A dict with `clean_accuracy`, `robust_accuracy`, `per_attack`
        (accuracy under each attack alone), `n_examples` and `protocol`.

    Example:

    ```python
    report = keras_sgn.evaluation.evaluate(
        model, keras_sgn.data.load("digits", "test"), epsilon=0.1)
    ```
    """
    for loss in losses:
        attacks.check_attack_args(epsilon, steps, norm, loss, restarts, step_size)
    if n_examples is not None and n_examples < 1:
        raise ValueError(f"n_examples must be >= 1 or None, got {n_examples}.")
    step_size = epsilon / 4 if step_size is None else step_size
    names = [f"pgd{steps}-{loss}" for loss in losses]
    clean = []
    robust_each = {name: [] for name in names}
    progress = keras.utils.Progbar(n_examples, unit_name="example") if verbose else None
    seen = 0
    for batch_index, (x, y) in enumerate(dataset):
        if n_examples is not None:
            x, y = x[: n_examples - seen], y[: n_examples - seen]
        attacks.check_image_range(x, "dataset images")
        labels = np.asarray(y).reshape(-1).astype(np.int32)
        clean.append(_predict(model, x) == labels)
        for name, loss in zip(names, losses):
            x_adv = attacks.pgd(model, x, labels, epsilon=epsilon, step_size=step_size,
                                steps=steps, norm=norm, loss=loss, restarts=restarts,
                                seed=seed + 7919 * batch_index)
            robust_each[name].append(_predict(model, x_adv) == labels)
        seen += len(labels)
        if progress is not None:
            progress.update(seen)
        if n_examples is not None and seen >= n_examples:
            break
    if seen == 0:
        raise ValueError("dataset yielded no examples to evaluate.")
    clean = np.concatenate(clean)
    per_attack = {name: np.concatenate(v) & clean for name, v in robust_each.items()}
    worst = np.logical_and.reduce([clean] + list(per_attack.values()))
    feedback = bool(getattr(model, "feedback_at_inference", False))
    return {
        "clean_accuracy": float(clean.mean()),
        "robust_accuracy": float(worst.mean()),
        "per_attack": {name: float(v.mean()) for name, v in per_attack.items()},
        "n_examples": int(seen),
        "protocol": (
            f"{norm} eps={epsilon:.6g}; worst case per example over PGD-{steps} "
            f"(step {step_size:.6g}, {restarts} random start(s)) with losses "
            f"{', '.join(losses)}; BatchNorm in inference mode"
            + ("; attacks differentiate through the inference-time feedback" if feedback else "")
        ),
    }
