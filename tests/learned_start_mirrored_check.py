"""Run by tests/test_learned_start.py in a fresh process: splits the CPU into two
logical devices (only possible before TensorFlow initialises) and trains
`sgn-learned-start` two epochs on a digits subset with one replica and with a
2-replica MirroredStrategy at the same global batch; prints one JSON line
comparing the classifier's and the generator's weights (and the generator's
two replica copies)."""

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


def _relative(first, second):
    """The largest difference of two lists of arrays, relative to each array's scale."""
    return float(max(np.abs(a - b).max() / (max(np.abs(a).max(), np.abs(b).max()) + 1e-12)
                     for a, b in zip(first, second)))


def run(strategy):
    keras.utils.set_random_seed(0)
    dataset = data.load("digits", "train", batch_size=BATCH, n_examples=N, seed=1,
                        drop_remainder=True)
    with strategy.scope():
        model = models.get("sgn_small_cnn", width=8)
        model.compile(keras.optimizers.SGD(0.05, momentum=0.9), method="sgn-learned-start",
                      epsilon=0.1, eval_steps=2, generator_width=4)
        model.method.build_state(N, (8, 8, 1))
    generator = model.method.generator
    initial = [w.numpy() for w in generator.weights]
    training.distribute.synchronize_batch_norm(model)  # as train() does
    keras_compat.build_without_a_batch(model, strategy)
    model.fit(dataset, epochs=2, verbose=0)
    # A Keras variable wraps the strategy's (mirrored: one copy per replica).
    copies = [[np.asarray(v) for v in getattr(w.value, "values", [w.value])]
              for w in generator.weights]
    return ([w.numpy() for w in model.weights], [w.numpy() for w in generator.weights],
            copies, _relative(initial, [w.numpy() for w in generator.weights]))


w1, g1, _, moved = run(tf.distribute.get_strategy())
mirrored = training.get_strategy("mirrored")
w2, g2, copies, _ = run(mirrored)
print(json.dumps({
    "replicas": mirrored.num_replicas_in_sync,
    "copies": len(copies[0]),
    "copies_equal": all(np.array_equal(c, variable[0]) for variable in copies for c in variable),
    "generator_moved": moved,
    "weights_max_relative_difference": _relative(w1, w2),
    "generator_max_relative_difference": _relative(g1, g2),
}))
