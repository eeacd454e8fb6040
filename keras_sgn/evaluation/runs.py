"""Evaluation as the one-liner runs it: a zoo model on its own dataset and threat model
(`evaluate_pretrained`, resolved by `keras_sgn.evaluation.sources` as the tools resolve
it), and the report folder."""

from keras_sgn.errors import ArgumentError
from keras_sgn.evaluation import sources
from keras_sgn.evaluation.examples import AdversarialExamples
from keras_sgn.evaluation.robustness import evaluate_robustness
from keras_sgn.reporting.robustness_report import write_report

#: How many adversarial examples the report folder's grid shows.
GRID_EXAMPLES = 8


def save_evaluation(report, output_dir, examples=None):
    """Write the report folder (`write_report`), with the adversarial-examples
    grid when `examples` kept any. Returns the file names written."""
    arrays = examples.arrays() if examples is not None and len(examples) else None
    return write_report(report, output_dir, adversarial_examples=arrays)


def check_own_threat_model(entry, options):
    """`evaluate_pretrained` measures a zoo model at its entry's threat model: an
    `epsilon` or `norm` other than the entry's is refused (the report would not be
    comparable with the entry's metrics), naming the way to evaluate at another one."""
    threat = entry.threat_model
    for key in ("epsilon", "norm"):
        if key in options and options[key] != threat[key]:
            raise ArgumentError(
                f"evaluate_pretrained evaluates {entry.name!r} at its own threat model "
                f"({entry.threat_model_text}), so it takes no other {key}. Received: "
                f"{key}={options[key]!r}. To attack it at another radius, load it with "
                f"keras_sgn.load_pretrained({entry.name!r}) and call keras_sgn.evaluation."
                f"evaluate_robustness(model, {entry.dataset!r}, epsilon=..., norm=...).")
    for key in ("epsilon", "norm"):
        options.pop(key, None)  # the entry's own value, given again


def evaluate_pretrained(name, attacks="quick", n_examples=None, split="test", data_dir=None, *,
                        batch_size=128, output_dir=None, load_options=None, **options):
    """Evaluate a zoo model on its own dataset and threat model, in one line.

    Args:
        name: a zoo name (`keras_sgn.list_pretrained()`).
        attacks: `"quick"` (APGD-CE and APGD-T, 100 steps), `"standard"` (as
            the zoo's metrics were measured) or an attack list.
        n_examples: evaluate the first N images of the split (None: all).
        split: `"test"`, `"validation"` or `"train"`.
        data_dir: where the dataset is (see `keras_sgn.data.load`).
        batch_size: evaluation batch size.
        output_dir: also write the report folder there (`report.json`,
            `report.md`, `accuracy_vs_epsilon.png`, `adversarial_examples.png`).
        load_options: keyword arguments of `keras_sgn.load_pretrained`
            (`revision`, `cache_dir`, `local_files_only`...).
        **options: keyword arguments of `evaluate_robustness` (`cascade`,
            `run_sanity_checks`, `seed`, `verbose`...).

    Returns:
        The report dict of `evaluate_robustness`, with `model`, `dataset` and
        `split` set.

    Raises:
        UnknownModelError, NotPublishedError, ...: as `load_pretrained` (the
            model is loaded before any data is read).
        DatasetNotAvailableError: the model's dataset is not on this machine.

    Example:

    ```python
    report = keras_sgn.evaluate_pretrained("sgn-cnn-digits", n_examples=100)
    print(report["clean_accuracy"], report["robust_accuracy"])
    ```
    """
    load_options = dict(load_options or {})
    source = sources.zoo_source(name, load_options.get("entries_dir"))
    check_own_threat_model(source.entry, options)
    model = sources.load(source, **load_options)
    dataset, norm, epsilon = sources.resolve_threat_model(source)
    examples = AdversarialExamples(GRID_EXAMPLES) if output_dir else None
    report = evaluate_robustness(
        model, dataset, epsilon, norm, split=split, attacks=attacks, n_examples=n_examples,
        data_dir=data_dir, batch_size=batch_size, model_label=source.label, examples=examples,
        **options)
    if output_dir:
        save_evaluation(report, output_dir, examples)
    return report
