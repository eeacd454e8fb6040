"""Our `standard` suite against a PyTorch peer's AutoAttack, on the same model and images.

`compare` ports a zoo classifier to PyTorch (`torch_port`; its logits checked
against the Keras model's on every image), then attacks the same first N test
images (original file order) with our `standard` suite
(`attack_benchmark.time_suite`, as `tools/evaluate.py` runs it) and with
torchattacks' `AutoAttack(norm='Linf', version='standard')`, at two settings:

* `reference`: its APGD-CE, APGD-T and FAB-T at the reference implementation's 100
  steps (torchattacks 3.5.1 leaves them at 10), 9 target classes, Square 5,000
  queries: the peer our suite is measured against;
* `default`: torchattacks' AutoAttack as it comes (10 steps): weaker and faster.

It reports, per suite, the robust accuracy, the wall and process CPU time, each
attack's time, the threads each framework used, the images one suite fools and
the other does not (each such adversarial example re-checked in the Keras model:
inside the epsilon ball, in [0, 1], misclassified; one failing it is reported as
such), and our suite's compute floor (`compute_floor`).

torch and torchattacks are an optional extra for this benchmark only
(`make install-peer`); `missing_peer()` says what is missing before any work.
"""

import importlib
import importlib.metadata
import importlib.util
import time
import warnings

import numpy as np
import tensorflow as tf

from keras_sgn import data, provenance, reporting
from keras_sgn.attacks import parse_attacks
from keras_sgn.errors import ArgumentError
from keras_sgn.evaluation import AdversarialExamples
from keras_sgn.evaluation.outcomes import predict_labels
from keras_sgn.experiments import attack_benchmark, compute_floor, torch_port

PEER = "torchattacks"
PEER_VERSION = "3.5.1"
#: How to install the optional extra (torchattacks 3.5.1 pins requests~=2.25.1, older than
#: the project's: it is installed without its dependencies, which torch and numpy cover).
INSTALL_COMMAND = ("make install-peer (or: pip install -c constraints.txt '.[peer]' && "
                   f"pip install --no-deps {PEER}=={PEER_VERSION})")
#: The peer's settings `compare` runs, and what each means.
PEER_SETTINGS = {
    "reference": "APGD-CE, APGD-T, FAB-T at the reference implementation's 100 steps, 9 target "
                 "classes, Square 5,000 queries",
    "default": f"{PEER} {PEER_VERSION}'s AutoAttack(version='standard') as it comes: APGD-CE, "
               "APGD-T, FAB-T at 10 steps, 9 target classes, Square 5,000 queries",
}
REFERENCE_STEPS = 100
REFERENCE_QUERIES = 5000
#: Our suite, whose attacks the peer's standard version runs in the same order.
SUITE = "standard"
#: Slack of the epsilon-ball re-check: float32 rounding of x + delta (one ulp of 1.0 is 6e-8).
BALL_TOLERANCE = 1e-6


def _importable(name):
    try:
        importlib.import_module(name)
    except ImportError:
        return False
    return True


def missing_peer():
    """None if torch and torchattacks 3.5.1 are installed (and import), else one line
    saying what is missing and how to install the extra."""
    missing = [name for name in ("torch", PEER) if not _importable(name)]
    if not missing and importlib.metadata.version(PEER) != PEER_VERSION:
        missing = [f"{PEER}=={PEER_VERSION} (found {importlib.metadata.version(PEER)})"]
    if not missing:
        return None
    return (f"the comparison with {PEER} needs {' and '.join(missing)}, an optional extra for "
            f"benchmarking only: install it with {INSTALL_COMMAND}.")


def require_peer():
    """Raise `ArgumentError` (one line: what is missing, how to install it) unless the
    extra is installed."""
    message = missing_peer()
    if message is not None:
        raise ArgumentError(f"peer: {message} Received: peer={PEER!r}.")


def set_threads(threads):
    """Run TensorFlow and torch on `threads` threads each (intra- and inter-op); call
    before TensorFlow runs its first operation."""
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
    if importlib.util.find_spec("torch") is not None:
        import torch  # noqa: PLC0415  (the optional extra)

        torch.set_num_threads(threads)
        torch.set_num_interop_threads(threads)


