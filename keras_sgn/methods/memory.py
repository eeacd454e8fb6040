"""`sgn-memory`: self-gradient training with a per-example perturbation memory
across epochs (ATTA, Zheng et al. CVPR 2020; FGSM-MEP, Jia et al. ECCV 2022).

`sgn`'s input step is one FGSM step from a fresh uniform random start, so
every epoch attacks each image from scratch. Here each training example keeps
the perturbation it was trained on last epoch and starts this epoch's step
from it: one cheap step per epoch accumulates into a multi-step attack, at the
cost of `sgn` (2 forward+backward per step). It is the per-*example* memory
that the variants module rejected per *batch* (a new batch holds other images;
the same image comes back once per epoch).

The memory is keyed by each example's index in the training split, carried
through the data pipeline (`keras_sgn.data.load(..., with_index=True)` gives
`(images, labels, index)` batches, and `keras_sgn.training.train` asks for
them when `method.keyed_by_example`), so a shuffled pipeline gives every image
its own memory. It holds one int8 value per pixel by default (quantised in
`[-epsilon, epsilon]`, packed four to an int32 word, since the collectives of
MultiWorkerMirroredStrategy take no int8; Fashion-MNIST: 59,000 x 784 = 46 MB),
plus a visit count per example, and is part of the run: `PreemptionCheckpoint`
backs it up with the weights (`save_own_variables` / `load_own_variables`), so
a resumed run continues bit-identically.

Distribution: the memory is a variable of the strategy (mirrored, one copy per
replica, aggregation NONE); after each step the replicas all-gather their
examples' indices and new perturbations and every replica writes the whole
global batch into its copy, so the copies stay equal and an example keeps its
memory whichever replica or worker it lands on next epoch. Every worker thus
holds the whole memory (not a shard of it) and each step all-gathers the global
batch's perturbations: one more image batch of traffic per step.
"""

import math
import threading

import numpy as np
import tensorflow as tf

from keras_sgn import attacks
from keras_sgn import layers as sgn_layers
from keras_sgn.methods.base import check_option
from keras_sgn.methods.replicas import replica_count, replica_random_start
from keras_sgn.methods.self_gradient import SelfGradientTraining

#: How the memory stores a perturbation: int8 (quantised to 255 levels in
#: [-epsilon, epsilon]; 1 byte per value), float16 or float32.
MEMORY_DTYPES = ("int8", "float16", "float32")
_INT8_LEVELS = 127.0
# int8 values are stored four to an int32 word: the collectives of
# MultiWorkerMirroredStrategy (the broadcast of initial values) take no int8.
_BYTES_PER_WORD = 4


def _is_integer(value):
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _all_replicas(tensor):
    """`tensor` (rows: this replica's examples) concatenated over every replica
    of every worker, in replica order (itself with one replica)."""
    if replica_count() == 1:
        return tensor
    return tf.distribute.get_replica_context().all_gather(tensor, axis=0)


