"""The attack core: one set of primitives for training and evaluation.

Every gradient attack in the project is built from the same four pieces:
`random_start`, `input_gradient`, `ascent_step` and `project`, looped by
`perturb`. Training methods (`keras_sgn.methods`) call `perturb` for their
inner maximisation (its last iterate); evaluation calls `pgd` / `fgsm`, which
keep each example's worst iterate (`pgd_run`), add argument checks, restarts
with the per-example worst case, and compilation (`compiled_for`: one trace
per model and configuration, cached without keeping the model alive).

Conventions (the same in every package): images are float32 in [0, 1], epsilon is in
pixel units, models return logits, and attacks run the model with
`training=False` so BatchNorm uses its moving statistics.
"""

import functools
import weakref

import numpy as np
import tensorflow as tf

from keras_sgn.attacks import folding
from keras_sgn.attacks.losses import (  # noqa: F401  (re-exported: their home before the split)
    LOSSES,
    cross_entropy_loss,
    dlr_loss,
    kl_loss,
    margin_loss,
    targeted_dlr_loss,
)

NORMS = ("linf", "l2")
_TINY = 1e-12


def _per_example_l2(tensor):
    axes = list(range(1, len(tensor.shape)))
    return tf.sqrt(tf.reduce_sum(tf.square(tensor), axis=axes, keepdims=True))


def per_example_norm(delta, norm):
    """The `norm` of each example's perturbation `delta`, shape `(batch,)`."""
    flat = tf.reshape(delta, [tf.shape(delta)[0], -1])
    if norm == "linf":
        return tf.reduce_max(tf.abs(flat), axis=1)
    return tf.sqrt(tf.reduce_sum(tf.square(flat), axis=1))


def project(x_adv, x, epsilon, norm):
    """Project `x_adv` onto the `norm`-ball of radius `epsilon` around `x`, then [0, 1]."""
    delta = x_adv - x
    if norm == "linf":
        delta = tf.clip_by_value(delta, -epsilon, epsilon)
    else:
        delta = delta * tf.minimum(1.0, epsilon / (_per_example_l2(delta) + _TINY))
    return tf.clip_by_value(x + delta, 0.0, 1.0)


def ascent_step(x_adv, gradient, step_size, norm):
    """One steepest-ascent step for the norm: sign for L-inf, unit L2 direction for L2."""
    if norm == "linf":
        return x_adv + step_size * tf.sign(gradient)
    return x_adv + step_size * gradient / (_per_example_l2(gradient) + _TINY)


def _uniform(shape, minval, maxval, seed):
    if seed is None:
        return tf.random.uniform(shape, minval, maxval)
    return tf.random.stateless_uniform(shape, seed, minval, maxval)


def random_start(x, epsilon, norm, seed=None):
    """A uniform random point of the threat ball around `x`, clipped to [0, 1].

    `seed` is a shape-[2] integer tensor for stateless draws (the training step
    folds the replica id into it so replicas draw different starts), or None.
    """
    if norm == "linf":
        noise = _uniform(tf.shape(x), -epsilon, epsilon, seed)
    else:
        if seed is None:
            direction = tf.random.normal(tf.shape(x))
        else:
            direction = tf.random.stateless_normal(tf.shape(x), seed)
        direction = direction / (_per_example_l2(direction) + _TINY)
        radius_seed = None if seed is None else seed + 1
        radius = _uniform(tf.concat([tf.shape(x)[:1], tf.ones_like(tf.shape(x)[1:])], 0),
                          0.0, 1.0, radius_seed)
        noise = direction * radius * epsilon
    return tf.clip_by_value(x + noise, 0.0, 1.0)


def sphere_start(x, radius, norm, seed=None):
    """A random point at `norm`-distance exactly `radius` from `x`, clipped to [0, 1].

    The start of APGD and of FAB's restarts in the reference implementation:
    a uniform (L-inf) or Gaussian (L2) draw rescaled to norm `radius`, so the
    L-inf start touches the ball's surface and the L2 start lies on the sphere.
    """
    if norm == "linf":
        draw = _uniform(tf.shape(x), -1.0, 1.0, seed)
    elif seed is None:
        draw = tf.random.normal(tf.shape(x))
    else:
        draw = tf.random.stateless_normal(tf.shape(x), seed)
    size = tf.reshape(per_example_norm(draw, norm),
                      tf.concat([[-1], tf.ones_like(tf.shape(x)[1:])], 0))
    return tf.clip_by_value(x + radius * draw / (size + _TINY), 0.0, 1.0)