def thread_counts():
    """The threads each framework runs on (0: TensorFlow's own choice)."""
    counts = {"tensorflow_intra_op": tf.config.threading.get_intra_op_parallelism_threads(),
              "tensorflow_inter_op": tf.config.threading.get_inter_op_parallelism_threads()}
    if importlib.util.find_spec("torch") is not None:
        import torch  # noqa: PLC0415

        counts.update(torch_intra_op=torch.get_num_threads(),
                      torch_inter_op=torch.get_num_interop_threads())
    return counts


def peer_settings(attack):
    """What each sub-attack of a torchattacks AutoAttack runs with."""
    settings = []
    for sub in attack._autoattack.attacks:  # torchattacks 3.5.1 keeps them there
        entry = {"attack": type(sub).__name__}
        for key in ("loss", "steps", "n_target_classes", "multi_targeted", "n_queries",
                    "n_restarts", "eps", "seed"):
            if hasattr(sub, key):
                entry[key] = getattr(sub, key)
        settings.append(entry)
    return settings


def peer_autoattack(module, epsilon, setting="reference", n_classes=10, seed=0):
    """torchattacks' `AutoAttack(norm='Linf', version='standard')` on `module`, at the
    `setting` of `PEER_SETTINGS`; returns `(attack, peer_settings(attack))`."""
    if setting not in PEER_SETTINGS:
        raise ArgumentError(f"setting must be one of {', '.join(PEER_SETTINGS)}. Received: "
                            f"setting={setting!r}.")
    import torchattacks  # noqa: PLC0415  (the optional extra)

    attack = torchattacks.AutoAttack(module, norm="Linf", eps=float(epsilon), version="standard",
                                     n_classes=n_classes, seed=seed)
    if setting == "reference":
        for sub in attack._autoattack.attacks:
            if hasattr(sub, "steps"):
                sub.steps = REFERENCE_STEPS
            if hasattr(sub, "n_target_classes"):
                sub.n_target_classes = n_classes - 1
            if hasattr(sub, "n_queries"):
                sub.n_queries = REFERENCE_QUERIES
    return attack, peer_settings(attack)


def _timed(sub, record):
    """Wrap the sub-attack's `forward` to add its wall and CPU seconds and images to `record`."""
    forward = sub.forward

    def timed_forward(images, labels):
        wall, cpu = time.perf_counter(), time.process_time()
        result = forward(images, labels)
        record["seconds"] += time.perf_counter() - wall
        record["process_cpu_seconds"] += time.process_time() - cpu
        record["images_attacked"] += int(len(labels))
        return result

    sub.forward = timed_forward


def run_peer(module, x, y, epsilon, setting="reference", batch_size=128, seed=0, n_classes=10):
    """The peer's AutoAttack on channels-last images `x` with labels `y`, in batches.

    Returns a dict: `setting`, `settings` (`peer_settings`), `seconds`,
    `process_cpu_seconds`, `per_attack` (`{label: {"seconds",
    "process_cpu_seconds", "images_attacked"}}`, labelled as our suite's attacks)
    and `adversarial` (channels-last numpy images).
    """
    import torch  # noqa: PLC0415

    attack, settings = peer_autoattack(module, epsilon, setting, n_classes, seed)
    labels = [spec.label for spec in parse_attacks(SUITE)]
    per_attack = {}
    for label, sub in zip(labels, attack._autoattack.attacks):
        per_attack[label] = {"seconds": 0.0, "process_cpu_seconds": 0.0, "images_attacked": 0}
        _timed(sub, per_attack[label])
    adversarial = []
    wall, cpu = time.perf_counter(), time.process_time()
    with warnings.catch_warnings():
        # A CUDA build of torch on a machine without a GPU says so at the first backward pass.
        warnings.filterwarnings("ignore", message="CUDA initialization")
        for start in range(0, len(x), batch_size):
            images = torch_port.to_nchw(x[start:start + batch_size])
            targets = torch.from_numpy(np.asarray(y[start:start + batch_size], np.int64))
            adversarial.append(torch_port.to_nhwc(attack(images, targets)))
    return {"setting": setting, "settings": settings,
            "seconds": time.perf_counter() - wall,
            "process_cpu_seconds": time.process_time() - cpu, "per_attack": per_attack,
            "adversarial": np.concatenate(adversarial)}


