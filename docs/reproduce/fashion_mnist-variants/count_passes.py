"""Throwaway: count forward/backward passes of one training step per method (trace-time
counters), the conv/matmul ops in its graph, check the GradAlign term reaches the weight
gradients, and time ablations of sgn-align. Not part of the library."""

import collections
import json
import statistics
import time

import keras
import numpy as np
import tensorflow as tf

from keras_sgn import data, models
from keras_sgn.methods.variants import SelfGradientAlign
from keras_sgn.models.sgn_model import SGNModel

info = data.info("fashion_mnist")
B = 128
rng = np.random.default_rng(0)
x = tf.constant(rng.uniform(size=(B, 28, 28, 1)).astype("float32"))
y = tf.constant(rng.integers(0, 10, B).astype("int32"))

COUNT = collections.Counter()
_call = SGNModel.call


def counting_call(self, *a, **k):
    COUNT["forward"] += 1
    return _call(self, *a, **k)


SGNModel.call = counting_call
_grad = tf.GradientTape.gradient


def counting_grad(self, target, sources, *a, **k):
    COUNT["tape.gradient"] += 1
    return _grad(self, target, sources, *a, **k)


tf.GradientTape.gradient = counting_grad


class AlignNoDoubleBackprop(SelfGradientAlign):  # pass 1 not recorded: cosine term is a constant
    records_pass_one = False


class AlignNoCleanGradient(SelfGradientAlign):  # no clean-gradient pass: cosine against itself
    def _extra_loss(self, model, x, y, first):
        u = tf.reshape(first["input_gradient"], [tf.shape(x)[0], -1])
        return self.align_weight * tf.reduce_mean(tf.reduce_sum(tf.stop_gradient(u) * u, 1))


def network():
    keras.utils.set_random_seed(0)
    return models.get(
        "sgn_mnist_cnn", input_shape=(28, 28, 1), num_classes=10, mean=info.mean, std=info.std
    )


def op_counts(graph):
    c = collections.Counter(op.type for op in graph.get_operations())
    for f in graph.as_graph_def().library.function:
        c.update(n.op for n in f.node_def)
    return c


def setup(method):
    net = network()
    net.compile(keras.optimizers.SGD(0.01, momentum=0.9), method=method, epsilon=0.1) if isinstance(
        method, str
    ) else net.compile(keras.optimizers.SGD(0.01, momentum=0.9), method=method)
    net.optimizer.build(net.trainable_variables)
    return net


rows = {}
cases = [
    ("standard", "standard"),
    ("fast", "fast"),
    ("sgn", "sgn"),
    ("sgn-align", "sgn-align"),
    ("sgn-align, align_weight=0", SelfGradientAlign(epsilon=0.1, align_weight=0.0)),
    ("sgn-align without double backprop", AlignNoDoubleBackprop(epsilon=0.1)),
    ("sgn-align without clean gradient", AlignNoCleanGradient(epsilon=0.1)),
]
for label, method in cases:
    net = setup(method)
    COUNT.clear()
    step = tf.function(net.train_step)
    concrete = step.get_concrete_function((x, y))
    counts = dict(COUNT)
    ops = op_counts(concrete.graph)

    def run(step=step):
        float(step((x, y))["loss"])

    for _ in range(3):
        run()
    samples = []
    for _ in range(15):
        t = time.perf_counter()
        run()
        samples.append(time.perf_counter() - t)
    rows[label] = dict(
        forward_calls=counts.get("forward", 0),
        tape_gradients=counts.get("tape.gradient", 0),
        Conv2D=ops["Conv2D"],
        Conv2DBackpropInput=ops["Conv2DBackpropInput"],
        Conv2DBackpropFilter=ops["Conv2DBackpropFilter"],
        MatMul=ops["MatMul"],
        ms=1000 * statistics.median(samples),
    )
    print(label, rows[label], flush=True)


# Does the GradAlign term reach the weight gradients? Same batch, same seed, align_weight 0.2 vs 0.
def grads(method):
    net = setup(method)
    _, _, g = tf.function(lambda: net.method.gradients(net, x, y, tf.constant([0, 0])))()
    return [v.numpy() for v in g]


g1, g0 = (
    grads(SelfGradientAlign(epsilon=0.1)),
    grads(SelfGradientAlign(epsilon=0.1, align_weight=0.0)),
)
rel = max(np.abs(a - b).max() / (np.abs(b).max() + 1e-12) for a, b in zip(g1, g0))
print("max relative change of a weight gradient from the align term:", rel)
json.dump(
    {"rows": rows, "align_term_relative_gradient_change": float(rel)},
    open("count_passes.json", "w"),
    indent=1,
)