def input_gradient(forward, x_adv, target, loss_fn):
    """Gradient of the summed per-example loss with respect to the input.

    Summing (rather than averaging) keeps each example's gradient independent
    of the batch size. Returns `(gradient, logits)`.
    """
    with tf.GradientTape() as tape:
        tape.watch(x_adv)
        logits = forward(x_adv)
        loss = tf.reduce_sum(loss_fn(target, logits))
    # A model that cuts the input gradient (stop_gradient) yields zeros, not
    # None: the attack then fails visibly instead of crashing.
    gradient = tape.gradient(loss, x_adv, unconnected_gradients=tf.UnconnectedGradients.ZERO)
    return gradient, logits


def perturb(forward, x, target, *, epsilon, step_size, steps, norm="linf",
            loss_fn=cross_entropy_loss, start=None):
    """Projected gradient ascent on `loss_fn(target, forward(x_adv))`: the loop.

    Args:
        forward: callable images -> logits (already in inference mode).
        x: clean images in [0, 1].
        target: what `loss_fn` compares the logits with (labels or probabilities).
        epsilon, step_size: in pixel units; tensors or floats.
        steps: number of ascent steps (a Python int; 0 returns `start`).
        norm: `"linf"` or `"l2"`.
        loss_fn: per-example loss to maximise.
        start: the starting point (default `x`), e.g. from `random_start`.
    Returns:
        The adversarial images, with gradients stopped.
    """
    x_adv = x if start is None else start
    if steps <= 0:
        return tf.stop_gradient(x_adv)

    def body(i, x_adv):
        gradient, _ = input_gradient(forward, x_adv, target, loss_fn)
        x_adv = project(ascent_step(x_adv, gradient, step_size, norm), x, epsilon, norm)
        return i + 1, tf.stop_gradient(x_adv)

    _, x_adv = tf.while_loop(
        lambda i, _: i < steps, body, (tf.constant(0), x_adv), maximum_iterations=steps
    )
    return x_adv


# ---------------------------------------------------------------------------
# Public attacks for evaluation (and for users).


_LOSS_NAMES = {"ce": "cross-entropy", "cw": "margin", "dlr": "difference of logits ratio"}


def check_attack_args(epsilon, steps=1, norm="linf", loss="ce", restarts=1, step_size=None,
                      losses=("ce", "cw")):
    """Validate attack arguments up front; errors name the parameter and the fix.

    `losses` lists the loss names the calling attack accepts.
    """
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {NORMS}, got {norm!r}.")
    if loss not in losses:
        names = [f"{name!r} ({_LOSS_NAMES.get(name, name)})" for name in losses]
        choices = " or ".join([", ".join(names[:-1]), names[-1]] if len(names) > 1 else names)
        raise ValueError(f"loss must be {choices}, got {loss!r}.")
    if not float(epsilon) >= 0.0:
        raise ValueError(
            f"epsilon must be >= 0 (pixel units, e.g. 8/255 for CIFAR10 L-inf), got {epsilon}."
        )
    if int(steps) != steps or steps < 1:
        raise ValueError(f"steps must be an integer >= 1, got {steps}.")
    if int(restarts) != restarts or restarts < 1:
        raise ValueError(f"restarts must be an integer >= 1, got {restarts}.")
    if step_size is not None and not float(step_size) > 0.0:
        raise ValueError(f"step_size must be > 0, got {step_size}.")


def check_image_range(x, name="x"):
    """Raise a clear error if eager images are not finite or outside [0, 1].

    One pass over the input, before any attack work (a NaN pixel would
    otherwise pass through every projection and clip to the output)."""
    if not tf.executing_eagerly():
        return
    values = np.asarray(x)
    if not values.size:
        return
    low, high = values.min(), values.max()  # NaN if any value is NaN
    if not (np.isfinite(low) and np.isfinite(high)):
        bad = int(np.sum(~np.isfinite(values)))
        raise ValueError(
            f"{name} must be finite images in [0, 1]. Received: {bad} NaN or infinite "
            f"values in {name} of shape {values.shape}. A non-finite pixel has no meaningful "
            "attack; fix the data or the preprocessing that produced it.")
    if low < 0.0 or high > 1.0:
        raise ValueError(
            f"{name} must hold images in [0, 1] (got min {low:.4g}, "
            f"max {high:.4g}). Divide uint8 images by 255; keep mean/std "
            "normalisation inside the model."
        )


