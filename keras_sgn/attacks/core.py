"""The attack core: one set of primitives for training and evaluation.

Every gradient attack in the project is built from the same four pieces:
`random_start`, `input_gradient`, `ascent_step` and `project`, looped by
`perturb`. Training methods (`keras_sgn.methods`) call `perturb` for their
inner maximisation; evaluation calls `pgd` / `fgsm`, which add argument
checks, restarts with the per-example worst case, and compilation.

Conventions (DESIGN section 4): images are float32 in [0, 1], epsilon is in
pixel units, models return logits, and attacks run the model with
`training=False` so BatchNorm uses its moving statistics.
"""

import weakref

import numpy as np
import tensorflow as tf

NORMS = ("linf", "l2")
_TINY = 1e-12


def cross_entropy_loss(labels, logits):
    """Per-example softmax cross-entropy for integer `labels`."""
    labels = tf.cast(tf.reshape(labels, [-1]), tf.int32)
    return tf.nn.sparse_softmax_cross_entropy_with_logits(
        labels=labels, logits=tf.cast(logits, tf.float32)
    )


def margin_loss(labels, logits):
    """Per-example Carlini-Wagner margin `max_{j != y} z_j - z_y` (to maximise)."""
    labels = tf.cast(tf.reshape(labels, [-1]), tf.int32)
    logits = tf.cast(logits, tf.float32)
    one_hot = tf.one_hot(labels, tf.shape(logits)[-1], dtype=logits.dtype)
    true_logit = tf.reduce_sum(one_hot * logits, axis=-1)
    other_logit = tf.reduce_max(logits - 1e9 * one_hot, axis=-1)
    return other_logit - true_logit


def kl_loss(target_probabilities, logits):
    """Per-example `KL(p || softmax(logits))`, the TRADES inner objective."""
    p = tf.cast(target_probabilities, tf.float32)
    log_q = tf.nn.log_softmax(tf.cast(logits, tf.float32), axis=-1)
    return tf.reduce_sum(p * (tf.math.log(p + _TINY) - log_q), axis=-1)


def dlr_loss(labels, logits):
    """Per-example Difference of Logits Ratio (Croce & Hein 2020), to maximise.

    `-(z_y - max_{i != y} z_i) / (z_pi1 - z_pi3 + 1e-12)` with `pi` sorting the
    logits in decreasing order: the margin, made invariant to shifting and
    scaling the logits. Needs at least 3 classes.
    """
    labels = tf.cast(tf.reshape(labels, [-1]), tf.int32)
    logits = tf.cast(logits, tf.float32)
    is_true = tf.one_hot(labels, tf.shape(logits)[-1], on_value=True, off_value=False)
    true_logit = tf.gather(logits, labels, axis=1, batch_dims=1)
    other_logit = tf.reduce_max(tf.where(is_true, logits.dtype.min, logits), axis=-1)
    top = tf.math.top_k(logits, 3).values
    return -(true_logit - other_logit) / (top[:, 0] - top[:, 2] + _TINY)


def targeted_dlr_loss(labels, logits, target_labels):
    """Per-example targeted DLR (Croce & Hein 2020), to maximise towards `target_labels`.

    `-(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2 + 1e-12)`. Needs at least 4 classes.
    """
    labels = tf.cast(tf.reshape(labels, [-1]), tf.int32)
    target_labels = tf.cast(tf.reshape(target_labels, [-1]), tf.int32)
    logits = tf.cast(logits, tf.float32)
    true_logit = tf.gather(logits, labels, axis=1, batch_dims=1)
    target_logit = tf.gather(logits, target_labels, axis=1, batch_dims=1)
    top = tf.math.top_k(logits, 4).values
    return -(true_logit - target_logit) / (top[:, 0] - 0.5 * (top[:, 2] + top[:, 3]) + _TINY)


LOSSES = {"ce": cross_entropy_loss, "cw": margin_loss, "kl": kl_loss, "dlr": dlr_loss}


