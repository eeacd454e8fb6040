"""Robust accuracy: an attack suite, the per-example worst case, the cascade.

`evaluate_robustness` runs a list of attacks and counts an example as robust
only if it is classified correctly and no attack fools it (the per-example worst
case). By default each attack runs only on the points still robust, as
AutoAttack does. It then runs the sanity checks (`keras_sgn.evaluation.checks`)
on a bounded subset.

References: Croce & Hein, "Reliable evaluation of adversarial robustness with
an ensemble of diverse parameter-free attacks", ICML 2020. Carlini et al., "On
Evaluating Adversarial Robustness", arXiv 1902.06705.
"""

import dataclasses
import time

import numpy as np

from keras_sgn import attacks as attack_lib
from keras_sgn import data, provenance
from keras_sgn.attacks.registry import parse_attacks
from keras_sgn.evaluation import inputs
from keras_sgn.evaluation.checkpoints import BatchCheckpoints, model_fingerprint
from keras_sgn.evaluation.checks import sanity_checks
from keras_sgn.evaluation.outcomes import adversarial_predictions, predict_labels
from keras_sgn.evaluation.progress import Progress

# Each batch's attacks draw from seed + this stride x batch index: no two
# batches share random starts.
_BATCH_SEED_STRIDE = 7919
#: What `per_attack` means, by `cascade` (also written in the report's protocol).
PER_ATTACK_MEANINGS = {
    True: ("after_cascade", "accuracy after this attack and every attack before it: each "
                            "attack runs only on the points still robust (AutoAttack's "
                            "cascade), so the last row equals the robust accuracy"),
    False: ("alone", "accuracy under this attack alone: every attack runs on every "
                     "correctly classified point"),
}


@dataclasses.dataclass
class BatchOutcome:
    """What the suite did to one batch, per example.

    Attributes:
        clean: correctly classified without attack.
        robust: correct and no attack fooled it (the worst case).
        per_attack: `{label: mask}`: with a cascade, robust after that attack
            and those before it; without, robust under that attack alone.
        seconds: `{label: seconds}` the attack took.
        clean_predictions, adversarial_predictions: predicted classes.
        adversarial: the worst-case adversarial image: the first that fooled
            the model, else the last attack's attempt (the clean image for an
            example misclassified without attack).
        attacks: the label of the attack behind each adversarial image ("" if none).
    """

    clean: np.ndarray
    robust: np.ndarray
    per_attack: dict
    seconds: dict
    clean_predictions: np.ndarray
    adversarial_predictions: np.ndarray
    adversarial: np.ndarray
    attacks: np.ndarray


def run_attacks(model, x, y, specs, epsilon, norm, seed, cascade=True, on_attack=None):
    """Run the suite on one batch; returns a `BatchOutcome`.

    `on_attack(k)` is called after the k-th attack (1-based), e.g. to move a
    progress bar.
    """
    clean_predictions = predict_labels(model, x)
    clean = clean_predictions == y
    robust = clean.copy()
    worst, worst_predictions = np.array(x, copy=True), clean_predictions.copy()
    attack_of = np.full(len(y), "", dtype=object)
    per_attack, seconds = {}, {}
    for k, spec in enumerate(specs, start=1):
        tick = time.time()
        targets = robust if cascade else clean
        idx = np.flatnonzero(targets)
        x_adv, predictions = adversarial_predictions(spec, model, x[idx], y[idx], epsilon,
                                                     norm, seed)
        survived = np.zeros_like(clean)
        survived[idx] = predictions == y[idx]
        # Examples not fooled yet take this attempt; the first fooling image is final.
        keep = robust[idx]
        worst[idx[keep]], worst_predictions[idx[keep]] = x_adv[keep], predictions[keep]
        attack_of[idx[keep]] = spec.label
        robust &= (survived | ~targets) if cascade else survived
        per_attack[spec.label] = robust.copy() if cascade else survived
        seconds[spec.label] = time.time() - tick
        if on_attack is not None:
            on_attack(k)
    return BatchOutcome(clean, robust, per_attack, seconds, clean_predictions,
                        worst_predictions, worst, attack_of)