def pgd_run(forward, x, labels, *, epsilon, step_size, steps, norm="linf",
            loss_fn=cross_entropy_loss, start=None):
    """One PGD run that keeps, per example, its worst iterate (graph-friendly).

    Same steps as `perturb`, but every iterate (the start included) is checked:
    an example returns its first misclassified iterate if any was, else its
    iterate of highest loss, so a point fooled at an early step and left again
    later still counts as fooled. Returns `(x_adv, fooled, loss)`.
    """
    labels = tf.cast(tf.reshape(labels, [-1]), tf.int32)
    x_adv = x if start is None else start
    expand_shape = tf.concat([[-1], tf.ones_like(tf.shape(x)[1:])], 0)

    def keep_worst(x_adv, logits, best, fooled, best_loss):
        loss = loss_fn(labels, logits)
        now_fooled = tf.argmax(logits, -1, output_type=tf.int32) != labels
        take = tf.logical_and(tf.logical_not(fooled),
                              tf.logical_or(now_fooled, loss > best_loss))
        best = tf.where(tf.reshape(take, expand_shape), x_adv, best)
        return best, tf.logical_or(fooled, now_fooled), tf.where(take, loss, best_loss)

    def body(i, x_adv, best, fooled, best_loss):
        gradient, logits = input_gradient(forward, x_adv, labels, loss_fn)
        best, fooled, best_loss = keep_worst(x_adv, logits, best, fooled, best_loss)
        x_adv = project(ascent_step(x_adv, gradient, step_size, norm), x, epsilon, norm)
        return i + 1, tf.stop_gradient(x_adv), best, fooled, best_loss

    state = (tf.constant(0), x_adv, x_adv, tf.zeros_like(labels, tf.bool),
             tf.fill(tf.shape(labels), -np.inf))
    _, x_adv, best, fooled, best_loss = tf.while_loop(
        lambda i, *_: i < steps, body, state, maximum_iterations=steps)
    best, fooled, best_loss = keep_worst(x_adv, forward(x_adv), best, fooled, best_loss)
    return tf.stop_gradient(best), fooled, best_loss


def worst_case_pgd(forward, x, y, *, epsilon, step_size, steps, norm="linf",
                   loss_fn=cross_entropy_loss, use_random_start=True, restarts=1, seed=None):
    """PGD with restarts, keeping each example's worst case over every iterate of
    every run: a misclassified point once one is found, otherwise the highest
    loss. Graph-friendly core of `pgd`, also used by the validation step of
    `SGNModel`."""
    best = x
    best_loss = tf.fill(tf.shape(y), -np.inf)
    best_fooled = tf.zeros(tf.shape(y), tf.bool)
    expand_shape = tf.concat([[-1], tf.ones_like(tf.shape(x)[1:])], 0)
    for restart in range(restarts):
        restart_seed = None if seed is None else seed + [2 * restart, 0]
        start = random_start(x, epsilon, norm, restart_seed) if use_random_start else x
        x_adv, fooled, adv_loss = pgd_run(forward, x, y, epsilon=epsilon, step_size=step_size,
                                          steps=steps, norm=norm, loss_fn=loss_fn, start=start)
        take = tf.logical_and(tf.logical_not(best_fooled),
                              tf.logical_or(fooled, adv_loss > best_loss))
        best = tf.where(tf.reshape(take, expand_shape), x_adv, best)
        best_loss = tf.where(take, adv_loss, best_loss)
        best_fooled = tf.logical_or(best_fooled, fooled)
    return best


def weak_forward(model):
    """`images -> model(images, training=False)` holding only a weak reference to
    `model`, so a cached compiled attack does not keep its model alive; with its
    BatchNorms folded where `folding.folded_forward` can (the same function, cheaper)."""
    folded = folding.folded_forward(model)
    if folded is not None:
        return folded
    model_ref = weakref.ref(model)

    def forward(images):
        return model_ref()(images, training=False)

    return forward


_COMPILED = weakref.WeakKeyDictionary()


