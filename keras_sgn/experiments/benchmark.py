"""Training-cost benchmark: step throughput of every method on one model and batch.

Speed is measured here, never in unit tests: machines are noisy, so every number
is a median over repeats after warm-up, and methods are compared as ratios
measured in the same process. The evaluation's cost (each attack of a suite,
the suite's wall time) is measured by `keras_sgn.experiments.attack_benchmark`,
whose functions are re-exported here for `tools/benchmark.py`.
"""

import os
import platform
import resource
import statistics
import time

import keras
import numpy as np
import tensorflow as tf

from keras_sgn import attacks, data, models, recipes, reporting
from keras_sgn import methods as sgn_methods
from keras_sgn.errors import ArgumentError
from keras_sgn.experiments.attack_benchmark import (
    SUITE_TARGET,
    attack_costs,
    attack_suite_markdown,
    benchmark_attack_suite,
    default_epsilon,
    project_to_target,
    time_suite,
)

# The cost unit: every ratio is a step time over this method's step time.
BASELINE = "standard"
DEFAULT_METHODS = (BASELINE,) + tuple(m for m in sgn_methods.list_methods(variants=False)
                                   if m != BASELINE)
MODEL_SHAPES = {"sgn_small_cnn": (8, 8, 1)}
# The model benchmarked when neither a model nor a dataset is named.
DEFAULT_MODEL = "sgn_resnet18"

__all__ = ["BASELINE", "DEFAULT_METHODS", "DEFAULT_MODEL", "MODEL_SHAPES", "SUITE_TARGET",
           "attack_costs", "attack_suite_markdown", "benchmark_attack_suite",
           "benchmark_methods", "default_epsilon", "default_model",
           "machine_info", "markdown_table", "method_options", "project_to_target",
           "time_calls", "time_method_step", "time_suite"]


def default_model(dataset=None):
    """The model a benchmark on `dataset` uses by default: its recipe's model
    (`keras_sgn.recipes`), else `DEFAULT_MODEL`."""
    if dataset is None:
        return DEFAULT_MODEL
    data.info(dataset)  # an unknown name fails here, with the valid ones
    return recipes.DATASET_RECIPES.get(dataset, {}).get("model", DEFAULT_MODEL)


def machine_info():
    """What the numbers were measured on."""
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "devices": [d.name for d in tf.config.list_logical_devices()],
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "python": platform.python_version(),
    }


def _peak_memory_mb():
    gpus = tf.config.list_logical_devices("GPU")
    if gpus:
        return tf.config.experimental.get_memory_info(gpus[0].name)["peak"] / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def time_calls(fn, warmup=2, repeats=5, calls_per_repeat=1):
    """Median seconds per call of `fn()` (which must block until done)."""
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(calls_per_repeat):
            fn()
        samples.append((time.perf_counter() - start) / calls_per_repeat)
    return statistics.median(samples), samples


def method_options(name, epsilon, attack_steps):
    """The options a method is benchmarked with: the threat model, and
    `attack_steps` where the cost grows with the number of attack steps."""
    options = {"epsilon": epsilon}
    if sgn_methods.registry.method_class(name).multi_step:
        options["attack_steps"] = attack_steps
    return options


def time_method_step(model, name, x, y, options, xla=False, warmup=2, repeats=5, seed=0,
                     num_classes=10):
    """Median seconds of one training step of method `name` on a fresh `model`
    (a `keras_sgn.models` name with `num_classes` outputs) and the batch
    `(x, y)`, with its samples."""
    keras.utils.set_random_seed(seed)
    network = models.get(model, input_shape=tuple(x.shape[1:]), num_classes=num_classes)
    network.compile(keras.optimizers.SGD(0.01, momentum=0.9), method=name,
                    jit_compile_attack=xla, **options)
    network.optimizer.build(network.trainable_variables)
    step = tf.function(network.train_step)
    # A method keyed by example (sgn-memory) steps on the batch's examples of a
    # split of this one batch: from the second step on, each has a memory.
    network.method.build_state(int(x.shape[0]), tuple(x.shape[1:]))
    batch = (x, y, tf.range(x.shape[0])) if network.method.keyed_by_example else (x, y)

    def run():
        logs = step(batch)
        float(logs["loss"])  # block until the step is done

    return time_calls(run, warmup=warmup, repeats=repeats)


def _time_methods(model, names, x, y, epsilon, attack_steps, xla, warmup, repeats, seed,
                  verbose, num_classes):
    """`{name: entry}` of the benchmark report for each method of `names`."""
    batch_size = int(x.shape[0])
    results = {}
    for name in names:
        options = method_options(name, epsilon, attack_steps)
        seconds, samples = time_method_step(model, name, x, y, options, xla=xla,
                                            warmup=warmup, repeats=repeats, seed=seed,
                                            num_classes=num_classes)
        results[name] = {"seconds_per_step": seconds, "samples": samples,
                         "images_per_second": batch_size / seconds,
                         "expected_ratio": sgn_methods.registry.expected_cost(name, **options)}
        if verbose:
            print(f"{name:>9}{' (xla)' if xla else '':6} {batch_size / seconds:9.1f} img/s "
                  f"({seconds * 1000:.0f} ms/step)", flush=True)
    return results


def _time_attack(model, x, y, epsilon, steps, xla_attack, warmup, repeats, seed, num_classes):
    keras.utils.set_random_seed(seed)
    network = models.get(model, input_shape=tuple(x.shape[1:]), num_classes=num_classes)
    batch_size = int(x.shape[0])
    result = {}
    for xla in xla_attack:
        def run_attack(xla=xla):
            np.asarray(attacks.pgd(network, x, y, epsilon=epsilon, steps=steps,
                                   jit_compile=xla))

        seconds, _ = time_calls(run_attack, warmup=warmup, repeats=repeats)
        result[f"pgd{steps}{'_xla' if xla else ''}_images_per_second"] = batch_size / seconds
    return result


