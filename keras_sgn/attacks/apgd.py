"""Auto-PGD (Croce & Hein 2020): PGD with momentum and an adaptive step size.

Built on the attack core (`keras_sgn.attacks.core`): the random start, input
gradients, ascent directions and the projection onto ball and [0, 1] are the
same primitives PGD and the training methods use. Only the schedule is new:

* the step size starts at `2 * epsilon` and is halved, per example, at the
  checkpoints of the reference implementation: the first after
  `max(int(0.22 * steps), 1)` iterations, each next interval
  `max(int(0.03 * steps), 1)` shorter, down to `max(int(0.06 * steps), 1)`
  (22, 41, 57, 70, 80, 87, 93, 99 for 100 steps). It is halved when the loss
  increased in at most `rho` of the iterations since the last checkpoint, or
  when the step size was not halved at the previous checkpoint (never at the
  first) and the best loss has not improved since; a halving restarts from the
  best point found so far;
* each step is `z = P(x_k + eta * dir(grad))` followed by the momentum update
  `x_{k+1} = P(x_k + alpha (z - x_k) + (1 - alpha)(x_k - x_{k-1}))`;
* the start is a random point on the ball's surface (`core.sphere_start`).

Parity with the reference code (fra31/auto-attack) where it differs from the
paper's pseudo-code: the oscillation test is `<=`; each iterate's loss is
compared with the previous iterate's, also across a restart from the best
point; the first iterate is compared with 0 (the reference's zero-initialised
loss history).

Losses: cross-entropy (`"ce"`), the Difference of Logits Ratio (`"dlr"`), and
with `targeted=True` the targeted DLR (or targeted cross-entropy) towards each
of the `n_target_classes` most likely wrong classes of the clean input, which
is AutoAttack's APGD-T.
"""

import numpy as np
import tensorflow as tf

from keras_sgn.attacks import core

APGD_LOSSES = ("ce", "dlr")


def apgd_checkpoints(steps):
    """The iterations `w_1 < w_2 < ...` (<= `steps`) at which the step size may be halved,
    as the reference implementation places them."""
    interval = max(int(0.22 * steps), 1)
    shortening, shortest = max(int(0.03 * steps), 1), max(int(0.06 * steps), 1)
    points = [interval]
    while True:
        interval = max(interval - shortening, shortest)
        if points[-1] + interval > steps:
            return tuple(points)
        points.append(points[-1] + interval)


def step_size_halved(increases, interval, rho, reduced_last, loss_best, loss_best_last):
    """APGD's rule at a checkpoint, per example: halve the step size if the loss
    increased in at most `rho * interval` of the iterations since the last
    checkpoint (oscillation), or if the step size was kept at the previous
    checkpoint and the best loss has not improved since (stall)."""
    oscillating = increases <= rho * interval
    stalled = tf.logical_and(tf.logical_not(reduced_last), loss_best <= loss_best_last)
    return tf.logical_or(oscillating, stalled)


def _schedule(steps):
    """Per-iteration tables: is iteration k a checkpoint, and its distance to the previous one."""
    is_checkpoint = np.zeros(steps + 1, bool)
    interval = np.zeros(steps + 1, np.float32)
    previous = 0
    for w in apgd_checkpoints(steps):
        is_checkpoint[w] = True
        interval[w] = w - previous
        previous = w
    return tf.constant(is_checkpoint), tf.constant(interval)


def _predicted(logits):
    return tf.argmax(logits, -1, output_type=tf.int32)


