"""Square Attack (Andriushchenko et al., ECCV 2020): gradient-free, score-based.

The attack only reads the model's logits, so it is not fooled by masked or
obfuscated gradients; RobustBench/AutoAttack run it as the black-box member of
their ensemble. It performs a random search on the margin loss
`z_y - max_{j != y} z_j` (minimised; an example is done once it is negative,
i.e. misclassified): every iteration proposes, for each still-unfooled
example, a change restricted to a random square window and keeps it only if the
margin decreases.

The initial perturbation is drawn in numpy (a seeded `np.random.Generator`).
The L-inf search then runs in graph, `_QUERIES_PER_CALL` queries per compiled
call (stateless draws keyed by the seed and the iteration), so no query waits on
the host; the L2 search proposes in numpy, one compiled forward pass per query.
The model runs with `training=False`.
"""

import keras
import numpy as np
import tensorflow as tf

from keras_sgn.attacks.core import (
    check_attack_args,
    check_image_range,
    compiled_for,
    margin_loss,
    project,
)

_TINY = 1e-12
# Resampling cap for the L-inf window signs (the published code loops until the
# window changes the image; it would loop forever when no sign can change it).
_MAX_SIGN_RESAMPLES = 10
# Queries per compiled call of the L-inf search: the fooled examples are dropped
# between calls (they idle at most this many queries), the progress bar moves.
_QUERIES_PER_CALL = 25


def p_selection(p_init, iteration, n_queries):
    """The published piecewise-constant schedule of `p`, the fraction of pixels
    changed per iteration: halved at iterations 10, 50, 200, 500, 1000, 2000,
    4000, 6000 and 8000 of a 10,000-query budget, rescaled to `n_queries`."""
    it = int(iteration / n_queries * 10000)
    for bound, divisor in ((10, 1), (50, 2), (200, 4), (500, 8), (1000, 16), (2000, 32),
                           (4000, 64), (6000, 128), (8000, 256), (10000, 512)):
        if it <= bound:
            return p_init / divisor
    return p_init  # as published: past the budget the schedule restarts


def _compiled_square(model, image_shape):
    """The compiled `_margins_or_search`, one per model and image shape."""
    images = tf.TensorSpec([None, *image_shape], tf.float32)
    return compiled_for(model, ("square",), _margins_or_search, image_shape, [
        images, tf.TensorSpec([None], tf.float32), tf.TensorSpec([None], tf.int32),
        tf.TensorSpec([], tf.int32), tf.TensorSpec([2], tf.int32), tf.TensorSpec([], tf.float32)])


def _margin_function(model, image_shape):
    """Compiled (x, y) -> `z_y - max_{j != y} z_j` (numpy in and out)."""
    function = _compiled_square(model, image_shape)
    no_sides = np.zeros([0], np.int32)

    def margins_of(x, y):
        x = np.asarray(x, np.float32)
        return function(x, y, x, np.zeros(len(y), np.float32), no_sides, 0, [0, 0], 0.0)[1].numpy()

    return margins_of


