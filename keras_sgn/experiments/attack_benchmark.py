"""Evaluation-cost benchmark: what each attack of a suite costs, and how long the suite takes.

Two measurements, both reported by `tools/benchmark.py --attacks=standard`:

* `attack_costs`: per attack, the seconds of one iteration on a batch and that
  cost in forward+backward passes w.r.t. the input
  (`keras_sgn.attacks.timing.cost_per_iteration`), with the images per second one
  iteration processes.
* `time_suite`: the suite's wall time on the first N test images of a dataset,
  run as `tools/evaluate.py` runs it (the cascade: each attack only on the
  points still robust), with each attack's seconds and images per second, set
  against `SUITE_TARGET` (the project's target: `standard` on all 10,000 Fashion-MNIST
  test images in at most 20 minutes on the project's 2-core CPU). With fewer
  than 10,000 images the time is extrapolated linearly, and labelled so.

Speed is measured here, never in unit tests.
"""

import time

import numpy as np

from keras_sgn import attacks as attack_lib
from keras_sgn import data, evaluation, models, reporting
from keras_sgn.attacks import parse_attacks
from keras_sgn.errors import ArgumentError
from keras_sgn.evaluation.sources import default_epsilon
from keras_sgn.experiments import compute_floor

#: The target the suite's wall time is set against.
SUITE_TARGET = {"attacks": "standard", "dataset": "fashion_mnist", "n_examples": 10_000,
                "seconds": 20 * 60, "machine": "the project's 2-core CPU"}

__all__ = ["SUITE_TARGET", "attack_costs", "attack_suite_markdown", "benchmark_attack_suite",
           "default_epsilon", "project_to_target", "time_suite"]


def attack_costs(model, x, y, attacks="standard", epsilon=8 / 255, norm="linf", repeats=3):
    """`{label: cost}` for each registered attack of the suite `attacks` on the batch
    `(x, y)`: `keras_sgn.attacks.timing.cost_per_iteration` (one run: one restart, one
    target class unless the spec says otherwise), plus `images_per_second` of
    one iteration (batch size over `seconds_per_iteration`; None if too small
    to measure)."""
    costs = {}
    for spec in parse_attacks(attacks):
        if spec.fn is not None:
            raise ArgumentError(f"attacks: {spec.label!r} is a custom attack with no iteration "
                                "count to time; give registered attacks. Received: "
                                f"{spec.label!r}.")
        cost = attack_lib.timing.cost_per_iteration(model, x, y, spec.name, epsilon, norm,
                                                    repeats=repeats, **dict(spec.options))
        seconds = cost["seconds_per_iteration"]
        cost["images_per_second"] = len(x) / seconds if seconds > 0 else None
        costs[spec.label] = cost
    return costs


def project_to_target(seconds, warmup_seconds, n_examples, dataset, attacks,
                      target=SUITE_TARGET):
    """The suite's time on `n_examples` set against `target`: the measured attack
    time scaled linearly to the target's number of images, plus the one-off
    `warmup_seconds` (tracing), and whether that is within the target. The
    target is `comparable` only for its own suite and dataset."""
    scale = target["n_examples"] / n_examples
    projected = seconds * scale + warmup_seconds
    extrapolated = n_examples < target["n_examples"]
    return {
        "target": dict(target),
        "comparable": attacks == target["attacks"] and dataset == target["dataset"],
        "extrapolated": extrapolated,
        "basis": (f"extrapolated linearly from {n_examples} images (x{scale:.3g}) plus the "
                  "one-off warm-up" if extrapolated else f"measured on {n_examples} images "
                  "plus the one-off warm-up"),
        "projected_seconds": projected,
        "within_target": projected <= target["seconds"],
    }


def _warm_up(model, x, y, specs, epsilon, norm, seed):
    """Seconds to run every attack once on one correctly classified image: each
    attack's compiled functions are traced then, not inside the timed run."""
    correct = np.flatnonzero(np.argmax(np.asarray(model(x, training=False)), -1) == y)
    start = time.perf_counter()
    for spec in specs if correct.size else ():
        np.asarray(spec.run(model, x[correct[:1]], y[correct[:1]], epsilon, norm, seed))
    return time.perf_counter() - start