def apgd_run(forward, x, labels, loss_fn, *, epsilon, norm, steps, rho=0.75, momentum=0.75,
             seed=None):
    """One APGD run from a random start: the algorithm itself, graph-friendly.

    Args:
        forward: callable images -> logits (already in inference mode).
        x: clean images in [0, 1].
        labels: int32 true labels, shape `(batch,)`.
        loss_fn: per-example loss `loss_fn(labels, logits)` to maximise.
        epsilon: radius of the ball (float or scalar tensor).
        norm: `"linf"` or `"l2"`.
        steps: number of iterations (Python int >= 1).
        rho, momentum: APGD's oscillation threshold and momentum `alpha`.
        seed: shape-[2] int32 seed of the random start (or None).

    Returns:
        `(x_adv, fooled)`: for each example the first misclassified iterate if
        any iterate was misclassified, otherwise the iterate of highest loss;
        and whether it is misclassified.
    """
    expand_shape = tf.concat([[-1], tf.ones([len(x.shape) - 1], tf.int32)], 0)

    def expand(per_example):
        return tf.reshape(per_example, expand_shape)

    evaluate = _evaluator(forward, labels, loss_fn)
    is_checkpoint, interval = _schedule(steps)
    epsilon = tf.cast(epsilon, tf.float32)
    momentum, rho = tf.cast(momentum, tf.float32), tf.cast(rho, tf.float32)

    x0 = core.sphere_start(x, epsilon, norm, seed)
    grad0, loss0, fooled0 = evaluate(x0)
    batch_zeros = tf.zeros_like(loss0)
    state = dict(
        # prev_loss 0: the reference compares the first iterate with its zero-filled history.
        x_cur=x0, x_prev=x0, grad=grad0, prev_loss=batch_zeros, eta=batch_zeros + 2.0 * epsilon,
        x_best=x0, grad_best=grad0, loss_best=loss0, x_fooled=x0, fooled=fooled0,
        increases=batch_zeros,
        reduced_last=tf.ones_like(fooled0),  # no stall test at the first checkpoint
        loss_best_last=loss0,
    )

    def body(i, s):
        s = dict(s)
        alpha = tf.where(i == 0, 1.0, momentum)
        x_cur = s["x_cur"]
        z = core.project(core.ascent_step(x_cur, s["grad"], expand(s["eta"]), norm),
                         x, epsilon, norm)
        x_new = core.project(x_cur + alpha * (z - x_cur) + (1.0 - alpha) * (x_cur - s["x_prev"]),
                             x, epsilon, norm)
        grad, loss, fooled = evaluate(x_new)

        newly_fooled = tf.logical_and(fooled, tf.logical_not(s["fooled"]))
        s["x_fooled"] = tf.where(expand(newly_fooled), x_new, s["x_fooled"])
        s["fooled"] = tf.logical_or(s["fooled"], fooled)

        s["increases"] += tf.cast(loss > s["prev_loss"], tf.float32)
        improved = loss > s["loss_best"]
        s["x_best"] = tf.where(expand(improved), x_new, s["x_best"])
        s["grad_best"] = tf.where(expand(improved), grad, s["grad_best"])
        s["loss_best"] = tf.where(improved, loss, s["loss_best"])
        s["x_prev"], s["x_cur"], s["grad"], s["prev_loss"] = x_cur, x_new, grad, loss
        # Checkpoint after iteration k = i + 1.
        _checkpoint(s, tf.gather(is_checkpoint, i + 1), tf.gather(interval, i + 1), rho, expand)
        return i + 1, s

    _, state = tf.while_loop(lambda i, _: i < steps, body, (tf.constant(0), state),
                             maximum_iterations=steps)
    x_adv = tf.where(expand(state["fooled"]), state["x_fooled"], state["x_best"])
    return tf.stop_gradient(x_adv), state["fooled"]


def _evaluator(forward, labels, loss_fn):
    """`x_adv -> (gradient, loss, fooled)`, stopped, with non-finite gradients zeroed."""
    def evaluate(x_adv):
        gradient, logits = core.input_gradient(forward, x_adv, labels, loss_fn)
        # DLR divides by a logit gap that can vanish; never let inf/nan reach the iterate.
        gradient = tf.where(tf.math.is_finite(gradient), gradient, tf.zeros_like(gradient))
        loss = loss_fn(labels, logits)
        return tf.stop_gradient(gradient), tf.stop_gradient(loss), _predicted(logits) != labels

    return evaluate


def _checkpoint(s, at_checkpoint, interval, rho, expand):
    """At a checkpoint, update the run's state `s` in place: halve the step size and
    restart from the best point where `step_size_halved`. The next iterate's loss is
    still compared with the last one's (not the best's), as in the reference."""
    reduce = tf.logical_and(at_checkpoint, step_size_halved(
        s["increases"], interval, rho, s["reduced_last"], s["loss_best"], s["loss_best_last"]))
    s["eta"] = tf.where(reduce, 0.5 * s["eta"], s["eta"])
    s["x_cur"] = tf.where(expand(reduce), s["x_best"], s["x_cur"])
    s["grad"] = tf.where(expand(reduce), s["grad_best"], s["grad"])
    s["reduced_last"] = tf.where(at_checkpoint, reduce, s["reduced_last"])
    s["loss_best_last"] = tf.where(at_checkpoint, s["loss_best"], s["loss_best_last"])
    s["increases"] = tf.where(at_checkpoint, 0.0, s["increases"])


