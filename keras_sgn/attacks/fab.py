"""FAB, the Fast Adaptive Boundary attack (Croce & Hein, ICML 2020): minimal perturbations.

FAB looks for the *smallest* adversarial perturbation rather than the worst
point of a ball. Each iteration linearises the model at the current iterate
`x_k`: for the wrong class `j` whose linearised decision boundary
`f_j + <g_j, z - x_k> = 0` (`f_j = z_j - z_y`, `g_j` its input gradient) is
nearest in the chosen norm (FAB-T: the one target class), it projects both
`x_k` and the clean image `x` onto that hyperplane within the [0, 1] box
(`d_k` and `d_0`), and moves to the convex combination

    x_{k+1} = clip((1 - a)(x_k + eta d_k) + a (x + eta d_0), 0, 1),
    a = min(|d_k| / (|d_k| + |d_0|), alpha_max),

overshooting by `eta`. Whenever `x_{k+1}` is misclassified it is recorded if
it is the closest so far, and the iterate is pulled back towards `x` by
`beta`. Restart 0 starts at `x`, the others at a random point at distance
`epsilon / 2`; a run succeeds on an example when its closest adversarial point
lies within `epsilon`. Defaults (100 iterations, `alpha_max = 0.1`,
`eta = 1.05`, `beta = 0.9`) are the reference implementation's
(fra31/auto-attack), as is the bookkeeping over restarts and targets: each run
attacks only the examples no earlier run fooled within `epsilon`.

Cost per iteration: untargeted, one forward pass and one backward pass per
class (the Jacobian) plus a forward pass; targeted, one forward and one
backward pass plus a forward pass.
"""

import functools

import numpy as np
import tensorflow as tf

from keras_sgn.attacks import core

_BIG = 1e12


# Halvings of the bracket in `_solve_piecewise_linear`: 2^-32 of the largest
# breakpoint, far below float32's resolution of the step.
_BISECTIONS = 32


def _solve_piecewise_linear(breakpoint, slope, target):
    """Per row, the smallest `t >= 0` with `sum_i slope_i * min(t, breakpoint_i) >= target`.

    The left side `F` is concave, non-decreasing and piecewise linear with
    kinks at the breakpoints. Bisection brackets the solution, then one linear
    solve on the bracket's lower end gives `t` (exact unless a kink falls inside
    the final bracket, 2^-32 of the largest breakpoint wide). Bisection rather
    than sorting the breakpoints: TensorFlow's CPU sort of a (500, 784) batch
    took 113 ms, eight times one FAB iteration's forward and backward passes.
    Inactive coordinates carry `slope = 0`. Returns `inf` where even `t = inf`
    falls short.
    """
    def value(t):
        return tf.reduce_sum(slope * tf.minimum(t[:, None], breakpoint), axis=1)

    active = slope > 0.0
    reachable = tf.reduce_sum(tf.where(active, slope * breakpoint, 0.0), axis=1) >= target
    low = tf.zeros_like(target)
    high = tf.reduce_max(tf.where(active, breakpoint, 0.0), axis=1)
    for _ in range(_BISECTIONS):
        middle = 0.5 * (low + high)
        enough = value(middle) >= target
        high = tf.where(enough, middle, high)
        low = tf.where(enough, low, middle)
    remaining = tf.reduce_sum(tf.where(breakpoint > low[:, None], slope, 0.0), axis=1)
    t = tf.minimum(low + tf.math.divide_no_nan(target - value(low), remaining), high)
    return tf.where(reachable, tf.maximum(t, 0.0), np.inf)


def project_to_hyperplane(point, w, c, norm):
    """Smallest step `d` (in `norm`) with `<w, d> = -c` and `point + d` in [0, 1].

    All arguments are flat per example: `point` and `w` of shape `(batch, n)`,
    `c` (the hyperplane's value at `point`) of shape `(batch,)`. Every
    coordinate moves in the direction that lowers `|c|` until it saturates at 0
    or 1 (L-inf: by the common amount `t`; L2: by `t |w_i|`), `t` as small as
    possible. When the box does not reach the hyperplane, every coordinate
    saturates (the box point nearest to it), as in the reference.
    """
    direction = -tf.sign(c)[:, None] * tf.sign(w)
    room = tf.where(direction > 0, 1.0 - point, point)
    magnitude = tf.abs(w)
    if norm == "linf":
        active = magnitude > 0.0
        scale = tf.ones_like(magnitude)
    else:
        active = magnitude > 1e-8
        scale = magnitude
    breakpoint = tf.where(active, tf.math.divide_no_nan(room, scale), _BIG)
    slope = tf.where(active, magnitude * scale, 0.0)
    t = _solve_piecewise_linear(breakpoint, slope, tf.abs(c))
    step = direction * scale * tf.minimum(t[:, None], breakpoint)
    return tf.where(active, step, 0.0)


