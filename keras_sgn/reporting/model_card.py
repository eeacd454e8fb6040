"""The model card (`README.md` of a published model folder), one function per section.

Everything it shows comes from the folder's `metadata.json` content; the
caller adds what this leaf module cannot look up itself: the training method's
one-sentence description (from the methods registry) and the Hub's YAML front
matter (written with huggingface_hub by `keras_sgn.hub`).
"""

import math

from keras_sgn.reporting.robustness_report import software_line
from keras_sgn.reporting.tables import markdown_table

PAPER = ('"Self-Gradient Networks", Aboutalebi, Shafiee, Wong, '
         "[arXiv 2011.09364](https://arxiv.org/abs/2011.09364)")
#: dataset name -> (Hub dataset type, name a person reads).
DATASET_NAMES = {
    "digits": ("sklearn-digits", "scikit-learn digits (8x8 handwritten digits)"),
    "cifar10": ("cifar10", "CIFAR-10"),
    "cifar100": ("cifar100", "CIFAR-100"),
    "svhn_cropped": ("svhn", "SVHN (cropped digits)"),
    "mnist": ("mnist", "MNIST"),
    "fashion_mnist": ("fashion_mnist", "Fashion-MNIST"),
}


def wilson_interval(p, n, z=1.96):
    """95% Wilson score interval of an accuracy `p` measured on `n` examples."""
    if not n:
        return (0.0, 1.0)
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def dataset_display_name(dataset):
    return DATASET_NAMES.get(dataset, (None, dataset))[1]


def _pct(value):
    return f"{100 * value:.2f}%"


def _interval(value, n):
    lo, hi = wilson_interval(value, n)
    return f"{_pct(lo)} - {_pct(hi)}"


def _method(metadata, method_description):
    """`(name, description)` of the training method."""
    method = metadata["recipe"]["train_config"].get("method")
    return method, method_description or method


def _intro(metadata, method_description):
    arch, tm = metadata["architecture"], metadata["threat_model"]
    method, description = _method(metadata, method_description)
    return f"""# {metadata['name']}

An adversarially trained **Self-Gradient Network** (SGN) image classifier from keras-sgn:
`{arch['model']}` ({arch['parameters']:,} parameters) trained on \
{dataset_display_name(metadata['dataset'])} with the
`{method}` method ({description}) for the threat model
**{tm['norm']}, epsilon = {tm['epsilon_text']}** (pixel units, images in [0, 1]).

> The self-gradient mechanism is keras-sgn's *reconstruction* of {PAPER}: only the
> paper's abstract was available. The paper's claims (faster robust convergence, higher robust
> accuracy) are hypotheses this project measures, not results this card assumes."""


def _feedback_note(metadata):
    if not metadata["recipe"]["train_config"].get("feedback_at_inference"):
        return ("At inference the network is plain: feedback sites are the identity, so attacks "
                "see an ordinary network.")
    return ("This model uses **feedback at inference** (a research option); it was attacked "
            "through the feedback, and a gradient-free attack was part of the evaluation.")


def _loaders(metadata):
    """The ways to load the folder that work where it goes (`distribution`):
    its own path for a local export (it is in no zoo, on no Hub repository),
    the zoo name for a shipped or uploaded one, and Keras' `hf://` for an
    uploaded one. Older exports record no destination: zoo name and `hf://`."""
    destination = (metadata.get("distribution") or {}).get("destination", "hub")
    name, repo_id = metadata["name"], metadata["repo_id"]
    if destination == "local":
        folder = metadata["distribution"]["folder"]
        return f"""```python
import keras
import keras_sgn  # registers the custom layers

model = keras.saving.load_model("{folder}", safe_mode=True)  # this folder
logits = model.predict(images)
```

This folder is in no zoo and on no Hub repository yet: `keras_sgn.load_pretrained("{name}")`
works once it is published (`python tools/publish.py --folder={folder} --name={name}
--repo_id=YOUR_NAMESPACE/{name}` uploads it to a Hub repository of yours and records its
zoo entry)."""
    by_name = f"""```python
import keras_sgn

model = keras_sgn.load_pretrained("{name}")   # sha256-verified, built in safe_mode
logits = model.predict(images)
```"""
    if destination == "package":
        return by_name + "\n\n(shipped inside the keras-sgn package: no download.)"
    return by_name + f"""

or, with plain Keras (import `keras_sgn` first: it registers the layers):

```python
import keras, keras_sgn
model = keras.saving.load_model("hf://{repo_id}")
```"""


