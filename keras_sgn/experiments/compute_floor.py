"""The compute floor of an attack suite: its passes through the model at this CPU's best speed.

An attack suite's time is mostly forward and backward passes through the model.
`PassCounter` wraps a model and counts them as the suite runs (per image: a
forward pass of a batch of 128 counts 128; one backward pass w.r.t. the input
the same), `pass_throughput` measures this machine's best seconds per image of
a forward pass and of a forward+backward pass (best of a few repeats, at a few
batch sizes, on the wall clock and on the process CPU clock), and `compute_floor`
multiplies the two: the time the suite would take if it did nothing but its
passes at that speed. The suite's time over its floor says how much goes to
everything else (bookkeeping, small batches, Python, tracing): 1.0 is the bound
no implementation of the same algorithms beats on this machine. On a core other
processes share, read the CPU clock's ratio: the wall clock counts their time.
"""

import time
import timeit

import numpy as np
import tensorflow as tf

from keras_sgn.attacks import core
from keras_sgn.errors import ArgumentError

#: Batch sizes the pass throughput is measured at (the best per image is the floor's).
FLOOR_BATCH_SIZES = (128, 512)


def _count_backward(x, counter):
    """The identity on `x`, whose gradient adds its batch size to `counter`."""
    @tf.custom_gradient
    def identity(images):
        def gradient(upstream):
            with tf.control_dependencies([counter.assign_add(
                    tf.cast(tf.shape(upstream)[0], tf.int64))]):
                return tf.identity(upstream)

        return tf.identity(images), gradient

    return identity(x)


class PassCounter:
    """`model`, counting the images of every forward pass and of every backward
    pass that reaches the input (in eager calls and inside compiled attacks).

    In inference mode it runs the model as the attacks do (`core.weak_forward`:
    BatchNorm folded where `keras_sgn.attacks.folding` can). Attributes other than
    `forward_images`, `backward_images`, `reset` and `counts` are the wrapped
    model's, so an evaluation takes the counter for the model (its weights, its
    fingerprint, its output shape are the model's).
    """

    def __init__(self, model):
        self.model = model
        self.forward_images = tf.Variable(0, dtype=tf.int64, trainable=False)
        self.backward_images = tf.Variable(0, dtype=tf.int64, trainable=False)
        # The attacks' own inference pass (BatchNorm folded where it can be), chosen now
        # while eager: the counter is not a functional model, so the attacks cannot see
        # through it, and the suite counted must run what it runs without the counter.
        self._inference = core.weak_forward(model)

    def __getattr__(self, name):
        if name == "model":  # not set yet (e.g. while unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.model, name)

    def __call__(self, x, training=False):
        x = tf.convert_to_tensor(x, tf.float32)
        self.forward_images.assign_add(tf.cast(tf.shape(x)[0], tf.int64))
        x = _count_backward(x, self.backward_images)
        return self._inference(x) if not training else self.model(x, training=training)

    def reset(self):
        self.forward_images.assign(0)
        self.backward_images.assign(0)

    def counts(self):
        """`{"forward_images", "backward_images"}` so far."""
        return {"forward_images": int(self.forward_images.numpy()),
                "backward_images": int(self.backward_images.numpy())}


#: The clocks throughput is measured with: the wall clock, and this process's CPU time (on a
#: core other processes share, the wall clock counts their time too; the CPU time does not).
CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}


def _best_seconds(function, repeats, clock):
    """Seconds of one call of `function` on `clock`: the best of `repeats` means over 10."""
    function()  # trace and warm up
    return min(timeit.repeat(function, timer=CLOCKS[clock], repeat=repeats, number=10)) / 10


def _pass_functions(model, x, y):
    """`(forward, forward_backward)`: compiled calls of one inference-mode forward pass,
    and of one forward pass plus the cross-entropy gradient w.r.t. the input, on `x`."""
    x = tf.constant(np.asarray(x, np.float32))
    y = tf.constant(np.asarray(y).reshape(-1).astype(np.int32))
    forward = core.compiled_for(model, ("forward-logits",), lambda call, x, y: call(x),
                                x.shape[1:], [])
    gradient = core.compiled_for(
        model, ("input-gradient",),
        lambda call, x, y: core.input_gradient(call, x, y, core.cross_entropy_loss)[0],
        x.shape[1:], [])
    return (lambda: forward(x, y).numpy()), (lambda: gradient(x, y).numpy())