def _step(flat_x1, flat_x, w, value, alpha_max, eta, norm):
    """FAB's move from `x_k` (flat): both projections onto the linearised boundary, the
    convex combination with overshoot `eta`, clipped to [0, 1]."""
    d1 = project_to_hyperplane(flat_x1, w, value, norm)
    d0 = project_to_hyperplane(flat_x, w, value + tf.reduce_sum(w * (flat_x - flat_x1), 1),
                               norm)
    size1 = tf.maximum(core.per_example_norm(d1, norm), 1e-8)
    size0 = tf.maximum(core.per_example_norm(d0, norm), 1e-8)
    alpha = tf.minimum(size1 / (size1 + size0), alpha_max)[:, None]
    flat_new = (1.0 - alpha) * (flat_x1 + eta * d1) + alpha * (flat_x + eta * d0)
    return tf.clip_by_value(flat_new, 0.0, 1.0)


_FUSED_STEPS = {}
# XLA compiles once per batch size (1.6-1.9 s of CPU for this step); the batch is padded to
# a multiple of this so that the few sizes a suite meets are compiled once each.
_ROWS_MULTIPLE = 32


def _fused_step(norm):
    """`_step` compiled with XLA, one per norm. The two projections' bisections are about
    two hundred small element-wise and reduction ops on `(batch, pixels)` tensors; run one
    by one they cost about a third of an iteration's forward and backward passes on a
    small CNN, fused a few percent. Called inside the compiled attack, it is compiled as
    one cluster, on a batch padded to a multiple of `_ROWS_MULTIPLE` rows (every row is
    computed on its own, so the padding rows change nothing and are dropped)."""
    if norm not in _FUSED_STEPS:
        compiled = tf.function(functools.partial(_step, norm=norm), jit_compile=True)

        def padded(flat_x1, flat_x, w, value, alpha_max, eta):
            rows = tf.shape(flat_x1)[0]
            extra = (-rows) % _ROWS_MULTIPLE
            pad = [[0, extra], [0, 0]]
            new = compiled(tf.pad(flat_x1, pad), tf.pad(flat_x, pad), tf.pad(w, pad),
                           tf.pad(value, pad[:1]), alpha_max, eta)
            return new[:rows]

        _FUSED_STEPS[norm] = padded
    return _FUSED_STEPS[norm]


def _class_jacobian(forward, x1, labels):
    """`(f, g)`: `f_j = z_j - z_y` with shape `(batch, K)` and its input gradients
    `(batch, K, n)`: one forward pass and one backward pass per class."""
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x1)
        logits = tf.cast(forward(x1), tf.float32)
        per_class = [tf.reduce_sum(logits[:, k]) for k in range(logits.shape[-1])]
    gradients = [tape.gradient(total, x1, unconnected_gradients=tf.UnconnectedGradients.ZERO)
                 for total in per_class]
    del tape
    jacobian = tf.stack([tf.reshape(g, [tf.shape(x1)[0], -1]) for g in gradients], axis=1)
    true_logit = tf.gather(logits, labels, axis=1, batch_dims=1)
    true_gradient = tf.gather(jacobian, labels, axis=1, batch_dims=1)
    return logits - true_logit[:, None], jacobian - true_gradient[:, None]


def _target_gradient(forward, x1, labels, targets):
    """`(f, g)` for the target class only: shapes `(batch, 1)` and `(batch, 1, n)`."""
    with tf.GradientTape() as tape:
        tape.watch(x1)
        logits = tf.cast(forward(x1), tf.float32)
        difference = (tf.gather(logits, targets, axis=1, batch_dims=1)
                      - tf.gather(logits, labels, axis=1, batch_dims=1))
        total = tf.reduce_sum(difference)
    gradient = tape.gradient(total, x1, unconnected_gradients=tf.UnconnectedGradients.ZERO)
    return difference[:, None], tf.reshape(gradient, [tf.shape(x1)[0], 1, -1])