class SelfGradientMemory(SelfGradientTraining):
    """`sgn-memory`: `sgn` whose input step starts from each example's
    perturbation of the previous epoch.

    For a batch of examples with indices `i`:

    1. start: `x + d` where `d = memory_decay * m_i + (1 - memory_decay) * u`,
       projected to the ball and [0, 1]; `m_i` is the example's remembered
       perturbation and `u` a uniform random start (as `sgn` draws it). An
       example never seen (or due for a reset) starts from `x + u` alone, so
       the first epoch is exactly `sgn`;
    2. the step of `sgn` from that start: pass 1 gives the input and hidden-site
       gradients, the feedback pass trains on `proj(start + step_size *
       sign(g_0))` with the hidden-site feedback;
    3. memory: `m_i <- proj(start + step_size * sign(g_0)) - x`, the
       perturbation the example was just trained on.

    Expected cost: that of `sgn`, 2 forward+backward per step (plus reading and
    writing the batch's rows of the memory; under several replicas an
    all-gather of them).

    The memory must be created before training: `build_state(num_examples,
    example_shape)` under the strategy's scope (`keras_sgn.training.train`
    does it), and each training batch must carry its examples' indices in the
    split (`(images, labels, index)`). With data augmentation (CIFAR's crops
    and flips) the remembered perturbation is in last epoch's frame of the
    image, not this one's (ATTA transforms it with the image; this does not).

    Args:
        memory_decay: the weight of the remembered perturbation in the next
            start, in [0, 1]; the rest is a fresh random start (1: pure memory,
            as ATTA; 0: a fresh start every epoch, i.e. `sgn`).
        memory_reset_every: every this many visits of an example (epochs),
            forget its perturbation and start it afresh (0: never).
        memory_dtype: one of `MEMORY_DTYPES`; `"int8"` (default) quantises
            to steps of epsilon/127.
        clean_weight, second_order: as for `sgn`.
        **kwargs: `epsilon`, `norm`, `step_size` (1.25 epsilon), `attack_steps`.
    """

    name = "sgn-memory"
    description = ("self-gradient training whose FGSM-RS input step starts from each "
                   "example's perturbation of the previous epoch")
    variant = True
    keyed_by_example = True
    options = ("clean_weight", "second_order", "memory_decay", "memory_reset_every",
               "memory_dtype")

    def __init__(self, memory_decay=1.0, memory_reset_every=0, memory_dtype="int8",
                 clean_weight=0.0, second_order=False, **kwargs):
        check_option("memory_decay", isinstance(memory_decay, (int, float, np.number))
                     and not isinstance(memory_decay, bool) and 0.0 <= memory_decay <= 1.0,
                     "a number in [0, 1] (the weight of the remembered perturbation in the "
                     "next start; the rest is a fresh random start)", memory_decay)
        check_option("memory_reset_every",
                     _is_integer(memory_reset_every) and memory_reset_every >= 0,
                     "an integer >= 0 (epochs between fresh random starts of an example; "
                     "0 never resets)", memory_reset_every)
        check_option("memory_dtype", memory_dtype in MEMORY_DTYPES,
                     f"one of {MEMORY_DTYPES}", memory_dtype)
        super().__init__(input_attack="fgsm", clean_weight=clean_weight,
                         second_order=second_order, random_start=True, **kwargs)
        self.memory_decay = float(memory_decay)
        self.memory_reset_every = int(memory_reset_every)
        self.memory_dtype = memory_dtype
        self.memory = None  # (num_examples, *example_shape) of `memory_dtype`, int8 packed
        self.example_shape = None
        self.visits = None  # (num_examples,) int32: steps each example was trained in
        # The start and feedback image of the step being traced, per thread:
        # MirroredStrategy traces each replica's step in a thread of its own.
        self._pending = threading.local()

    # -- state ------------------------------------------------------------------
    def build_state(self, num_examples, example_shape):
        """Create the memory for a training split of `num_examples` examples of
        shape `example_shape` (call under the strategy's scope: every replica
        gets a copy). Every example starts unseen."""
        check_option("num_examples", _is_integer(num_examples) and num_examples >= 1,
                     "an integer >= 1 (the training examples the memory keys)", num_examples)
        self.example_shape = tuple(int(d) for d in example_shape)
        rows = (int(num_examples),)
        stored = (tf.zeros(rows + (self._words(),), tf.int32) if self.memory_dtype == "int8"
                  else tf.zeros(rows + self.example_shape, self.memory_dtype))
        none = tf.VariableAggregation.NONE  # each replica writes the gathered global batch
        self.memory = tf.Variable(stored, trainable=False, name="perturbation_memory",
                                  aggregation=none)
        self.visits = tf.Variable(tf.zeros(rows, tf.int32), trainable=False,
                                  name="perturbation_memory_visits", aggregation=none)

    def _words(self):
        """int32 words holding one example's int8 values."""
        return -(-math.prod(self.example_shape) // _BYTES_PER_WORD)

    def _pack(self, levels):
        """int8 `(batch, *example_shape)` -> int32 `(batch, words)`."""
        flat = tf.reshape(levels, [tf.shape(levels)[0], -1])
        padding = self._words() * _BYTES_PER_WORD - math.prod(self.example_shape)
        flat = tf.pad(flat, [[0, 0], [0, padding]])
        return tf.bitcast(tf.reshape(flat, [-1, self._words(), _BYTES_PER_WORD]), tf.int32)

    def _unpack(self, words):
        """int32 `(batch, words)` -> int8 `(batch, *example_shape)`."""
        flat = tf.reshape(tf.bitcast(words, tf.int8), [tf.shape(words)[0], -1])
        return tf.reshape(flat[:, :math.prod(self.example_shape)], (-1,) + self.example_shape)

    def save_own_variables(self, store):
        """Put the memory into `store` (a dict; nothing before `build_state`):
        `memory` of `(num_examples, *example_shape)` and `memory_dtype` (int8:
        the quantised levels), `visits`."""
        if self.memory is None:
            return
        memory = np.asarray(self.memory.numpy())
        if self.memory_dtype == "int8":
            flat = memory.view(np.int8).reshape(len(memory), -1)
            memory = flat[:, :math.prod(self.example_shape)].reshape(
                (-1,) + self.example_shape)
        store["memory"], store["visits"] = memory, np.asarray(self.visits.numpy())

    def load_own_variables(self, store):
        """Set the memory from `store` (what `save_own_variables` put there)."""
        if self.memory is None:
            raise ValueError("sgn-memory: call build_state(num_examples, example_shape) before "
                             "loading its memory. Received: a method without a memory.")
        rows = (int(self.visits.shape[0]),)
        for key, shape, dtype in (("memory", rows + self.example_shape, self.memory_dtype),
                                  ("visits", rows, "int32")):
            value = np.asarray(store[key])
            if value.shape != shape or value.dtype != dtype:
                raise ValueError(
                    f"sgn-memory's {key} is {shape} {dtype} for this training split. "
                    f"Received: {key} of {value.shape} {value.dtype} (another n_train, "
                    "dataset or memory_dtype).")
        memory = store["memory"]
        if self.memory_dtype == "int8":
            memory = np.asarray(self._pack(tf.constant(memory)))
        self.memory.assign(memory)
        self.visits.assign(store["visits"])

    # -- the step -----------------------------------------------------------------
    def _scale(self):
        """Perturbation per int8 level."""
        return (self.epsilon if self.epsilon > 0 else 1.0) / _INT8_LEVELS

    def _decode(self, stored, dtype):
        if self.memory_dtype != "int8":
            return tf.cast(stored, dtype)
        return tf.cast(self._unpack(stored), dtype) * self._scale()

    def _encode(self, delta):
        if self.memory_dtype != "int8":
            return tf.cast(delta, self.memory_dtype)
        levels = tf.clip_by_value(tf.round(delta / self._scale()), -_INT8_LEVELS, _INT8_LEVELS)
        return self._pack(tf.cast(levels, tf.int8))

    def _fresh(self, visits):
        """Which examples start afresh: never seen, or due for a reset."""
        if self.memory_reset_every:
            return visits % self.memory_reset_every == 0
        return visits == 0

    def _remembered_start(self, x, index, visits, seed):
        random = replica_random_start(x, self.epsilon, self.norm, seed)
        if self.memory_decay == 0.0:
            return random
        remembered = self._decode(tf.gather(self.memory, index), x.dtype)
        if self.memory_decay < 1.0:
            remembered = (self.memory_decay * remembered
                          + (1.0 - self.memory_decay) * (random - x))
        start = attacks.core.project(x + remembered, x, self.epsilon, self.norm)
        fresh = tf.reshape(self._fresh(visits), [-1] + [1] * (len(x.shape) - 1))
        return tf.where(fresh, random, start)

    def _checked_index(self, index):
        if index is None:
            raise ValueError(
                "sgn-memory keys its memory by each example's index in the training split. "
                "Received: batches without one; train on keras_sgn.data.load(..., "
                "with_index=True) batches, (images, labels, index).")
        if self.memory is None:
            raise ValueError(
                "sgn-memory keeps one perturbation per training example: call "
                "method.build_state(num_examples, example_shape) under the strategy's scope "
                "before training (keras_sgn.training.train does). Received: no memory.")
        index = tf.cast(tf.reshape(index, [-1]), tf.int32)
        size = tf.shape(self.visits)[0]
        with tf.control_dependencies([tf.debugging.assert_less(
                index, size, message="sgn-memory: an example index beyond the memory "
                "(build_state's num_examples must be the training split's size)"),
                tf.debugging.assert_non_negative(index)]):
            return tf.identity(index)

    def gradients(self, model, x, y, seed, index=None):
        """`sgn`'s gradients from each example's remembered start; writes the
        perturbation each example was trained on into the memory."""
        if not sgn_layers.has_input_site(model):
            raise ValueError("sgn-memory remembers the input site's perturbation, so the model "
                             "needs an input site. Received: a model without one; build it "
                             "with sites including 'input'.")
        index = self._checked_index(index)
        visits = tf.gather(self.visits, index)
        self._pending.start = self._remembered_start(x, index, visits, seed)
        try:
            loss, logits, grads = super().gradients(model, x, y, seed)
            x_feedback = self._pending.feedback
        finally:
            self._pending.__dict__.clear()
        rows = _all_replicas(index)
        self.memory.scatter_update(tf.IndexedSlices(
            self._encode(_all_replicas(x_feedback - x)), rows))
        self.visits.scatter_update(tf.IndexedSlices(_all_replicas(visits + 1), rows))
        return loss, logits, grads

    def _start(self, model, x, y, seed):
        return self._pending.start

    def _feedback_input(self, x, start, input_gradient):
        x_feedback = super()._feedback_input(x, start, input_gradient)
        self._pending.feedback = x_feedback
        return x_feedback

    def step(self, model, x, y, seed, index=None):
        """One update from the batch of examples `index` (their rows of the split)."""
        loss, logits, grads = self.gradients(model, x, y, seed, index)
        model.optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return loss, logits