class _Tally:
    """Per-example outcomes of every batch so far, the sanity-check subset and
    the adversarial examples to show."""

    def __init__(self, specs, n_sanity_examples, examples=None):
        self.clean, self.robust = [], []
        self.per_attack = {spec.label: [] for spec in specs}
        self.seconds = {spec.label: 0.0 for spec in specs}
        self.sanity_x, self.sanity_y = [], []
        self.room = n_sanity_examples
        self.examples = examples

    def add(self, x, y, outcome):
        self.clean.append(outcome.clean), self.robust.append(outcome.robust)
        for label, mask in outcome.per_attack.items():
            self.per_attack[label].append(mask)
            self.seconds[label] += outcome.seconds[label]
        if self.room > 0:
            self.sanity_x.append(x[:self.room]), self.sanity_y.append(y[:self.room])
            self.room -= len(self.sanity_y[-1])
        if self.examples is not None and not self.examples.full:
            self.examples.add(x, y, outcome.adversarial, outcome.clean_predictions,
                              outcome.adversarial_predictions, outcome.attacks)

    @property
    def shown(self):
        """The size of the examples collector while it takes examples, else 0."""
        return self.examples.n if self.examples is not None and not self.examples.full else 0

    @property
    def n_examples(self):
        return int(sum(len(c) for c in self.clean))

    def accuracies(self):
        return (float(np.mean(np.concatenate(self.clean))),
                float(np.mean(np.concatenate(self.robust))))


def _protocol(specs, epsilon, norm, cascade, seed, model):
    meaning, sentence = PER_ATTACK_MEANINGS[bool(cascade)]
    return {
        "norm": norm,
        "epsilon": float(epsilon),
        "attacks": [{"name": s.name, "kind": s.kind, **s.settings()} for s in specs],
        "worst_case": "per example: robust only if correct and no attack fools it",
        "cascade": bool(cascade),
        "per_attack": meaning,
        "per_attack_means": sentence,
        "batchnorm": "inference mode (training=False)",
        "through_feedback_at_inference": bool(getattr(model, "feedback_at_inference", False)),
        "seed": int(seed),
    }


def _check_arguments(model, specs, epsilon, norm, n_examples, num_classes):
    """Everything that can be checked before reading data; returns the model's
    number of classes (None if the model does not say)."""
    inputs.check_epsilon(epsilon)
    for spec in specs:
        settings = spec.settings()
        attack_lib.core.check_attack_args(epsilon, settings.get("steps", 1), norm,
                                          restarts=settings.get("restarts", 1))
    if n_examples is not None and n_examples < 1:
        raise ValueError(f"n_examples must be >= 1 or None. Received: n_examples={n_examples}.")
    model_classes = inputs.model_num_classes(model)
    inputs.check_num_classes(model_classes, num_classes)
    return model_classes or num_classes


