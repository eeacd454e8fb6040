"""The adversarial-examples grid of an evaluation report: clean image, the
worst-case adversarial image, the perturbation on a colour scale, and both
predictions.

The arrays come from `keras_sgn.evaluation.AdversarialExamples.arrays()`;
nothing here attacks or predicts.
"""

import numpy as np

from keras_sgn.reporting.plots import model_title, new_figure, save_figure

#: The diverging colour map of the perturbation row: white is 0, red adds, blue removes.
PERTURBATION_CMAP = "RdBu_r"


def class_name(dataset, label):
    """The name of class `label` of `dataset` (`keras_sgn.data.info(dataset).class_names`;
    the label itself for a dataset or label not known here)."""
    from keras_sgn.data import catalog  # here: keras_sgn.data imports TensorFlow

    names = catalog.CLASS_NAMES.get(dataset)
    label = int(label)
    return names[label] if names and 0 <= label < len(names) else str(label)


def _show(ax, image):
    """An image in [0, 1] (grey or RGB), without ticks."""
    image = np.clip(np.asarray(image, np.float32), 0.0, 1.0)
    if image.ndim == 3 and image.shape[-1] == 1:
        ax.imshow(image[..., 0], cmap="gray", vmin=0.0, vmax=1.0)
    else:
        ax.imshow(image, vmin=0.0, vmax=1.0)
    ax.set_xticks([]), ax.set_yticks([])


def _perturbation_size(delta, norm):
    flat = np.asarray(delta, np.float64).reshape(-1)
    return float(np.max(np.abs(flat))) if norm == "linf" else float(np.linalg.norm(flat))


def perturbation_limit(deltas, norm, epsilon):
    """The colour scale's half-range: epsilon under L-inf (no pixel moves further,
    so nothing saturates and the scale is the threat model's), else the largest
    pixel change shown (an L2 budget may sit in one pixel or spread over all)."""
    if norm == "linf" and epsilon:
        return float(epsilon)
    largest = float(np.max(np.abs(np.asarray(deltas, np.float64)))) if len(deltas) else 0.0
    return largest or 1.0


def _show_perturbation(ax, delta, limit):
    """One perturbation: grey images on the diverging map (white = 0, +-`limit`
    at the ends), colour images as 0.5 + delta / (2 * limit) per channel."""
    delta = np.asarray(delta, np.float32)
    ax.set_xticks([]), ax.set_yticks([])
    if delta.ndim == 3 and delta.shape[-1] == 1:
        return ax.imshow(delta[..., 0], cmap=PERTURBATION_CMAP, vmin=-limit, vmax=limit)
    return ax.imshow(np.clip(0.5 + delta / (2 * limit), 0.0, 1.0))


def _column(axes, dataset, norm, example, limit):
    """Draw one example: clean, adversarial, perturbation, predictions in the titles.
    Returns the perturbation's image (its colour scale goes in the colour bar)."""
    clean, adversarial, label, clean_prediction, adversarial_prediction, attack = example
    fooled = adversarial_prediction != label
    _show(axes[0], clean)
    axes[0].set_title(f"label {class_name(dataset, label)}\n"
                      f"clean: {class_name(dataset, clean_prediction)}", fontsize=9)
    _show(axes[1], adversarial)
    axes[1].set_title(f"adversarial: {class_name(dataset, adversarial_prediction)}\n"
                      f"{'fooled' if fooled else 'robust'} ({attack.split(':')[0] or '-'})",
                      fontsize=9, color="tab:red" if fooled else "tab:green")
    delta = np.asarray(adversarial, np.float32) - np.asarray(clean, np.float32)
    image = _show_perturbation(axes[2], delta, limit)
    symbol = "inf" if norm == "linf" else "2"
    axes[2].set_title(f"||delta||_{symbol} = {_perturbation_size(delta, norm):.3g}", fontsize=9)
    return image


def adversarial_examples_figure(clean, adversarial, labels, clean_predictions,
                                adversarial_predictions, attacks, *, dataset=None,
                                norm="linf", epsilon=None, model=None):
    """The grid as a matplotlib figure: one column per example, rows clean /
    adversarial / perturbation (diverging colours, white = 0, with a colour bar
    in pixel units; see `perturbation_limit`); titles give the label and both
    predictions (class names where the dataset has them).

    The arrays are `keras_sgn.evaluation.AdversarialExamples.arrays()`:
    `clean`, `adversarial` of shape `(n, H, W, C)` in [0, 1], `labels` and both
    predictions of shape `(n,)`, `attacks` the attack behind each image.
    Returns `(figure, axes)` with `axes` of shape `(3, n)`.
    """
    n = len(labels)
    fig, axes = new_figure(3, n, figsize=(max(6.0, 1.7 * n), 6.4), squeeze=False)
    examples = zip(clean, adversarial, labels, clean_predictions, adversarial_predictions,
                   attacks)
    limit = perturbation_limit(np.asarray(adversarial, np.float32)
                               - np.asarray(clean, np.float32), norm, epsilon)
    images = [_column(axes[:, column], dataset, norm, example, limit)
              for column, example in enumerate(examples)]
    for row, name in enumerate(("clean", "adversarial", "perturbation")):
        axes[row, 0].set_ylabel(name)
    if images and np.asarray(clean).shape[-1] == 1:  # colour images: grey = 0, no bar
        # In an inset right of the last panel: tight_layout leaves room for it there.
        bar = fig.colorbar(images[0], cax=axes[2, -1].inset_axes([1.06, 0.0, 0.08, 1.0]))
        bar.set_label("pixel change", fontsize=8)
    threat = f"{norm}, epsilon = {epsilon:.4g}" if epsilon is not None else norm
    about = " on ".join(part for part in (model and model_title(model), dataset) if part)
    fig.suptitle(f"Adversarial examples{': ' + about if about else ''} ({threat}): the "
                 "worst case of the attack suite per image")
    return fig, axes


def plot_adversarial_examples(report, arrays, path):
    """Draw the grid of `arrays` (`AdversarialExamples.arrays()`) for `report`
    (its model, dataset and threat model go in the title) as a PNG at `path`."""
    protocol = report["protocol"]
    fig, _ = adversarial_examples_figure(
        **arrays, dataset=report.get("dataset"), norm=protocol["norm"],
        epsilon=protocol["epsilon"], model=report.get("model"))
    return save_figure(fig, path)