def _use(metadata):
    arch = metadata["architecture"]
    shape = ", ".join(str(d) for d in arch["input_shape"])
    return f"""## Use

{_loaders(metadata)}

`images`: float32 in [0, 1], shape (n, {shape}); mean/std
normalisation is a layer inside the model, so epsilon is in pixel units. The model outputs
logits for {arch['num_classes']} classes.
{_feedback_note(metadata)}"""


def _accuracy_table(metrics):
    """Clean, each attack, and the worst case, with 95% intervals."""
    n, cascade = metrics["n_examples"], metrics["protocol"].get("cascade")
    rows = [("clean", metrics["clean_accuracy"])]
    rows += [(f"after `{label}`" if cascade else f"`{label}` alone", value)
             for label, value in metrics["per_attack"].items()]
    cells = [[label, _pct(v), _interval(v, n)] for label, v in rows]
    robust = metrics["robust_accuracy"]
    cells.append(["**robust (worst case per example)**", f"**{_pct(robust)}**",
                  _interval(robust, n)])
    return markdown_table(["", "accuracy", "95% interval"], cells)


def _sanity_text(metrics):
    checks = metrics.get("sanity_checks") or {}
    if not checks:
        return "The gradient-masking sanity checks were not run."
    if metrics.get("sanity_passed"):
        return (f"All {len(checks)} gradient-masking sanity checks passed ("
                + ", ".join(f"`{c}`" for c in checks) + ").")
    failed = [c for c, ok in checks.items() if not ok]
    return ("**Some gradient-masking sanity checks FAILED: " + ", ".join(f"`{c}`" for c in failed)
            + ". Treat the robust accuracy with suspicion.**")


def _attack_lines(protocol):
    return "\n".join(
        f"  - `{a['name']}` ({a['kind']}): "
        + ", ".join(f"{k}={v}" for k, v in a.items() if k not in ("name", "kind"))
        for a in protocol["attacks"])


def _evaluated_with(metrics):
    provenance = metrics.get("provenance")
    return f"\n\nEvaluated with {software_line(provenance)}." if provenance else ""


def _robustness(metadata):
    metrics, tm = metadata["metrics"], metadata["threat_model"]
    protocol = metrics["protocol"]
    cascade_text = ("run as a cascade (each on the points still robust, AutoAttack style)"
                    if protocol.get("cascade") else "each run on every correctly classified point")
    suite = (f"the `{metrics['suite']}` attack suite" if metrics.get("suite")
             else "the attacks listed below")
    return f"""## Robustness

Measured by `tools/evaluate.py` with {suite} on the {metrics['split']} split \
({metrics['n_examples']} images):

{_accuracy_table(metrics)}

Protocol: {tm['norm']} threat model, epsilon = {tm['epsilon_text']}; attacks
{cascade_text};
an example counts as robust only if it is classified correctly and no attack fools it;
BatchNorm in inference mode; seed {protocol.get('seed', 0)}.

{_attack_lines(protocol)}

{_sanity_text(metrics)} Attacks give an *upper bound* on the true robust accuracy; this is not \
a certificate.{_evaluated_with(metrics)}

Reproduce:

```bash
{metrics['evaluate_command']}
```"""


def validation_label(training):
    """What the kept epoch's validation robust accuracy is, in words, e.g.
    `PGD-10, cheap per-epoch estimate on 5,000 validation images; not a test number`.

    `training` is a run's `summary.json` (or the `training` block of its
    `metadata.json`, copied from it). The attack and the number of images come
    from its `validation_estimate`; a summary written before that was recorded
    gets its `validation_protocol` sentence, or else a neutral wording.
    """
    estimate = training.get("validation_estimate")
    if isinstance(estimate, dict) and estimate.get("steps"):
        attack = f"PGD-{estimate['steps']}"
        if (estimate.get("restarts") or 1) > 1:
            attack += f" with {estimate['restarts']} restarts"
        n = estimate.get("n_examples")
        images = f"{n:,} validation images" if n else "the validation split"
        return f"{attack}, cheap per-epoch estimate on {images}; not a test number"
    if isinstance(training.get("validation_protocol"), str):
        return training["validation_protocol"]
    return ("cheap per-epoch estimate on the validation split, its attack and size not "
            "recorded; not a test number")