def evaluate_robustness(model, dataset, epsilon, norm="linf", attacks="standard",
                        n_examples=None, cascade=True, run_sanity_checks=True,
                        n_sanity_examples=256, sanity_steps=20, square_queries=1000,
                        seed=0, verbose=True, num_classes=None, examples=None,
                        checkpoint_dir=None, batch_size=128, split="test", data_dir=None,
                        order="stored", model_label=None):
    """Clean accuracy, each attack's accuracy, the per-example worst case, and
    the sanity checks.

    Args:
        model: a Keras model returning logits; images in [0, 1]. It is run with
            `training=False` (BatchNorm in inference mode). A model with
            `feedback_at_inference=True` is attacked through its feedback (the
            attacks differentiate the whole call, nested tapes included).
        dataset: a `tf.data.Dataset` or iterable of `(images, labels)` batches,
            one `(images, labels)` pair of arrays (attacked in batches of
            `batch_size`), or the name of a dataset of `keras_sgn.data.DATASETS`
            (its `split`, loaded by `keras_sgn.data.load`). Labels are class
            indices or one-hot rows. Memory stays bounded by the batch size (the
            sanity subset aside).
        epsilon: threat-model radius in pixel units (finite, >= 0).
        norm: `"linf"` or `"l2"`.
        attacks: a preset (`"quick"`, `"standard"`, `"plus"`), a list of attack names
            (see `ATTACKS`; options after a colon) or `AttackSpec`s.
        n_examples: evaluate the first N examples (None: all).
        cascade: run each attack only on points still robust (AutoAttack);
            `per_attack` is then the accuracy after that attack and those before
            it (`protocol["per_attack"] == "after_cascade"`). With False every
            attack runs on every correctly classified point and `per_attack` is
            its accuracy alone (`"alone"`).
        run_sanity_checks: run `sanity_checks` on the first `n_sanity_examples`.
        sanity_steps, square_queries: budgets of the sanity attacks.
        seed: seed of the attacks' randomness.
        verbose: progress bars (updated after every attack of every batch) and
            a title line per phase; False prints nothing.
        num_classes: the dataset's number of classes, if known: the model must
            output exactly that many logits.
        examples: an `AdversarialExamples` to fill with a few worst-case
            adversarial examples (to draw them), or None.
        checkpoint_dir: a folder where each attacked batch's outcome is kept
            (`keras_sgn.evaluation.checkpoints`): called again with the same
            folder, the batches stored there are read instead of attacked, and
            the report is that of an uninterrupted run (timings aside). Other
            settings, or other data, with the same folder are a ValueError
            before any attack. Delete the folder once the report is saved.
        batch_size: images per attacked batch (arrays and dataset names).
        split, data_dir, order: with a dataset name, as `keras_sgn.data.load`
            takes them (`order="original"`: the first `n_examples` in the
            publication's file order); the report records them.
        model_label: what the report calls the model (a path or a zoo name;
            default: `model.name`), recorded with a dataset name.

    Returns:
        A JSON-ready dict: `clean_accuracy`, `robust_accuracy` (the worst case),
        `per_attack`, `attack_seconds`, `sanity_checks`, `sanity_passed`,
        `accuracy_vs_epsilon`, `sanity_steps`, `protocol`, `n_examples`,
        `model_fingerprint` (the model's class and the sha256 of its weights:
        publishing checks the report is of the model it publishes),
        `provenance` (`keras_sgn.provenance.provenance()`), `seconds`.

    Raises:
        ValueError: bad input, before any attack runs (`keras_sgn.evaluation.inputs`:
            images not finite, outside [0, 1] or of another shape than the model
            takes; labels the model cannot output; epsilon not finite or < 0),
            or a `checkpoint_dir` of another evaluation.

    Example:

    ```python
    report = keras_sgn.evaluation.evaluate_robustness(
        model, keras_sgn.data.load("digits", "test"), epsilon=0.1, attacks="quick")
    ```
    """
    specs = parse_attacks(attacks)
    dataset_name = dataset if isinstance(dataset, str) else None
    if dataset_name is not None:
        inputs.check_n_examples(n_examples)
        # An unknown name fails here, before loading; the model must fit the dataset.
        num_classes = data.info(dataset_name).num_classes
        dataset = data.load(dataset_name, split, batch_size, data_dir=data_dir,
                            n_examples=n_examples, order=order)
    else:
        dataset = inputs.as_batches(dataset, batch_size)
    model_classes = _check_arguments(model, specs, epsilon, norm, n_examples, num_classes)
    start = time.time()
    tally = _Tally(specs, n_sanity_examples if run_sanity_checks else 0, examples)
    fingerprint = model_fingerprint(model)
    store = None if checkpoint_dir is None else BatchCheckpoints(checkpoint_dir, dict(
        model=fingerprint, n_examples=n_examples,
        protocol=_protocol(specs, epsilon, norm, cascade, seed, model),
        batch_seed_stride=_BATCH_SEED_STRIDE,
        shown_examples=None if examples is None else examples.n))
    _attack_dataset(tally, model, dataset, specs, (epsilon, norm), n_examples, cascade, seed,
                    verbose, model_classes, store)
    report = _report(tally, specs, epsilon, norm, cascade, seed, model)
    report["model_fingerprint"] = fingerprint  # which weights the numbers are of
    if run_sanity_checks:
        report.update(_sanity_report(model, tally, epsilon, norm, sanity_steps,
                                     square_queries, seed, verbose))
    report["provenance"] = provenance.provenance()
    report["seconds"] = round(time.time() - start, 2)
    if dataset_name is not None:
        report.update(model=model_label or model.name, dataset=dataset_name, split=split,
                      order=order)
    return report