def _add_ratios(report):
    base = report["methods"][BASELINE]["seconds_per_step"]
    for results in (report["methods"], report["methods_xla"]):
        for entry in results.values():
            entry["ratio_to_standard"] = entry["seconds_per_step"] / base
            entry["ratio_over_expected"] = entry["ratio_to_standard"] / entry["expected_ratio"]


def benchmark_methods(model=None, methods=DEFAULT_METHODS, batch_size=32,
                      epsilon=8 / 255, attack_steps=10, xla_attack=(False, True),
                      eval_attack_steps=20, warmup=2, repeats=5, seed=0, verbose=True,
                      dataset=None):
    """Throughput of each training method's step on synthetic batches.

    Args:
        model: a `keras_sgn.models` name (default: `default_model(dataset)`);
            images are synthetic, shaped like `dataset`'s images, else for the
            model (32x32x3 unless the model is `sgn_small_cnn`, 8x8x1).
        methods: method names (see `keras_sgn.methods.list_methods()`).
        batch_size: global batch of every step.
        epsilon, attack_steps: threat model and inner-attack steps (the
            multi-step methods use `attack_steps`; free uses its 8 replays).
        xla_attack: which attack compilations to measure (False: plain
            tf.function, True: the attack XLA-compiled per replica).
        eval_attack_steps: steps of the evaluation attack whose throughput is
            reported (PGD-20 by default).
        warmup, repeats: calls excluded, and timed calls (median reported).
        dataset: a `keras_sgn.data` name whose image shape and number of
            classes the synthetic batches take (no data is read), or None.

    Returns:
        `{"machine": ..., "settings": ..., "methods": {name: {...}},
        "methods_xla": {...}, "attack": {...}}`, where each method entry has
        `seconds_per_step`, `images_per_second`, `ratio_to_standard` (step time
        over the standard step time), `expected_ratio` (passes per step) and
        `ratio_over_expected` (1.0 means the cost is exactly the arithmetic).
    """
    for name in methods:
        sgn_methods.get(name)  # unknown names fail before any work
    if batch_size < 1:
        raise ArgumentError(f"batch_size must be >= 1. Received: {batch_size}.")
    if BASELINE not in methods:
        methods = (BASELINE,) + tuple(methods)
    model = default_model(dataset) if model is None else model
    shape, num_classes = MODEL_SHAPES.get(model, (32, 32, 3)), 10
    if dataset is not None:
        shape, num_classes = data.info(dataset).image_shape, data.info(dataset).num_classes
    rng = np.random.default_rng(seed)
    x = tf.constant(rng.uniform(size=(batch_size,) + tuple(shape)).astype("float32"))
    y = tf.constant(rng.integers(0, num_classes, batch_size).astype("int32"))
    report = {"machine": machine_info(),
              "settings": {"model": model, "dataset": dataset, "num_classes": num_classes,
                           "batch_size": batch_size, "input_shape": shape,
                           "epsilon": epsilon, "attack_steps": attack_steps,
                           "warmup": warmup, "repeats": repeats,
                           "statistic": "median seconds per step"},
              "methods": {}, "methods_xla": {}}
    for xla in xla_attack:
        # The baseline has no attack to compile: it is timed once, without XLA.
        names = [m for m in methods if not (xla and m == BASELINE)]
        report["methods_xla" if xla else "methods"] = _time_methods(
            model, names, x, y, epsilon, attack_steps, xla, warmup, repeats, seed, verbose,
            num_classes)
    _add_ratios(report)
    report["attack"] = _time_attack(model, x, y, epsilon, eval_attack_steps, xla_attack,
                                    warmup, repeats, seed, num_classes)
    report["peak_memory_mb"] = _peak_memory_mb()
    report["peak_memory_scope"] = ("GPU allocator peak" if tf.config.list_logical_devices("GPU")
                                   else "process peak resident memory (all methods)")
    return report


def markdown_table(report):
    """The benchmark as tables a person reads: the training methods (when
    timed) and the attack suite (`attack_suite`, when timed)."""
    lines = []
    if "methods" in report:
        lines.append(_methods_markdown(report))
    if report.get("attack_suite"):
        lines.append(attack_suite_markdown(report["attack_suite"]))
    return "\n\n".join(lines)


def _methods_markdown(report):
    with_xla = bool(report["methods_xla"])
    header = ["method", "images/s", "ratio to standard", "expected (passes)",
              "ratio / expected"] + (["images/s, XLA attack"] if with_xla else [])
    rows = []
    for name, entry in report["methods"].items():
        row = [f"`{name}`", f"{entry['images_per_second']:.1f}",
               f"{entry['ratio_to_standard']:.2f}", f"{entry['expected_ratio']:.0f}",
               f"{entry['ratio_over_expected']:.2f}"]
        if with_xla:
            xla = report["methods_xla"].get(name)
            row.append(f"{xla['images_per_second']:.1f}" if xla else "-")
        rows.append(row)
    lines = [reporting.tables.markdown_table(header, rows)]
    for key, value in report["attack"].items():
        lines.append(f"\n{key}: {value:.1f}")
    lines.append(f"\npeak memory: {report['peak_memory_mb']:.0f} MB "
                 f"({report['peak_memory_scope']})")
    return "\n".join(lines)