def time_suite(model, dataset, epsilon, norm="linf", attacks="standard", n_examples=1000,
               batch_size=128, data_dir=None, seed=0, verbose=False, order="stored",
               examples=None, floor=True):
    """Wall time of the suite `attacks` on the first `n_examples` test images of
    `dataset` (in `order`, as `keras_sgn.data.load` takes it), as `tools/evaluate.py`
    runs it (cascade, no sanity checks), after a warm-up on one image. Each
    attack's `images_per_second` counts the images it attacked (those still
    robust when its turn came); `examples` (an `AdversarialExamples`) is filled
    as `evaluate_robustness` fills it. Returns a JSON-ready dict with the
    accuracies, `per_attack`, `seconds` (wall time), `process_cpu_seconds` (this
    process's CPU time over the same run: close to the wall time on an idle
    core, far below it when other processes share the core), `projection`
    (`project_to_target`, from the wall time) and, with `floor`, `floor`: the
    suite's forward and backward passes counted as it ran, this machine's pass
    throughput, and the suite's wall time over that compute floor
    (`keras_sgn.experiments.compute_floor`)."""
    specs = parse_attacks(attacks)
    first = next(iter(data.load(dataset, "test", batch_size, data_dir=data_dir,
                                n_examples=batch_size)))
    counter = compute_floor.PassCounter(model) if floor else None
    attacked = model if counter is None else counter
    warmup_cpu_start = time.process_time()
    warmup = _warm_up(attacked, np.asarray(first[0]), np.asarray(first[1]), specs, epsilon,
                      norm, seed)
    warmup_cpu = time.process_time() - warmup_cpu_start
    if counter is not None:
        counter.reset()
    cpu_start = time.process_time()
    report = evaluation.evaluate_robustness(
        attacked, dataset, epsilon, norm, attacks=specs, n_examples=n_examples,
        data_dir=data_dir, batch_size=batch_size, run_sanity_checks=False, seed=seed,
        verbose=verbose, order=order, examples=examples)
    cpu_seconds = time.process_time() - cpu_start
    n = report["n_examples"]
    still_robust = report["clean_accuracy"] * n
    per_attack = {}
    for spec in specs:
        seconds = report["attack_seconds"][spec.label]
        attacked = int(round(still_robust))
        per_attack[spec.label] = {
            "seconds": seconds, "images_attacked": attacked,
            "images_per_second": attacked / seconds if seconds > 0 else None,
            "accuracy_after": report["per_attack"][spec.label]}
        still_robust = report["per_attack"][spec.label] * n
    label = attacks if isinstance(attacks, str) else ";".join(s.label for s in specs)
    result = {
        "attacks": label, "dataset": dataset, "split": "test", "n_examples": n,
        "order": order, "batch_size": batch_size, "epsilon": float(epsilon), "norm": norm,
        "clean_accuracy": report["clean_accuracy"],
        "robust_accuracy": report["robust_accuracy"], "per_attack": per_attack,
        "seconds": report["seconds"], "process_cpu_seconds": round(cpu_seconds, 2),
        "warmup_seconds": round(warmup, 2), "warmup_process_cpu_seconds": round(warmup_cpu, 2),
        "projection": project_to_target(report["seconds"], warmup, n, dataset, label),
    }
    if counter is not None:
        throughput = compute_floor.pass_throughput(model, np.asarray(first[0]),
                                                   np.asarray(first[1]))
        result["floor"] = {**compute_floor.compute_floor(counter.counts(), throughput,
                                                         report["seconds"], cpu_seconds),
                           "throughput": throughput}
    return result