def _target_loss(loss, targeted, target_labels):
    if not targeted:
        return core.LOSSES[loss]
    if loss == "dlr":
        return lambda labels, logits: core.targeted_dlr_loss(labels, logits, target_labels)
    return lambda labels, logits: -core.cross_entropy_loss(target_labels, logits)


def worst_case_apgd(forward, x, y, *, epsilon, norm="linf", loss="ce", steps=100, restarts=1,
                    targeted=False, n_target_classes=9, seed=None, rho=0.75, momentum=0.75):
    """APGD (or APGD-T) over restarts and target classes, keeping each example's worst case.

    Graph-friendly core of `apgd`. A misclassified point wins (the clean image
    itself if the model already misclassifies it); otherwise the point of
    highest untargeted `loss`. Run `r` uses target `r // restarts` (the
    (r // restarts + 1)-th most likely wrong class of the clean input) and the
    random-start seed `seed + [2 * (r % restarts), 2 * (r // restarts)]`, so
    the first run is the single-run attack and more restarts never weaken it.
    `n_target_classes` must be at most `num_classes - 1`.
    """
    labels = tf.cast(tf.reshape(y, [-1]), tf.int32)
    x = tf.convert_to_tensor(x, tf.float32)
    clean_logits = tf.cast(forward(x), tf.float32)
    score_fn = core.LOSSES[loss]
    n_runs = restarts * (n_target_classes if targeted else 1)
    if targeted:
        is_true = tf.one_hot(labels, tf.shape(clean_logits)[-1], on_value=True, off_value=False)
        wrong = tf.where(is_true, clean_logits.dtype.min, clean_logits)
        targets = tf.math.top_k(wrong, n_target_classes).indices
    if seed is None:
        seed = tf.constant([0, 0], tf.int32)
    seed = tf.cast(seed, tf.int32)
    expand_shape = tf.concat([[-1], tf.ones([len(x.shape) - 1], tf.int32)], 0)

    def body(run, best, best_fooled, best_score):
        restart, target_index = run % restarts, run // restarts
        target_labels = tf.gather(targets, target_index, axis=1) if targeted else None
        x_adv, _ = apgd_run(
            forward, x, labels, _target_loss(loss, targeted, target_labels), epsilon=epsilon,
            norm=norm, steps=steps, rho=rho, momentum=momentum,
            seed=seed + tf.stack([2 * restart, 2 * target_index]))
        logits = forward(x_adv)
        fooled = _predicted(logits) != labels
        score = score_fn(labels, logits)
        take = tf.logical_and(tf.logical_not(best_fooled),
                              tf.logical_or(fooled, score > best_score))
        best = tf.where(tf.reshape(take, expand_shape), x_adv, best)
        best_score = tf.where(take, score, best_score)
        return run + 1, best, tf.logical_or(best_fooled, fooled), best_score

    best_fooled = _predicted(clean_logits) != labels
    best_score = tf.fill(tf.shape(labels), -np.inf)
    _, best, _, _ = tf.while_loop(
        lambda run, *_: run < n_runs, body, (tf.constant(0), x, best_fooled, best_score),
        maximum_iterations=n_runs)
    return tf.stop_gradient(best)


def _compiled_apgd(model, image_shape, norm, loss, steps, restarts, targeted, n_target_classes,
                   jit_compile):
    """One trace per model, configuration and image shape (epsilon, seed, rho and momentum
    are tensors, so changing them does not retrace)."""
    def attack(forward, x, y, epsilon, seed, rho, momentum):
        return worst_case_apgd(
            forward, x, y, epsilon=epsilon, norm=norm,
            loss=loss, steps=steps, restarts=restarts, targeted=targeted,
            n_target_classes=n_target_classes, seed=seed, rho=rho, momentum=momentum)

    scalar = tf.TensorSpec([], tf.float32)
    return core.compiled_for(
        model, ("apgd", norm, loss, steps, restarts, targeted, n_target_classes), attack,
        image_shape, [scalar, tf.TensorSpec([2], tf.int32), scalar, scalar], jit_compile)


