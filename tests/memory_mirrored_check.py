"""Run by tests/test_memory.py in a fresh process: splits the CPU into two
logical devices (only possible before TensorFlow initialises) and trains
`sgn-memory` two epochs on a reshuffled, indexed digits subset with one
replica and with a 2-replica MirroredStrategy at the same global batch; prints
one JSON line comparing weights and memories (and the two replicas' copies)."""

import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import tensorflow as tf  # noqa: E402

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

import keras  # noqa: E402
import numpy as np  # noqa: E402

from keras_sgn import data, models, training  # noqa: E402
from keras_sgn.training import keras_compat  # noqa: E402

N, BATCH = 96, 32


def run(strategy):
    keras.utils.set_random_seed(0)
    dataset = data.load("digits", "train", batch_size=BATCH, n_examples=N, seed=1,
                        drop_remainder=True, with_index=True)
    with strategy.scope():
        model = models.get("sgn_small_cnn", width=8)
        model.compile(keras.optimizers.SGD(0.05, momentum=0.9), method="sgn-memory",
                      epsilon=0.1, eval_steps=2)
        model.method.build_state(N, (8, 8, 1))
    training.distribute.synchronize_batch_norm(model)  # as train() does
    # Both fits start from the first epoch's order (fit draws no batch to build).
    keras_compat.build_without_a_batch(model, strategy)
    model.fit(dataset, epochs=2, verbose=0)
    memory = model.method.memory
    copies = [np.asarray(v) for v in getattr(memory, "values", [memory])]
    visits = [np.asarray(v) for v in getattr(model.method.visits, "values",
                                             [model.method.visits])]
    return [w.numpy() for w in model.weights], copies, visits


w1, (m1,), (v1,) = run(tf.distribute.get_strategy())
mirrored = training.get_strategy("mirrored")
w2, copies, visits = run(mirrored)
levels_off = np.abs(m1.astype(np.int32) - copies[0].astype(np.int32))
print(json.dumps({
    "replicas": mirrored.num_replicas_in_sync,
    "copies": len(copies),
    "copies_equal": all(np.array_equal(c, copies[0]) for c in copies)
    and all(np.array_equal(v, visits[0]) for v in visits),
    "visits_equal": bool(np.array_equal(v1, visits[0])) and bool((v1 == 2).all()),
    "memory_values": int(m1.size),
    "memory_nonzero": int((m1 != 0).sum()),
    "memory_levels_off": int((levels_off > 0).sum()),
    "memory_max_levels_off": int(levels_off.max()),
    "weights_max_relative_difference": float(max(
        np.abs(a - b).max() / (np.abs(a).max() + 1e-12) for a, b in zip(w1, w2))),
}))