def pass_throughput(model, x, y, batch_sizes=FLOOR_BATCH_SIZES, repeats=3):
    """This machine's seconds per image of a forward pass and of a forward pass
    plus a backward pass w.r.t. the input (cross-entropy, `training=False`), at
    each of `batch_sizes` (`x` tiled to the size), on each of `CLOCKS`, and the
    best of them.

    Returns `{clock: {"by_batch_size": {size: {"forward_seconds_per_image",
    "forward_backward_seconds_per_image"}}, "forward_seconds_per_image",
    "forward_backward_seconds_per_image", "backward_seconds_per_image"}}` (the
    last three: the best per image over the sizes; backward = the difference).
    """
    if not len(x):
        raise ArgumentError("x: pass_throughput needs at least one image. Received: 0.")
    x, y = np.asarray(x, np.float32), np.asarray(y).reshape(-1)
    measured = {clock: {} for clock in CLOCKS}
    for size in batch_sizes:
        take = np.arange(size) % len(x)
        forward, both = _pass_functions(model, x[take], y[take])
        for clock in CLOCKS:
            measured[clock][int(size)] = {
                "forward_seconds_per_image": _best_seconds(forward, repeats, clock) / size,
                "forward_backward_seconds_per_image": _best_seconds(both, repeats, clock) / size}
    result = {}
    for clock, by_size in measured.items():
        forward = min(m["forward_seconds_per_image"] for m in by_size.values())
        both = min(m["forward_backward_seconds_per_image"] for m in by_size.values())
        result[clock] = {"by_batch_size": by_size, "forward_seconds_per_image": forward,
                         "forward_backward_seconds_per_image": both,
                         "backward_seconds_per_image": max(both - forward, 0.0)}
    return result


def _floor_seconds(passes, throughput):
    return (passes["forward_images"] * throughput["forward_seconds_per_image"]
            + passes["backward_images"] * throughput["backward_seconds_per_image"])


def compute_floor(passes, throughput, seconds, cpu_seconds=None):
    """The floor of a suite that made `passes` (`PassCounter.counts()`) and took
    `seconds` of wall time (`cpu_seconds` of process CPU time, if known), at
    `throughput` (`pass_throughput`): `floor_seconds` = forward images x forward
    seconds per image + backward images x backward seconds per image (wall
    clock; `floor_cpu_seconds` on the CPU clock); `forward_backward_equivalents`
    = the floor in forward+backward passes of one image; `ratio` = `seconds`
    over the floor, `cpu_ratio` = `cpu_seconds` over the CPU floor (None when
    a floor is 0 or a time unknown)."""
    wall, cpu = throughput["wall"], throughput["cpu"]
    floor, cpu_floor = _floor_seconds(passes, wall), _floor_seconds(passes, cpu)
    per_pass = wall["forward_backward_seconds_per_image"]
    return {
        **passes,
        "forward_backward_equivalents": floor / per_pass if per_pass > 0 else None,
        "forward_backward_images_per_second": 1.0 / per_pass if per_pass > 0 else None,
        "floor_seconds": floor,
        "seconds": seconds,
        "ratio": seconds / floor if floor > 0 else None,
        "floor_cpu_seconds": cpu_floor,
        "cpu_seconds": cpu_seconds,
        "cpu_ratio": cpu_seconds / cpu_floor if cpu_floor > 0 and cpu_seconds else None,
    }


def _times(value):
    return "-" if value is None else f"{value:.2f}x"


def floor_sentence(floor):
    """The floor as one sentence a person reads."""
    rate = floor["forward_backward_images_per_second"]
    cpu = ("" if floor.get("cpu_seconds") is None else
           f"; on the CPU clock its floor is {floor['floor_cpu_seconds']:.1f} s and it took "
           f"{floor['cpu_seconds']:.1f} s, {_times(floor['cpu_ratio'])} its floor")
    return (f"Compute floor: {floor['forward_images']:,} forward and "
            f"{floor['backward_images']:,} backward image-passes "
            f"(= {floor['forward_backward_equivalents'] or 0:,.0f} forward+backward passes of "
            f"one image at {rate or 0:,.0f} images/s, this machine's best) take "
            f"{floor['floor_seconds']:.1f} s; the suite took {floor['seconds']:.1f} s, "
            f"{_times(floor['ratio'])} its floor{cpu}.")