def _check_apgd_args(epsilon, steps, norm, loss, restarts, n_target_classes, rho, momentum):
    core.check_attack_args(epsilon, steps, norm, loss, restarts, losses=APGD_LOSSES)
    if int(n_target_classes) != n_target_classes or n_target_classes < 1:
        raise ValueError(f"n_target_classes must be an integer >= 1, got {n_target_classes}.")
    if not 0.0 <= float(rho) <= 1.0:
        raise ValueError(f"rho must be in [0, 1] (0.75 as published), got {rho}.")
    if not 0.0 <= float(momentum) <= 1.0:
        raise ValueError(f"momentum must be in [0, 1] (0.75 as published), got {momentum}.")


def _checked_num_classes(model, x, loss, targeted):
    """The model's number of classes, checked against what the loss needs."""
    num_classes = int(model(x[:1], training=False).shape[-1])
    needed = 4 if targeted else 3
    if loss == "dlr" and num_classes < needed:
        raise ValueError(
            f"loss='dlr'{' with targeted=True' if targeted else ''} needs a model with at least "
            f"{needed} classes (it uses the {needed} largest logits), got {num_classes}; "
            "use loss='ce'.")
    if targeted and num_classes < 2:
        raise ValueError("targeted=True needs a model with at least 2 classes.")
    return num_classes


def apgd(model, x, y, epsilon=8 / 255, norm="linf", loss="ce", steps=100, restarts=1,
         targeted=False, n_target_classes=9, seed=0, rho=0.75, momentum=0.75,
         jit_compile=False):
    """Auto-PGD (APGD-CE, APGD-DLR) and its targeted variant APGD-T, batched and compiled.

    A parameter-free PGD: the step size starts at `2 * epsilon` and is halved
    per example when progress stalls (restarting from the best point), with a
    momentum step; see the module docstring for the schedule.

    Args:
        model: a Keras model returning logits; it is run with `training=False`.
        x: images in [0, 1], shape `(batch, H, W, C)`.
        y: integer labels, shape `(batch,)`.
        epsilon: radius of the threat ball in pixel units.
        norm: `"linf"` or `"l2"`.
        loss: `"ce"` (cross-entropy) or `"dlr"` (Difference of Logits Ratio,
            needs >= 3 classes; >= 4 with `targeted=True`).
        steps: iterations per run (>= 1); 100 in AutoAttack.
        restarts: independent random starts per target; each example keeps its
            worst case (misclassified if any run fooled the model, else the
            highest loss). Restart 0 is the single run, so more restarts never
            weaken the attack.
        targeted: run the targeted loss (targeted DLR, or cross-entropy to the
            target minimised) once towards each of the `n_target_classes`
            highest wrong logits of the clean input (APGD-T).
        n_target_classes: number of target classes (>= 1) for `targeted=True`;
            at most `num_classes - 1` are used.
        seed: integer seed of the random starts (reproducible attacks).
        rho: the step size is halved when the loss increased in at most this
            fraction of the iterations since the last checkpoint (0.75 as published).
        momentum: weight `alpha` of the new step against the previous one
            (0.75 as published; 1 means no momentum).
        jit_compile: compile the attack with XLA.

    Returns:
        Adversarial images, within the ball around `x` and in [0, 1].

    Example:

    ```python
    x_adv = keras_sgn.attacks.apgd(model, x, y, epsilon=8/255, loss="dlr")
    x_adv = keras_sgn.attacks.apgd(model, x, y, epsilon=8/255, loss="dlr", targeted=True)
    ```

    Reference:
        Croce & Hein, "Reliable evaluation of adversarial robustness with an
        ensemble of diverse parameter-free attacks", ICML 2020.
    """
    _check_apgd_args(epsilon, steps, norm, loss, restarts, n_target_classes, rho, momentum)
    core.check_image_range(x)
    x = tf.convert_to_tensor(x, tf.float32)
    y = tf.cast(tf.reshape(tf.convert_to_tensor(y), [-1]), tf.int32)
    if x.shape[0] is not None and y.shape[0] is not None and x.shape[0] != y.shape[0]:
        raise ValueError(f"x and y must hold the same number of examples, got {x.shape[0]} "
                         f"images and {y.shape[0]} labels.")
    num_classes = _checked_num_classes(model, x, loss, targeted)
    n_targets = min(int(n_target_classes), num_classes - 1) if targeted else 1
    attack = _compiled_apgd(model, x.shape[1:], norm, loss, int(steps), int(restarts),
                            bool(targeted), n_targets, bool(jit_compile))
    return attack(x, y, tf.constant(epsilon, tf.float32), tf.constant([int(seed), 0], tf.int32),
                  tf.constant(rho, tf.float32), tf.constant(momentum, tf.float32))