class EveryExample(AdversarialExamples):
    """An `AdversarialExamples` keeping every example, in order: the images, labels,
    worst-case adversarial images and predictions of the whole evaluation."""

    def __init__(self, n):
        super().__init__(n)
        self.batches = []

    def add(self, x, y, x_adv, clean_predictions, adversarial_predictions, attacks):
        self.batches.append((np.asarray(x), np.asarray(y), np.asarray(x_adv),
                             np.asarray(clean_predictions), np.asarray(adversarial_predictions)))

    @property
    def full(self):
        return False

    def columns(self):
        """`(x, y, x_adv, clean_predictions, adversarial_predictions)`, concatenated."""
        return tuple(np.concatenate(column) for column in zip(*self.batches))


def recheck(model, x, y, x_adv, epsilon, tolerance=BALL_TOLERANCE):
    """Each adversarial example of `x_adv` checked in the Keras `model`: per image
    `linf_distance` to `x`, `in_ball` (within `epsilon` + `tolerance`),
    `in_range` (every pixel in [0, 1]), `prediction`, `misclassified`, and `valid`
    (all three)."""
    x, x_adv = np.asarray(x, np.float32), np.asarray(x_adv, np.float32)
    flat = np.abs(x_adv - x).reshape(len(x), -1)
    distance = flat.max(axis=1) if flat.size else np.zeros(len(x), np.float32)
    pixels = x_adv.reshape(len(x), -1)
    in_range = (pixels.min(axis=1) >= 0.0) & (pixels.max(axis=1) <= 1.0)
    predicted = predict_labels(model, x_adv)
    in_ball = distance <= epsilon + tolerance
    misclassified = predicted != np.asarray(y)
    return {"linf_distance": distance, "in_ball": in_ball, "in_range": in_range,
            "prediction": predicted, "misclassified": misclassified,
            "valid": in_ball & in_range & misclassified}


def disagreements(fooled_a, fooled_b):
    """`(only_a, only_b)`: indices of the images `a` fools and `b` does not, and the reverse."""
    fooled_a, fooled_b = np.asarray(fooled_a, bool), np.asarray(fooled_b, bool)
    if fooled_a.shape != fooled_b.shape:
        raise ArgumentError(f"fooled_b: both suites must judge the same images. Received: "
                            f"{fooled_a.shape[0]} and {fooled_b.shape[0]} images.")
    return np.flatnonzero(fooled_a & ~fooled_b), np.flatnonzero(fooled_b & ~fooled_a)


def example_rows(indices, y, checked):
    """JSON rows of the images `indices`, with their re-check (`recheck`'s arrays)."""
    return [{"index": int(i), "label": int(y[i]), "prediction": int(checked["prediction"][i]),
             "linf_distance": float(checked["linf_distance"][i]),
             "in_ball": bool(checked["in_ball"][i]), "in_range": bool(checked["in_range"][i]),
             "misclassified": bool(checked["misclassified"][i]),
             "valid": bool(checked["valid"][i])} for i in indices]


def _peer_entry(model, module, x, y, clean, ours_fooled, our_check, peer, epsilon):
    """The report entry of one peer run: its accuracy by its own verdict and in Keras,
    and the disagreements with our suite, each re-checked in Keras."""
    adversarial = peer.pop("adversarial")
    peer_predicted = np.argmax(torch_port.torch_logits(module, adversarial), -1)
    peer_fooled = clean & (peer_predicted != y)
    checked = recheck(model, x, y, adversarial, epsilon)
    only_ours, only_peer = disagreements(ours_fooled, peer_fooled)
    return {
        **peer,
        "robust_accuracy": float(np.mean(clean & ~peer_fooled)),
        "robust_accuracy_rechecked_in_keras": float(np.mean(clean & ~(checked["valid"]))),
        "fooled": int(peer_fooled.sum()),
        "fooled_valid_in_keras": int((peer_fooled & checked["valid"]).sum()),
        "only_ours_fooled": example_rows(only_ours, y, our_check),
        "only_peer_fooled": example_rows(only_peer, y, checked),
    }


def _load_images(dataset, n_examples, batch_size, data_dir):
    batches = data.load(dataset, "test", batch_size, data_dir=data_dir, n_examples=n_examples,
                        order="original")
    x, y = zip(*((np.asarray(images), np.asarray(labels)) for images, labels in batches))
    return np.concatenate(x), np.concatenate(y)