def compiled_for(model, key, attack, image_shape, scalar_specs, jit_compile=False):
    """One `tf.function` per model, static configuration `key` and image shape.

    `attack(forward, x, y, *scalars)` gets the model's inference-mode forward
    pass (through a weak reference: the cache lives as long as the model and no
    longer) and is traced once with an unknown batch dimension, so the
    evaluation's shrinking subsets of still-robust points reuse the trace; the
    numeric settings (`scalar_specs`, e.g. epsilon and the seed) are tensors, so
    changing them does not retrace either.
    """
    per_model = _COMPILED.setdefault(model, {})
    key = (key, tuple(image_shape), jit_compile)
    if key not in per_model:
        forward = weak_forward(model)
        signature = [tf.TensorSpec([None, *image_shape], tf.float32),
                     tf.TensorSpec([None], tf.int32), *scalar_specs]
        # A partial, not a lambda: TensorFlow's retracing detector keys on the Python
        # function's code object, which every lambda made here shares, so seven attacks
        # each traced once read as "5 out of the last 7 calls triggered retracing". A
        # partial is its own key: only a real retrace of this function would warn.
        per_model[key] = tf.function(functools.partial(attack, forward),
                                     input_signature=signature, jit_compile=jit_compile)
    return per_model[key]


_SCALAR = tf.TensorSpec([], tf.float32)
_SEED = tf.TensorSpec([2], tf.int32)


def _compiled_attack(model, image_shape, norm, steps, loss, use_random_start, restarts,
                     jit_compile):
    def attack(forward, x, y, epsilon, step_size, seed):
        return worst_case_pgd(
            forward, x, y, epsilon=epsilon, step_size=step_size, steps=steps, norm=norm,
            loss_fn=LOSSES[loss], use_random_start=use_random_start, restarts=restarts,
            seed=seed)

    return compiled_for(model, ("pgd", norm, steps, loss, use_random_start, restarts), attack,
                        image_shape, [_SCALAR, _SCALAR, _SEED], jit_compile)


def pgd(model, x, y, epsilon=8 / 255, step_size=None, steps=10, norm="linf", loss="ce",
        random_start=True, restarts=1, seed=0, jit_compile=False):
    """Projected gradient descent attack (Madry et al. 2018), batched and compiled.

    Args:
        model: a Keras model returning logits; it is run with `training=False`.
        x: images in [0, 1], shape `(batch, H, W, C)`.
        y: integer labels, shape `(batch,)`.
        epsilon: radius of the threat ball in pixel units.
        step_size: ascent step; default `epsilon / 4` (2/255 at 8/255).
        steps: number of steps (>= 1).
        norm: `"linf"` or `"l2"`.
        loss: `"ce"` (cross-entropy) or `"cw"` (Carlini-Wagner margin).
        random_start: start from a uniform point of the ball.
        restarts: independent runs; each example keeps its worst case over
            every iterate of every run (misclassified if any iterate fooled the
            model, else the highest loss).
        seed: integer seed of the random starts (reproducible attacks).
        jit_compile: compile the attack with XLA.

    Returns:
        Adversarial images, within the ball around `x` and in [0, 1].

    Example:

    ```python
    x_adv = keras_sgn.attacks.pgd(model, images, labels, epsilon=8/255, steps=20)
    ```

    Reference:
        Madry et al., "Towards Deep Learning Models Resistant to Adversarial
        Attacks", ICLR 2018. Carlini & Wagner, IEEE S&P 2017 (margin loss).
    """
    check_attack_args(epsilon, steps, norm, loss, restarts, step_size)
    check_image_range(x)
    step_size = epsilon / 4 if step_size is None else step_size
    x = tf.convert_to_tensor(x, tf.float32)
    attack = _compiled_attack(model, x.shape[1:], norm, int(steps), loss, bool(random_start),
                              int(restarts), bool(jit_compile))
    y = tf.cast(tf.reshape(tf.convert_to_tensor(y), [-1]), tf.int32)
    seed_tensor = tf.constant([int(seed), 0], tf.int32)
    return attack(x, y, tf.constant(epsilon, tf.float32), tf.constant(step_size, tf.float32),
                  seed_tensor)


def fgsm(model, x, y, epsilon=8 / 255, norm="linf", loss="ce", random_start=False,
         step_size=None, seed=0, jit_compile=False):
    """Fast gradient sign method (Goodfellow et al. 2015): one step of `pgd`.

    With `random_start=True` and `step_size=1.25 * epsilon` this is the FGSM-RS
    attack of "Fast is better than free" (Wong et al. 2020).
    """
    step_size = epsilon if step_size is None else step_size
    return pgd(model, x, y, epsilon=epsilon, step_size=step_size, steps=1, norm=norm,
               loss=loss, random_start=random_start, restarts=1, seed=seed,
               jit_compile=jit_compile)