def _nearest_boundary(f, g, labels, norm, targeted):
    """The linearised boundary nearest in `norm`: its `(value, gradient)` per example."""
    dual = tf.reduce_sum(tf.abs(g), -1) if norm == "linf" else tf.norm(g, axis=-1)
    distance = tf.abs(f) / (dual + 1e-12)
    if not targeted:  # the true class is no boundary
        distance = tf.where(tf.one_hot(labels, tf.shape(f)[1]) > 0, np.inf, distance)
    nearest = tf.argmin(distance, axis=1, output_type=tf.int32)
    return (tf.gather(f, nearest, axis=1, batch_dims=1),
            tf.gather(g, nearest, axis=1, batch_dims=1))


def fab_run(forward, x, labels, *, norm="linf", steps=100, targets=None, start=None,
            alpha_max=0.1, eta=1.05, beta=0.9):
    """One FAB run (graph-friendly): the closest misclassified iterate per example.

    Args:
        forward: callable images -> logits (already in inference mode).
        x: clean images in [0, 1], all correctly classified.
        labels: int32 true labels, shape `(batch,)`.
        norm: `"linf"` or `"l2"`, the norm minimised.
        steps: iterations (Python int).
        targets: int32 target class per example (FAB-T), or None (untargeted).
        start: the first iterate (default `x`), e.g. from `core.sphere_start`.
        alpha_max, eta, beta: FAB's step parameters (see the module docstring).

    Returns:
        `(x_adv, distance)`: the closest misclassified iterate and its `norm`
        distance to `x`, or `x` and `inf` where no iterate was misclassified.
    """
    labels = tf.cast(tf.reshape(labels, [-1]), tf.int32)
    shape = tf.shape(x)
    flat_x = tf.reshape(x, [shape[0], -1])
    expand_shape = tf.concat([[-1], tf.ones_like(shape[1:])], 0)

    def body(i, x1, best, best_distance):
        if targets is None:
            f, g = _class_jacobian(forward, x1, labels)
        else:
            f, g = _target_gradient(forward, x1, labels, targets)
        value, w = _nearest_boundary(f, g, labels, norm, targets is not None)
        flat_new = _fused_step(norm)(tf.reshape(x1, [shape[0], -1]), flat_x, w, value,
                                     alpha_max, eta)
        x1 = tf.reshape(flat_new, shape)

        fooled = tf.argmax(forward(x1), -1, output_type=tf.int32) != labels
        distance = core.per_example_norm(x1 - x, norm)
        closer = tf.logical_and(fooled, distance < best_distance)
        best = tf.where(tf.reshape(closer, expand_shape), x1, best)
        best_distance = tf.where(closer, distance, best_distance)
        x1 = tf.where(tf.reshape(fooled, expand_shape), x + beta * (x1 - x), x1)
        return i + 1, tf.stop_gradient(x1), best, best_distance

    x1 = x if start is None else start
    state = (tf.constant(0), x1, x, tf.fill(tf.shape(labels), np.inf))
    _, _, best, best_distance = tf.while_loop(lambda i, *_: i < steps, body, state,
                                              maximum_iterations=steps)
    return tf.stop_gradient(best), best_distance


def _compiled_fab(model, image_shape, norm, steps, targeted, jit_compile):
    """One trace per model, configuration and image shape; the target rank, start
    radius, seed and step parameters are tensors, so changing them does not retrace."""
    def attack(forward, x, y, target_rank, start_radius, seed, alpha_max, eta, beta):
        targets = None
        if targeted:
            logits = tf.cast(forward(x), tf.float32)
            is_true = tf.one_hot(y, tf.shape(logits)[-1]) > 0
            ranked = tf.math.top_k(tf.where(is_true, logits.dtype.min, logits),
                                   logits.shape[-1]).indices
            targets = tf.gather(ranked, target_rank, axis=1)
        start = core.sphere_start(x, start_radius, norm, seed)
        return fab_run(forward, x, y, norm=norm, steps=steps, targets=targets, start=start,
                       alpha_max=alpha_max, eta=eta, beta=beta)

    scalar = tf.TensorSpec([], tf.float32)
    return core.compiled_for(
        model, ("fab", norm, steps, targeted), attack, image_shape,
        [tf.TensorSpec([], tf.int32), scalar, tf.TensorSpec([2], tf.int32), scalar, scalar,
         scalar], jit_compile)


def _check_fab_args(epsilon, steps, norm, restarts, n_target_classes, alpha_max, eta, beta):
    core.check_attack_args(epsilon, steps, norm, restarts=restarts)
    if int(n_target_classes) != n_target_classes or n_target_classes < 1:
        raise ValueError(f"n_target_classes must be an integer >= 1, got {n_target_classes}.")
    if not 0.0 <= float(alpha_max) <= 1.0:
        raise ValueError(f"alpha_max must be in [0, 1] (0.1 as published), got {alpha_max}.")
    if not float(eta) >= 1.0:
        raise ValueError(f"eta must be >= 1 (overshoot; 1.05 as published), got {eta}.")
    if not 0.0 < float(beta) <= 1.0:
        raise ValueError(f"beta must be in (0, 1] (backward step; 0.9 as published), got {beta}.")


