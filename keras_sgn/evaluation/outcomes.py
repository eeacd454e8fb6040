"""Per-example outcomes: the model's predicted classes, and who survives an attack."""

import numpy as np


def predict_labels(model, x, batch_size=256):
    """Predicted classes of `x`, in inference mode (BatchNorm frozen)."""
    out = [np.argmax(np.asarray(model(x[i:i + batch_size], training=False)), axis=-1)
           for i in range(0, len(x), batch_size)]
    return np.concatenate(out) if out else np.zeros((0,), np.int64)


def adversarial_predictions(spec, model, x, y, epsilon, norm, seed):
    """`(x_adv, predicted classes of x_adv)` under the attack `spec`."""
    if len(x) == 0:
        return np.asarray(x), np.zeros((0,), np.int64)
    x_adv = np.asarray(spec.run(model, x, y, epsilon, norm, seed))
    return x_adv, predict_labels(model, x_adv)


def robust_under(spec, model, x, y, epsilon, norm, seed):
    """Boolean per example: still correctly classified after the attack `spec`."""
    return adversarial_predictions(spec, model, x, y, epsilon, norm, seed)[1] == y