def compare(model, dataset, epsilon, n_examples=1000, batch_size=128,
            settings=tuple(PEER_SETTINGS), data_dir=None, seed=0, model_label=None,
            verbose=False):
    """Our `standard` suite and the peer's AutoAttack (each of `settings`) on the first
    `n_examples` test images of `dataset` in the original file order, L-inf `epsilon`.

    Args:
        model: a Keras classifier returning logits, a chain of layers `torch_port`
            rebuilds.
        dataset, n_examples, batch_size, data_dir: the images (`keras_sgn.data.load`,
            `order="original"`) and the batch both suites attack at once.
        settings: which of `PEER_SETTINGS` to run.
        seed: seed of both suites' random starts.

    Returns:
        A JSON-ready dict: `model`, `dataset`, `epsilon`, `n_examples`, `threads`,
        `port` (`torch_port.check_port`), `provenance` (at the start: the git commit,
        the libraries' versions, torch's and the peer's among them), `ours`
        (`attack_benchmark.time_suite`, with its `floor`), `peer` (`{setting:
        entry}`: `run_peer`'s times, the robust accuracy by the peer's own verdict
        and re-checked in Keras, and the images only ours / only the peer fooled,
        each re-checked in Keras) and `speedup` (the peer's CPU time over ours, per
        setting).

    Raises:
        ArgumentError: the extra is not installed (before any work), an unknown
            setting, or a port whose logits differ from the model's.
    """
    require_peer()
    for setting in settings:
        if setting not in PEER_SETTINGS:
            raise ArgumentError(f"settings: each must be one of {', '.join(PEER_SETTINGS)}. "
                                f"Received: {setting!r}.")
    # At the start: a commit made while the suites run is not what they ran.
    produced_by = provenance.provenance(provenance.LIBRARIES + ("torch", PEER))
    n_classes = data.info(dataset).num_classes
    x, y = _load_images(dataset, n_examples, batch_size, data_dir)
    module = torch_port.port_to_torch(model)
    port = torch_port.check_port(model, module, x)
    collector = EveryExample(len(x))
    ours = attack_benchmark.time_suite(model, dataset, epsilon, "linf", SUITE, len(x),
                                       batch_size, data_dir, seed, verbose, order="original",
                                       examples=collector)
    our_x, _, our_adversarial, clean_predictions, _ = collector.columns()
    if not np.array_equal(our_x, x):
        raise ArgumentError("dataset: our suite attacked other images than the peer would "
                            f"(the test split of {dataset!r} changed order between two reads). "
                            "Received: two different reads.")
    clean = clean_predictions == y
    our_check = recheck(model, x, y, our_adversarial, epsilon)
    ours_fooled = clean & our_check["misclassified"]
    ours.update(fooled=int(ours_fooled.sum()),
                fooled_valid_in_keras=int((ours_fooled & our_check["valid"]).sum()))
    peer = {}
    for setting in settings:
        if verbose:
            print(f"{PEER} AutoAttack standard, {setting} settings, on {len(x)} images ...",
                  flush=True)
        run = run_peer(module, x, y, epsilon, setting, batch_size, seed, n_classes)
        peer[setting] = _peer_entry(model, module, x, y, clean, ours_fooled, our_check, run,
                                    epsilon)
    return {
        "model": model_label or model.name, "dataset": dataset, "split": "test",
        "order": "original", "n_examples": int(len(x)), "epsilon": float(epsilon),
        "norm": "linf", "batch_size": batch_size, "seed": seed,
        "peer": {"name": PEER, "version": importlib.metadata.version(PEER),
                 "settings_meaning": {s: PEER_SETTINGS[s] for s in settings}, "runs": peer},
        "threads": thread_counts(), "port": port, "ours": ours,
        "provenance": produced_by,
        "speedup": {s: speedup(peer[s]["process_cpu_seconds"], ours["process_cpu_seconds"])
                    for s in settings},
        # The one-off tracing of our compiled attacks counted too (the peer runs eagerly).
        "speedup_with_warmup": {
            s: speedup(peer[s]["process_cpu_seconds"],
                       ours["process_cpu_seconds"] + ours["warmup_process_cpu_seconds"])
            for s in settings},
    }