def fab(model, x, y, epsilon=8 / 255, norm="linf", steps=100, restarts=1, targeted=False,
        n_target_classes=9, alpha_max=0.1, eta=1.05, beta=0.9, seed=0, jit_compile=False):
    """FAB (untargeted) and FAB-T: minimally distorted adversarial examples within `epsilon`.

    Runs restart after restart (FAB-T: for each of the `n_target_classes` most
    likely wrong classes of the clean image, `restarts` runs each), every run
    on the examples not yet fooled within `epsilon`; see the module docstring
    for the algorithm.

    Args:
        model: a Keras model returning logits; it is run with `training=False`.
        x: images in [0, 1], shape `(batch, ...)`.
        y: integer labels, shape `(batch,)`.
        epsilon: radius of the threat ball in pixel units: a run succeeds on an
            example when its smallest adversarial perturbation is within it;
            restarts start at distance `epsilon / 2`.
        norm: `"linf"` or `"l2"`.
        steps: iterations per run (>= 1); 100 in AutoAttack.
        restarts: runs per target (restart 0 starts at the clean image).
        targeted: FAB-T, towards one class per run (one backward pass per
            iteration instead of one per class).
        n_target_classes: targets for `targeted=True`, at most `num_classes - 1`.
        alpha_max, eta, beta: the largest weight of the clean image's
            projection, the overshoot and the backward step (0.1, 1.05, 0.9).
        seed: integer seed of the random restarts.
        jit_compile: compile each run with XLA.

    Returns:
        For each example the closest adversarial point the run that fooled it
        found, within the `norm`-ball of radius `epsilon` and in [0, 1]; the
        clean image where no run fooled it within `epsilon` (and where the
        model already misclassifies it).

    Example:

    ```python
    x_adv = keras_sgn.attacks.fab(model, x, y, epsilon=8/255, targeted=True)
    ```

    Reference:
        Croce & Hein, "Minimally distorted adversarial examples with a fast
        adaptive boundary attack", ICML 2020. https://github.com/fra31/auto-attack
    """
    _check_fab_args(epsilon, steps, norm, restarts, n_target_classes, alpha_max, eta, beta)
    core.check_image_range(x)
    x = np.asarray(x, np.float32)
    y = np.asarray(y).reshape(-1).astype(np.int32)
    if len(y) != len(x):
        raise ValueError(f"y must hold one label per image: {len(y)} labels for {len(x)} images.")
    if len(x) == 0:
        return tf.constant(x)
    n_classes = int(np.asarray(model(x[:1], training=False)).shape[-1])
    n_targets = min(int(n_target_classes), n_classes - 1) if targeted else 1
    run = _compiled_fab(model, x.shape[1:], norm, int(steps), bool(targeted), bool(jit_compile))
    x_adv = _run_until_fooled(run, x, y, _predictions(model, x) == y, epsilon, n_targets,
                              int(restarts), int(seed), (alpha_max, eta, beta))
    return core.project(tf.constant(x_adv), tf.constant(x), epsilon, norm)


def _run_until_fooled(run, x, y, todo, epsilon, n_targets, restarts, seed, settings):
    """Each target's restarts in turn, each on the examples `todo` (correct, not yet
    fooled within `epsilon`); returns the images with every success written in."""
    settings = [tf.constant(value, tf.float32) for value in settings]
    x_adv = x.copy()
    for target_rank in range(n_targets):
        for restart in range(restarts):
            index = np.flatnonzero(todo)
            if index.size == 0:
                return x_adv
            adv, distance = run(
                tf.constant(x[index]), tf.constant(y[index]), tf.constant(target_rank),
                tf.constant(0.5 * epsilon if restart > 0 else 0.0, tf.float32),
                tf.constant([seed + 2 * restart, 2 * target_rank], tf.int32), *settings)
            success = np.asarray(distance) <= epsilon
            x_adv[index[success]] = np.asarray(adv)[success]
            todo[index[success]] = False
    return x_adv


def _predictions(model, x, batch_size=512):
    return np.concatenate([np.argmax(np.asarray(model(x[i:i + batch_size], training=False)), -1)
                           for i in range(0, len(x), batch_size)])