def _wall_time_text(training):
    """`in S s of training wall time (R replicas)`, saying when it is partial or unknown."""
    seconds = training.get("train_seconds")
    if not seconds:
        return " (training wall time not recorded)"
    replicas = training.get("replicas")
    where = [f"{replicas} replica{'s' if replicas != 1 else ''}"] if replicas else []
    if training.get("resumed_from_epoch") is not None:  # train_seconds counts the last session
        where.append(f"after resuming from epoch {training['resumed_from_epoch']}: the "
                     "epochs before are not counted")
    return f" in {seconds:.0f} s of training wall time" + (f" ({'; '.join(where)})"
                                                            if where else "")


def _trained_text(training):
    """`- trained N epochs in S s ...; kept epoch E by validation robust accuracy
    X% (its protocol)`, or a line saying the run's summary was not there."""
    if not training.get("epochs"):
        return ("\n- epochs, training wall time and kept epoch not recorded (the run had no "
                "summary.json when it was exported)")
    text = f"\n- trained {training['epochs']} epochs{_wall_time_text(training)}"
    if training.get("best_epoch"):
        best = training.get("best_val_robust_accuracy")
        score = f" {_pct(best)}" if best is not None else ""
        text += (f"; kept epoch {training['best_epoch']} by validation robust accuracy{score} "
                 f"({validation_label(training)})")
    return text


def _sites_text(sites):
    hidden = [s for s in sites if not s["input_site"]]
    return (", ".join(f"`{s['name']}` (beta={s['beta']:g}, {s['normalization']})"
                      for s in hidden) or "none (a plain network)")


def _training(metadata, method_description):
    sites = metadata["architecture"]["sites"]
    input_site = ("yes (the input perturbation is the training attack's step, projected to the "
                  "epsilon-ball)" if any(s["input_site"] for s in sites) else "no")
    trained = _trained_text(metadata.get("training") or {})
    method, description = _method(metadata, method_description)
    return f"""## Training

- method: `{method}` ({description}), \
epsilon = {metadata['threat_model']['epsilon_text']}
- input site: {input_site}
- hidden feedback sites: {_sites_text(sites)}{trained}

```bash
{metadata['recipe']['train_command']}
```"""


def _limitations(metadata):
    tm, n = metadata["threat_model"], metadata["metrics"]["n_examples"]
    toy_note = (
        "\n- digits is a toy dataset (8x8 images, 1,797 in all): this model shows the whole "
        "pipeline\n  end to end; its numbers say little about harder datasets such as CIFAR-10."
        if metadata["dataset"] == "digits" else "")
    return f"""## Limitations

- Robust only against the stated threat model ({tm['norm']}, epsilon = {tm['epsilon_text']}); \
other
  perturbations (larger epsilon, other norms, corruptions, distribution shift) are not covered.
- {n} evaluation images: the 95% intervals above show the sampling error.
- Trained on {dataset_display_name(metadata['dataset'])} only; it is not a general-purpose \
classifier.{toy_note}"""


def _files(metadata):
    versions = metadata["versions"]
    table = markdown_table(["file", "what"], [
        ["`config.json`", "the uncompiled inference model (Keras 3 format)"],
        ["`model.weights.h5`", "its weights (HDF5), no optimizer state"],
        ["`metadata.json`", "versions, parameter count, recipe, metrics with the protocol"],
        ["`README.md`", "this card"],
    ])
    return f"""## Files

{table}

`keras_sgn.load_pretrained` checks every file against the sha256 pinned in keras-sgn's zoo
entry before building anything, and builds the model with Keras `safe_mode=True`
(no code in the files is ever executed; nothing is unpickled).

Software: {software_line(versions)}."""


def _citation():
    return f"""## Citation

The self-gradient idea: {PAPER}."""


def model_card(metadata, *, method_description=None, front_matter=None):
    """The model card: Markdown for the folder's `README.md`.

    Args:
        metadata: the folder's `metadata.json` content (`keras_sgn.hub.metadata.build_metadata`),
            with its `repo_id` set (the card shows the `hf://` URI).
        method_description: one sentence on the training method (the methods
            registry's `description`); default: the method's name alone.
        front_matter: the Hub's YAML metadata block (without the `---` lines),
            e.g. the `model-index` eval results; omitted if None.
    """
    sections = [
        _intro(metadata, method_description),
        _use(metadata),
        _robustness(metadata),
        _training(metadata, method_description),
        _limitations(metadata),
        _files(metadata),
        _citation(),
    ]
    header = f"---\n{front_matter.strip()}\n---\n\n" if front_matter else ""
    return header + "\n\n".join(sections) + "\n"