def speedup(peer_seconds, our_seconds):
    """The peer's time over ours: > 1 means our suite is faster (None if ours is 0)."""
    return peer_seconds / our_seconds if our_seconds > 0 else None


def _seconds(value):
    return "-" if value is None else f"{value:.1f}"


def _disagreement_lines(name, rows, judged_by):
    if not rows:
        return [f"- {name}: none."]
    failing = [row for row in rows if not row["valid"]]
    lines = [f"- {name}: {len(rows)} images ({', '.join(str(r['index']) for r in rows)}); "
             f"re-checked in Keras: {len(rows) - len(failing)} valid (in the ball, in [0, 1], "
             f"misclassified)" + (f", {len(failing)} FAIL the re-check" if failing else "")
             + f" ({judged_by})."]
    for row in failing:
        lines.append(f"  - image {row['index']}: label {row['label']}, Keras predicts "
                     f"{row['prediction']}, L-inf distance {row['linf_distance']:.6f}, "
                     f"in ball {row['in_ball']}, in [0, 1] {row['in_range']}.")
    return lines


def markdown(report):
    """The comparison as text a person reads: one row per suite, the disagreements, the
    port check, the threads, and our suite's compute floor."""
    ours, runs = report["ours"], report["peer"]["runs"]
    labels = list(ours["per_attack"])
    header = (["suite", "robust accuracy", "wall s", "CPU s", "warm-up CPU s"]
              + [f"{label} s" for label in labels])
    rows = [["ours (`standard`)", f"{ours['robust_accuracy']:.4f}", _seconds(ours["seconds"]),
             _seconds(ours["process_cpu_seconds"]),
             _seconds(ours.get("warmup_process_cpu_seconds"))]
            + [_seconds(ours["per_attack"][label]["seconds"]) for label in labels]]
    for setting, run in runs.items():
        rows.append([f"{report['peer']['name']} {report['peer']['version']} AA standard, "
                     f"{setting}", f"{run['robust_accuracy']:.4f}", _seconds(run["seconds"]),
                     _seconds(run["process_cpu_seconds"]), "-"]
                    + [_seconds(run["per_attack"].get(label, {}).get("seconds"))
                       for label in labels])
    port, threads = report["port"], report["threads"]
    lines = [f"{report['model']} on the first {report['n_examples']} {report['dataset']} test "
             f"images (original file order), L-inf eps={report['epsilon']:.4g}; clean "
             f"accuracy {ours['clean_accuracy']:.4f}. Per-attack seconds are wall time; CPU s "
             "leaves out our one-off warm-up (tracing the compiled attacks on one image), shown "
             "beside it (the peer runs eagerly: none).", "",
             reporting.tables.markdown_table(header, rows), ""]
    for setting, run in runs.items():
        ratio = report["speedup"][setting]
        with_warmup = report.get("speedup_with_warmup", {}).get(setting)
        lines.append(f"{setting}: {PEER_SETTINGS[setting]}. The peer's CPU time over ours: "
                     + ("-" if ratio is None else f"{ratio:.2f}x")
                     + ("" if with_warmup is None else
                        f" ({with_warmup:.2f}x with our warm-up counted)") + ".")
        lines += _disagreement_lines("only ours fooled", run["only_ours_fooled"],
                                     "our adversarial examples")
        lines += _disagreement_lines("only the peer fooled", run["only_peer_fooled"],
                                     "the peer's adversarial examples, its verdict in PyTorch")
        if run["robust_accuracy_rechecked_in_keras"] != run["robust_accuracy"]:
            lines.append(f"- the peer's robust accuracy with its examples re-checked in Keras: "
                         f"{run['robust_accuracy_rechecked_in_keras']:.4f}.")
    lines.append(f"\nPort: max |logit difference| {port['max_abs_logit_difference']:.2g} on "
                 f"{port['n_images']} images (tolerance {port['tolerance']:g}), same "
                 "predictions.")
    lines.append("Threads: " + ", ".join(f"{k} {v}" for k, v in threads.items()) + ".")
    if ours.get("floor"):
        lines.append(compute_floor.floor_sentence(ours["floor"]))
    return "\n".join(lines)