def _eta_rectangle(a, b):
    """Published `pseudo_gaussian_pert_rectangles`: nested centred rectangles
    weighted `1 / (k + 1)^2`, unit Frobenius norm (shape `(a, b)`)."""
    delta = np.zeros([a, b])
    if a == 0 or b == 0:
        return delta
    corner = [a // 2, b // 2]
    for k in range(max(a // 2 + 1, b // 2 + 1)):
        delta[max(corner[0], 0):min(corner[0] + 2 * k + 1, a),
              max(corner[1], 0):min(corner[1] + 2 * k + 1, b)] += 1.0 / (k + 1) ** 2
        corner[0] -= 1
        corner[1] -= 1
    return delta / np.sqrt(np.sum(delta ** 2))


def _eta(s, rng):
    """Published `meta_pseudo_gaussian_pert`: two opposite pseudo-Gaussian halves
    of an `s x s` square, unit norm, transposed with probability 1/2."""
    delta = np.zeros([s, s])
    delta[:s // 2] = _eta_rectangle(s // 2, s)
    delta[s // 2:] = -_eta_rectangle(s - s // 2, s)
    delta /= np.sqrt(np.sum(delta ** 2))
    if rng.random() > 0.5:
        delta = delta.T
    return delta


def _l2_norms(delta):
    return np.sqrt(np.sum(delta ** 2, axis=(1, 2, 3), keepdims=True))


def _linf_init(x, epsilon, rng):
    """Vertical stripes: one random +-epsilon per column and channel."""
    n, _, w, c = x.shape
    stripes = epsilon * rng.choice([-1.0, 1.0], size=(n, 1, w, c))
    return np.clip(x + stripes, 0.0, 1.0)


def _linf_side(p, h, w):
    """The L-inf window side for the fraction `p`: `p * h * w` pixels, at least 1."""
    return min(max(int(round(np.sqrt(p * h * w))), 1), h, w)


def _window(n, h, w, side, key):
    """Per-example square windows of side `side` at uniform positions: bool `(n, h, w, 1)`."""
    top = tf.random.stateless_uniform([n], tf.random.experimental.stateless_fold_in(key, 0),
                                      0, h - side + 1, tf.int32)
    left = tf.random.stateless_uniform([n], tf.random.experimental.stateless_fold_in(key, 1),
                                       0, w - side + 1, tf.int32)
    rows = tf.range(h)[None, :, None]
    cols = tf.range(w)[None, None, :]
    return ((rows >= top[:, None, None]) & (rows < top[:, None, None] + side)
            & (cols >= left[:, None, None]) & (cols < left[:, None, None] + side))[..., None]


def _linf_candidates(x, x_best, epsilon, side, key):
    """Each example: a random window of side `side` set to a random +-epsilon per channel
    (graph code; `key` a stateless seed).

    As published, the signs of a window whose proposal would not change the image
    (e.g. the window already holds them) are redrawn, at most `_MAX_SIGN_RESAMPLES`
    draws in all. Whether a window changes the image is a per-channel question, so
    it is answered for +epsilon and -epsilon once and all draws are made at once:
    each example takes its first draw that changes the image, else its last draw.
    """
    n, h, w, c = tf.shape(x)[0], x.shape[1], x.shape[2], x.shape[3]
    inside = _window(n, h, w, side, key)

    def changes(value):  # (n, c): does setting the window to `value` change the channel?
        moved = tf.abs(tf.clip_by_value(x + value, 0.0, 1.0) - x_best) >= 1e-7
        return tf.reduce_any(tf.logical_and(moved, inside), axis=[1, 2])

    draws = tf.random.stateless_uniform(
        [_MAX_SIGN_RESAMPLES, n, c], tf.random.experimental.stateless_fold_in(key, 2), 0, 2,
        tf.int32) > 0  # True: +epsilon
    changed = tf.reduce_any(tf.where(draws, changes(epsilon), changes(-epsilon)), axis=-1)
    first = tf.argmax(tf.cast(changed, tf.int32), axis=0, output_type=tf.int32)
    pick = tf.where(tf.reduce_any(changed, axis=0), first, _MAX_SIGN_RESAMPLES - 1)
    positive = tf.gather(tf.transpose(draws, [1, 0, 2]), pick, axis=1, batch_dims=1)
    signs = tf.where(positive, epsilon, -epsilon)[:, None, None, :]
    return tf.where(inside, tf.clip_by_value(x + signs, 0.0, 1.0), x_best)


def _linf_search(forward, x, y, x_best, margin, sides, first, seed, epsilon):
    """Iterations `first, first + 1, ...` of the L-inf random search in one graph, one
    per entry of `sides` (the window side of each), stopping early once every example
    is fooled; fooled examples (margin <= 0) are left as they are. Iteration `i` draws
    from `seed` folded with `i`, so the draws do not depend on how the iterations are
    split into calls. Returns the new `(x_best, margin)`."""

    def body(i, x_best, margin):
        key = tf.random.experimental.stateless_fold_in(seed, first + i)
        x_new = _linf_candidates(x, x_best, epsilon, tf.gather(sides, i), key)
        new_margin = -margin_loss(y, forward(x_new))
        better = tf.logical_and(margin > 0, new_margin < margin)
        return (i + 1, tf.where(better[:, None, None, None], x_new, x_best),
                tf.where(better, new_margin, margin))

    _, x_best, margin = tf.while_loop(
        lambda i, _, margin: tf.logical_and(i < tf.size(sides), tf.reduce_any(margin > 0)),
        body, (tf.constant(0), x_best, margin))
    return x_best, margin


def _margins_or_search(forward, x, y, x_best, margin, sides, first, seed, epsilon):
    """Square's compiled function: with `sides`, `_linf_search`; without, `(x_best, the
    margins of x)` (the clean check, the initial query, the L2 queries). One function,
    so a model keeps one compiled Square per image shape."""
    return tf.cond(
        tf.size(sides) > 0,
        lambda: _linf_search(forward, x, y, x_best, margin, sides, first, seed, epsilon),
        lambda: (x_best, -margin_loss(y, forward(x))))


def _l2_init(x, epsilon, rng):
    """Published L2 init: a grid of `h // 5`-sided pseudo-Gaussian bumps with random
    signs per example and channel, rescaled to the L2 sphere, clipped to [0, 1]."""
    n, h, w, c = x.shape
    s = max(h // 5, 1)
    start = max((h - s * 5) // 2, 0)
    delta = np.zeros_like(x)
    top = start
    for _ in range(h // s):
        left = start
        for _ in range(w // s):
            bump = _eta(s, rng)[None, :, :, None] * rng.choice([-1.0, 1.0], size=(n, 1, 1, c))
            rows, cols = delta[:, top:top + s, left:left + s].shape[1:3]
            delta[:, top:top + s, left:left + s] += bump[:, :rows, :cols]
            left += s
        top += s
    return np.clip(x + delta / (_l2_norms(delta) + _TINY) * epsilon, 0.0, 1.0)


def _l2_candidates(x, x_best, epsilon, p, rng):
    """Published L2 update: move the perturbation mass of two windows (shared by the
    batch) into the first one, add a fresh pseudo-Gaussian square there, and
    rescale the whole perturbation to the L2 sphere (then clip to [0, 1])."""
    n, h, w, c = x.shape
    s = max(int(round(np.sqrt(p * h * w))), 3)
    if s % 2 == 0:
        s += 1
    s = min(s, h, w)
    top, left = rng.integers(0, h - s + 1), rng.integers(0, w - s + 1)
    top2, left2 = rng.integers(0, h - s + 1), rng.integers(0, w - s + 1)
    window = (slice(None), slice(top, top + s), slice(left, left + s))
    window2 = (slice(None), slice(top2, top2 + s), slice(left2, left2 + s))

    delta = x_best - x
    both = np.zeros((1, h, w, 1), bool)
    both[window] = True
    both[window2] = True
    # Per-channel norms of the mass in the two windows, and of the whole image.
    norms_windows = np.sqrt(np.sum(np.where(both, delta, 0.0) ** 2, axis=(1, 2), keepdims=True))
    norm_image = _l2_norms(delta)
    norms_window = np.sqrt(np.sum(delta[window] ** 2, axis=(1, 2), keepdims=True))

    new = _eta(s, rng)[None, :, :, None] * rng.choice([-1.0, 1.0], size=(n, 1, 1, c))
    new = new + delta[window] / (norms_window + _TINY)
    budget = np.maximum(epsilon ** 2 - norm_image ** 2, 0.0) / c + norms_windows ** 2
    new = new / (np.sqrt(np.sum(new ** 2, axis=(1, 2), keepdims=True)) + _TINY) * np.sqrt(budget)
    delta = delta.copy()
    delta[window2] = 0.0
    delta[window] = new
    return np.clip(x + delta / (_l2_norms(delta) + _TINY) * epsilon, 0.0, 1.0)


class _Search:
    """The examples still searched, kept contiguous in float32.

    Gathering the unfooled examples out of the whole batch on every query cost
    as much as the forward pass; they are compacted only when some were fooled.
    `write_back` copies the best points into the caller's `x_best` and `margin`.
    """

    def __init__(self, x, y, x_best, margin):
        self.all_best, self.all_margin = x_best, margin
        self.index = np.flatnonzero(margin > 0)
        self.x, self.y = x[self.index], y[self.index]
        self.x_best, self.margin = x_best[self.index], margin[self.index]

    def compact(self):
        """Drop the fooled examples; False when none is left."""
        alive = self.margin > 0
        if not alive.all():
            self.write_back()
            self.index, self.x, self.y = self.index[alive], self.x[alive], self.y[alive]
            self.x_best, self.margin = self.x_best[alive], self.margin[alive]
        return self.index.size > 0

    def keep_better(self, x_new, new_margin):
        improved = new_margin < self.margin
        self.x_best[improved] = x_new[improved]
        self.margin[improved] = new_margin[improved]

    def robust_fraction(self):
        return float((np.sum(self.all_margin > 0) - np.sum(self.margin <= 0))
                     / len(self.all_margin))

    def write_back(self):
        self.all_best[self.index] = self.x_best
        self.all_margin[self.index] = self.margin


def _linf_steps(model, image_shape, epsilon, p_init, n_queries, seed):
    """`advance(search, first, count)`: iterations `first ... first + count - 1` of the
    L-inf search, in one compiled call (no host round trip per query)."""
    h, w = image_shape[:2]
    sides = np.array([_linf_side(p_selection(p_init, i, n_queries), h, w)
                      for i in range(n_queries - 1)], np.int32)
    run = _compiled_square(model, image_shape)
    seed = tf.constant([seed, 0], tf.int32)

    def advance(search, first, count):
        x_best, margin = run(search.x, search.y, search.x_best, search.margin,
                             sides[first:first + count], tf.constant(first), seed,
                             tf.constant(epsilon, tf.float32))
        search.x_best, search.margin = x_best.numpy(), margin.numpy()

    return advance


def _l2_steps(margins_of, epsilon, p_init, n_queries, rng):
    """`advance(search, first, count)`: iterations `first ... first + count - 1` of the
    L2 search, one numpy proposal and one forward pass per query."""
    def advance(search, first, count):
        for iteration in range(first, first + count):
            if not search.compact():
                return
            x_new = _l2_candidates(search.x, search.x_best, epsilon,
                                   p_selection(p_init, iteration, n_queries), rng)
            search.keep_better(x_new, margins_of(x_new, search.y))

    return advance


def square(model, x, y, epsilon=8 / 255, norm="linf", n_queries=5000, p_init=None, seed=0,
           verbose=False):
    """Square Attack: score-based random search for adversarial examples, no gradients.

    Minimises the margin `z_y - max_{j != y} z_j` of the logits by random search.
    L-inf: starts from vertical stripes of +-epsilon (one random sign per column
    and channel); each iteration sets a random square window of every unfooled
    example to a random +-epsilon per channel. L2: starts from a grid of
    pseudo-Gaussian bumps on the epsilon-sphere; each iteration moves the
    perturbation mass of two random windows into the first one plus a fresh
    pseudo-Gaussian square. The square side follows the published schedule of
    `p` (fraction of pixels changed, halved at iterations 10, 50, 200, 500,
    1000, 2000, 4000, 6000, 8000 of a 10,000-query budget, rescaled to
    `n_queries`). A proposal is kept only if it strictly decreases the margin.

    Query accounting: one query per example per forward pass. The first query
    is the initial perturbation; an example stops as soon as it is
    misclassified, and the attack stops when every example is or when
    `n_queries` is reached. As in the reference implementations, examples the
    model already misclassifies are found by one unperturbed forward pass (not
    counted) and returned unchanged.

    Follows the authors' numpy code (L-inf: one window per example; L2: one
    window pair per iteration shared by the batch, per-channel window norms),
    with these deviations, none of which changes the threat model: window
    positions are uniform over all `h - s + 1` offsets (the reference draws
    from `h - s`, so the last offset is never used, and caps the L-inf side at
    `h - 1`); the L-inf sign redraw for a window that would leave the image
    unchanged is capped at 10 draws (the reference loops until it changes,
    forever when no sign can); the L2 window side is capped at the image size
    and the L2 init bump side is at least 1 (images smaller than 5 pixels).

    Args:
        model: a Keras model returning logits for images `(batch, H, W, C)`; it is
            run with `training=False`.
        x: images in [0, 1], shape `(batch, H, W, C)` (channels last).
        y: integer labels, shape `(batch,)`.
        epsilon: radius of the threat ball in pixel units (>= 0).
        norm: `"linf"` or `"l2"`.
        n_queries: query budget per example (integer >= 1).
        p_init: initial fraction of pixels changed per iteration, in (0, 1];
            default 0.8 (AutoAttack's setting for both norms).
        seed: integer seed of the random search (same seed, same result).
        verbose: show a progress bar over queries with the robust fraction
            (share of examples not yet misclassified).

    Returns:
        Adversarial images (float32 tensor), within the `norm`-ball of radius
        `epsilon` around `x` and in [0, 1].

    Example:

    ```python
    x_adv = keras_sgn.attacks.square(model, x, y, epsilon=8/255, n_queries=1000)
    robust_accuracy = np.mean(np.argmax(model(x_adv), -1) == y)
    ```

    Reference:
        Andriushchenko, Croce, Flammarion & Hein, "Square Attack: a
        query-efficient black-box adversarial attack via random search",
        ECCV 2020. https://github.com/max-andr/square-attack
    """
    check_attack_args(epsilon, 1, norm)
    if isinstance(n_queries, bool) or int(n_queries) != n_queries or n_queries < 1:
        raise ValueError(f"n_queries must be an integer >= 1, got {n_queries!r}.")
    p_init = 0.8 if p_init is None else p_init
    if not 0.0 < float(p_init) <= 1.0:
        raise ValueError(f"p_init must be in (0, 1] (fraction of pixels changed), got {p_init}.")
    check_image_range(x)
    x = np.asarray(x, np.float32)
    if x.ndim != 4:
        raise ValueError(f"x must be images of shape (batch, H, W, C), got shape {x.shape}.")
    y = np.asarray(y).reshape(-1).astype(np.int32)
    if len(y) != len(x):
        raise ValueError(f"y must hold one label per image: {len(y)} labels for {len(x)} images.")
    n_queries, epsilon = int(n_queries), float(epsilon)
    if len(x) == 0 or epsilon == 0.0:
        return tf.constant(x)

    rng = np.random.default_rng(seed)
    margins_of = _margin_function(model, x.shape[1:])
    x_best = x.copy()
    margin = margins_of(x, y)  # clean check, not counted as a query
    todo = np.flatnonzero(margin > 0)
    if todo.size:
        init = _linf_init if norm == "linf" else _l2_init
        x_best[todo] = init(x[todo], epsilon, rng)
        margin[todo] = margins_of(x_best[todo], y[todo])
    if norm == "linf":
        advance = _linf_steps(model, x.shape[1:], epsilon, float(p_init), n_queries, seed)
    else:
        advance = _l2_steps(margins_of, epsilon, float(p_init), n_queries, rng)

    progbar = None
    if verbose:
        progbar = keras.utils.Progbar(n_queries, stateful_metrics=["robust"])
        progbar.update(1, [("robust", float(np.mean(margin > 0)))])
    search = _Search(x, y, x_best, margin)
    done = 0  # iterations after the initial query
    while done < n_queries - 1 and search.compact():
        count = min(_QUERIES_PER_CALL, n_queries - 1 - done)
        advance(search, done, count)
        done += count
        if progbar is not None:
            progbar.update(done + 1, [("robust", search.robust_fraction())])
    search.write_back()
    if progbar is not None and done + 1 < n_queries:  # stopped early: every example fooled
        progbar.update(n_queries, [("robust", float(np.mean(margin > 0)))], finalize=True)

    x_adv = tf.constant(x_best, tf.float32)
    return project(x_adv, tf.constant(x), epsilon, norm)