def benchmark_attack_suite(model, dataset, attacks="standard", epsilon=None, norm="linf",
                           n_examples=1000, batch_size=128, data_dir=None, repeats=3, seed=0,
                           time_whole_suite=True, model_label=None, verbose=False):
    """The attack-suite part of `tools/benchmark.py`'s report.

    Args:
        model: a Keras model returning logits, or a `keras_sgn.models` name (built
            untrained, shaped for `dataset`: per-iteration costs only).
        dataset: the `keras_sgn.data` name whose test images are attacked.
        attacks: a preset or attack list (`keras_sgn.attacks.parse_attacks`).
        epsilon, norm: the threat model; epsilon defaults to `default_epsilon`.
        n_examples, batch_size, data_dir: the images the suite is timed on (the
            first `n_examples` of the test split, in batches of `batch_size`);
            the per-iteration costs use the first batch.
        repeats: timings per attack for `attack_costs` (best kept).
        time_whole_suite: also run `time_suite` (needs a trained model: on an
            untrained one the cascade drops every misclassified point).

    Returns:
        `{"model", "attacks", "epsilon", "norm", "iteration_costs": attack_costs(...),
        "suite": time_suite(...) or None}`.
    """
    info = data.info(dataset)
    epsilon = default_epsilon(dataset, norm) if epsilon is None else epsilon
    if isinstance(model, str):
        model_label = model_label or f"{model} (untrained)"
        model = models.get(model, input_shape=info.image_shape, num_classes=info.num_classes)
    x, y = next(iter(data.load(dataset, "test", batch_size, data_dir=data_dir,
                               n_examples=batch_size)))
    costs = attack_costs(model, np.asarray(x), np.asarray(y), attacks, epsilon, norm, repeats)
    suite = None
    if time_whole_suite:
        suite = time_suite(model, dataset, epsilon, norm, attacks, n_examples, batch_size,
                           data_dir, seed, verbose)
    return {"model": model_label or model.name, "attacks": attacks, "dataset": dataset,
            "epsilon": float(epsilon), "norm": norm, "iteration_batch_size": int(len(y)),
            "iteration_costs": costs, "suite": suite}


def _number(value, spec):
    return "-" if value is None else format(value, spec)


def attack_suite_markdown(section):
    """The `attack_suite` part of a benchmark report as text a person reads."""
    suite = section["suite"] or {"per_attack": {}}
    header = ["attack", "s / iteration", "fwd+bwd / iteration", "images/s (one iteration)",
              "images attacked", "seconds", "images/s (whole attack)"]
    rows = []
    for label, cost in section["iteration_costs"].items():
        timed = suite["per_attack"].get(label, {})
        rows.append([f"`{label}`", _number(cost["seconds_per_iteration"], ".4f"),
                     _number(cost["forward_backward_per_iteration"], ".2f"),
                     _number(cost["images_per_second"], ".0f"),
                     _number(timed.get("images_attacked"), "d"),
                     _number(timed.get("seconds"), ".1f"),
                     _number(timed.get("images_per_second"), ".1f")])
    lines = [f"Attack suite `{section['attacks']}` on {section['model']} ({section['dataset']}, "
             f"{section['norm']} eps={section['epsilon']:.4g}); one iteration timed on a batch "
             f"of {section['iteration_batch_size']}:", "",
              reporting.tables.markdown_table(header, rows)]
    if section["suite"] is None:
        lines.append("\nWhole-suite time: not measured (give a trained model: --zoo).")
        return "\n".join(lines)
    projection = suite["projection"]
    target = projection["target"]
    verdict = "within" if projection["within_target"] else "NOT within"
    lines.append(
        f"\n`{suite['attacks']}` on the first {suite['n_examples']} {suite['dataset']} test "
        f"images: {suite['seconds']:.1f} s (+ {suite['warmup_seconds']:.1f} s warm-up; process "
        f"CPU {suite['process_cpu_seconds']:.1f} s), clean "
        f"{suite['clean_accuracy']:.4f}, robust {suite['robust_accuracy']:.4f}.")
    lines.append(
        f"Projected to {target['n_examples']} images ({projection['basis']}): "
        f"{projection['projected_seconds'] / 60:.1f} min, {verdict} the target of "
        f"{target['seconds'] / 60:.0f} min (`{target['attacks']}` on all {target['n_examples']} "
        f"{target['dataset']} test images on {target['machine']})"
        + ("." if projection["comparable"] else
           "; not comparable: the target is for another suite or dataset."))
    if suite.get("floor"):
        lines.append(compute_floor.floor_sentence(suite["floor"]))
    return "\n".join(lines)