def _per_example_l2(tensor):
    axes = list(range(1, len(tensor.shape)))
    return tf.sqrt(tf.reduce_sum(tf.square(tensor), axis=axes, keepdims=True))


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
    """Raise a clear error if eager images are outside [0, 1]."""
    if not tf.executing_eagerly():
        return
    values = np.asarray(x)
    if values.size and (values.min() < 0.0 or values.max() > 1.0):
        raise ValueError(
            f"{name} must hold images in [0, 1] (got min {values.min():.4g}, "
            f"max {values.max():.4g}). Divide uint8 images by 255; keep mean/std "
            "normalisation inside the model."
        )


def worst_case_pgd(forward, x, y, *, epsilon, step_size, steps, norm="linf",
                   loss_fn=cross_entropy_loss, use_random_start=True, restarts=1, seed=None):
    """PGD with restarts, keeping each example's worst case: a misclassified
    point once one is found, otherwise the highest loss. Graph-friendly core of
    `pgd`, also used by the validation step of `SGNModel`."""
    best = x
    best_loss = tf.fill(tf.shape(y), -np.inf)
    best_fooled = tf.zeros(tf.shape(y), tf.bool)
    labels = tf.cast(tf.reshape(y, [-1]), tf.int32)
    for restart in range(restarts):
        restart_seed = None if seed is None else seed + [2 * restart, 0]
        start = random_start(x, epsilon, norm, restart_seed) if use_random_start else x
        x_adv = perturb(forward, x, y, epsilon=epsilon, step_size=step_size,
                        steps=steps, norm=norm, loss_fn=loss_fn, start=start)
        if restarts == 1:
            return x_adv
        logits = forward(x_adv)
        adv_loss = loss_fn(y, logits)
        fooled = tf.not_equal(tf.argmax(logits, -1, output_type=tf.int32), labels)
        take = tf.logical_and(tf.logical_not(best_fooled),
                              tf.logical_or(fooled, adv_loss > best_loss))
        mask = tf.reshape(take, [-1] + [1] * (len(x.shape) - 1))
        best = tf.where(mask, x_adv, best)
        best_loss = tf.where(take, adv_loss, best_loss)
        best_fooled = tf.logical_or(best_fooled, fooled)
    return best


_COMPILED = weakref.WeakKeyDictionary()


def compiled_for(model, key, attack, image_shape, scalar_specs, jit_compile=False):
    """One `tf.function` per model, static configuration `key` and image shape.

    `attack(x, y, *scalars)` is traced once with an unknown batch dimension, so
    the evaluation's shrinking subsets of still-robust points reuse the trace;
    the numeric settings (`scalar_specs`, e.g. epsilon and the seed) are tensors,
    so changing them does not retrace either.
    """
    per_model = _COMPILED.setdefault(model, {})
    key = (key, tuple(image_shape), jit_compile)
    if key not in per_model:
        signature = [tf.TensorSpec([None, *image_shape], tf.float32),
                     tf.TensorSpec([None], tf.int32), *scalar_specs]
        per_model[key] = tf.function(attack, input_signature=signature,
                                     jit_compile=jit_compile)
    return per_model[key]


_SCALAR = tf.TensorSpec([], tf.float32)
_SEED = tf.TensorSpec([2], tf.int32)


def _compiled_attack(model, image_shape, norm, steps, loss, use_random_start, restarts,
                     jit_compile):
    def attack(x, y, epsilon, step_size, seed):
        return worst_case_pgd(
            lambda images: model(images, training=False), x, y, epsilon=epsilon,
            step_size=step_size, steps=steps, norm=norm, loss_fn=LOSSES[loss],
            use_random_start=use_random_start, restarts=restarts, seed=seed)

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
        restarts: independent runs; each example keeps its worst case
            (misclassified if any run fooled the model, else the highest loss).
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
