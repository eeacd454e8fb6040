"""What one attack iteration costs, in units of one forward+backward pass.

A gradient attack's iteration is usually one forward and one backward pass
with respect to the input (PGD, APGD), but not always (FAB: one backward pass
per class; Square: one forward pass, no backward). `cost_per_iteration`
measures it on a real batch, so a benchmark can report how far an attack is
from its ideal cost.
"""

import timeit

import numpy as np
import tensorflow as tf

from keras_sgn.attacks import core, registry


def _best_time(function, repeats, number=1):
    """Seconds of one call of `function`: the best of `repeats` means over `number` calls."""
    function()  # trace and warm up
    return min(timeit.repeat(function, repeat=repeats, number=number)) / number


def forward_backward_seconds(model, x, y, repeats=3):
    """Seconds of one compiled forward pass plus backward pass w.r.t. the input
    (cross-entropy, `training=False`) on the batch `(x, y)`; best of `repeats` means
    over 10 calls."""
    x = tf.constant(np.asarray(x, np.float32))
    y = tf.constant(np.asarray(y).reshape(-1).astype(np.int32))
    gradient = core.compiled_for(
        model, ("input-gradient",),
        lambda forward, x, y: core.input_gradient(forward, x, y, core.cross_entropy_loss)[0],
        x.shape[1:], [])
    return _best_time(lambda: gradient(x, y).numpy(), repeats, number=10)


def cost_per_iteration(model, x, y, name, epsilon=8 / 255, norm="linf", iterations=(5, 45),
                       repeats=3, **options):
    """Seconds of one iteration of the registered attack `name` on `(x, y)`, and that
    cost in forward+backward passes w.r.t. the input.

    The attack runs with its iteration option (`steps`, `n_queries`) set to
    each of `iterations` and the time difference is divided by the difference
    in iterations, so tracing, the clean forward pass and other fixed costs
    cancel. One run: `restarts` and `n_target_classes` are 1 unless given in
    `options`. A single-step attack (FGSM) counts as one iteration. Attacks that
    stop early on fooled examples (Square, FAB's restarts) measure the cost on
    the examples still running. Times are the best of `repeats`; on a model so small
    that fixed overheads dominate, the difference is noisy (it is floored at 0).

    Returns:
        A dict: `attack`, `iteration_option`, `batch_size`, `seconds_per_iteration`,
        `seconds_forward_backward`, and `forward_backward_per_iteration` (their ratio).

    Example:

    ```python
    cost = keras_sgn.attacks.timing.cost_per_iteration(model, x[:128], y[:128], "apgd-ce")
    print(f"{cost['forward_backward_per_iteration']:.2f} forward+backward per step")
    ```
    """
    attack = registry.get(name)
    defaults = {key: 1 for key in ("restarts", "n_target_classes") if key in attack.options}
    options = {**defaults, **options}
    key = attack.iteration_option

    def seconds(n_iterations):
        settings = dict(options) if key is None else {**options, key: n_iterations}
        spec = registry.AttackSpec(name, tuple(settings.items()))
        return _best_time(lambda: np.asarray(spec.run(model, x, y, epsilon, norm, seed=0)),
                          repeats)

    if key is None:
        per_iteration = seconds(None)
    else:
        low, high = iterations
        per_iteration = max(seconds(high) - seconds(low), 0.0) / (high - low)
    reference = forward_backward_seconds(model, x, y, repeats)
    return {
        "attack": name,
        "iteration_option": key,
        "batch_size": int(len(x)),
        "seconds_per_iteration": per_iteration,
        "seconds_forward_backward": reference,
        "forward_backward_per_iteration": per_iteration / reference if reference > 0 else np.nan,
    }