def _attack_dataset(tally, model, dataset, specs, threat, n_examples, cascade, seed,
                    verbose, model_classes, store=None):
    """Check every label, then attack batch after batch into `tally` (reading
    the batches `store` holds instead); the bar moves after every attack."""
    epsilon, norm = threat
    total = inputs.scan_labels(dataset, n_examples, model_classes)
    total = n_examples if total is None else total
    resumed = store.stored_examples() if store is not None else 0
    progress = _progress(total, resumed, specs, threat, store, verbose)
    attacked = 0  # examples attacked in this call: the bar leaves out the resumed ones
    batches = inputs.checked_batches(model, dataset, n_examples, model_classes)
    for batch_index, (x, y) in enumerate(batches):
        stored = store.load(batch_index, x, y) if store is not None else None
        if stored is not None:
            tally.add(x, y, BatchOutcome(**stored))
            continue

        def on_attack(k, done=attacked, size=len(y)):
            if k < len(specs):  # the batch's end is shown below, with the accuracies
                progress.update(done + size * k / len(specs))

        outcome = run_attacks(model, x, y, specs, epsilon, norm,
                              seed + _BATCH_SEED_STRIDE * batch_index, cascade, on_attack)
        if store is not None:
            store.save(batch_index, x, y, outcome, tally.shown)
        tally.add(x, y, outcome)
        attacked += len(y)
        clean, robust = tally.accuracies()
        progress.update(attacked, clean=clean, robust=robust)
    progress.finish()
    if tally.n_examples == 0:
        raise ValueError("dataset yielded no examples to evaluate.")


def _progress(total, resumed, specs, threat, store, verbose):
    """The bar over the examples still to attack, titled; a line on the resumed ones."""
    epsilon, norm = threat
    if resumed and verbose:
        print(f"Resuming: {resumed:,}{'' if total is None else f' of {total:,}'} examples "
              f"already attacked ({store.directory})", flush=True)
    todo = None if total is None else total - resumed
    return Progress(todo, "example", verbose=verbose, title=(
        f"Attacking {'all' if todo is None else todo} examples ({norm}, epsilon={epsilon:.4g}): "
        + ", ".join(spec.label for spec in specs) + "; worst case per example"))


def _sanity_report(model, tally, epsilon, norm, steps, square_queries, seed, verbose):
    """The sanity checks on the subset `tally` kept, as report entries."""
    x, y = np.concatenate(tally.sanity_x), np.concatenate(tally.sanity_y)
    checks, curve = sanity_checks(model, x, y, epsilon, norm, steps=steps,
                                  square_queries=square_queries, seed=seed, verbose=verbose)
    return dict(sanity_checks=checks, accuracy_vs_epsilon=curve,
                sanity_passed=all(c["passed"] for c in checks), n_sanity_examples=int(len(y)),
                sanity_steps=int(steps))


def _report(tally, specs, epsilon, norm, cascade, seed, model):
    clean, robust = tally.accuracies()
    return {
        "clean_accuracy": clean,
        "robust_accuracy": robust,
        "per_attack": {label: float(np.concatenate(v).mean())
                       for label, v in tally.per_attack.items()},
        "attack_seconds": {label: round(s, 2) for label, s in tally.seconds.items()},
        "n_examples": tally.n_examples,
        "protocol": _protocol(specs, epsilon, norm, cascade, seed, model),
    }
