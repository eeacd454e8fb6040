"""Checks of what evaluation is given, so bad input is an error, not a number.

A robust accuracy is only meaningful for finite images in [0, 1], integer
labels the model can output, a model built for the images' shape and a finite
threat radius. Everything here runs before any attack: a mistake costs a
second, not the minutes of a suite.

Labels may be class indices (shape `(n,)` or `(n, 1)`) or one-hot rows (shape
`(n, num_classes)`, exactly one 1 per row), as Keras' `to_categorical` and
categorical losses use: a one-hot row names exactly one class, so reading it
with argmax loses nothing. Any other 2-D label (soft labels from label
smoothing or mixup, multi-label targets) is refused: its argmax would silently
change the question being asked.
"""

import math
import numbers

import numpy as np
import tensorflow as tf

from keras_sgn import attacks as attack_lib
from keras_sgn.errors import ArgumentError


def check_epsilon(epsilon):
    """`epsilon` must be a finite number >= 0 (0: clean accuracy only); text is refused
    (the attacks would compute with a string)."""
    if isinstance(epsilon, (str, bytes, bool)):
        raise ArgumentError(
            f"epsilon must be a number, not a {type(epsilon).__name__}. Received: "
            f"epsilon={epsilon!r}. Pass the radius as a float, e.g. epsilon=0.1.")
    try:
        value = float(epsilon)
    except (TypeError, ValueError):
        value = math.nan
    if not (math.isfinite(value) and value >= 0.0):
        raise ArgumentError(
            "epsilon must be a finite number >= 0: the threat radius in pixel units (e.g. "
            f"8/255 for CIFAR-10 L-inf, 0.5 for L2). Received: epsilon={epsilon!r}. An infinite "
            "or NaN radius makes the attacks produce NaN images, which would then be counted "
            "as robust; give the radius of the threat model you evaluate.")


def model_input_shape(model):
    """The per-example input shape the model was built for (None entries are
    free), or None when the model does not say (unbuilt, several inputs)."""
    try:
        shape = model.input_shape
    except (AttributeError, ValueError):
        return None
    if not isinstance(shape, tuple) or not shape or isinstance(shape[0], (tuple, list)):
        return None
    return tuple(shape[1:])


def model_num_classes(model, sample=None):
    """The number of logits the model outputs: from `model.output_shape`, else
    (given a `sample` batch) from one forward pass, else None."""
    try:
        width = model.output_shape[-1]
    except (AttributeError, ValueError, TypeError, IndexError):
        width = None
    if width is None and sample is not None:
        width = np.asarray(model(sample[:1], training=False)).shape[-1]
    return None if width is None else int(width)


def check_n_examples(n_examples):
    """`n_examples` is an integer >= 1, or None (every example)."""
    if n_examples is not None and (isinstance(n_examples, bool) or not isinstance(
            n_examples, numbers.Integral) or n_examples < 1):
        raise ArgumentError(
            f"n_examples must be an integer >= 1, or None for every example. Received: "
            f"n_examples={n_examples!r}.")


def check_num_classes(model_classes, num_classes):
    """The model must output exactly `num_classes` logits (when both are known)."""
    if num_classes is None or model_classes is None or model_classes == num_classes:
        return
    raise ArgumentError(
        f"The model outputs {model_classes} classes but num_classes={num_classes} (the "
        f"dataset's). Received: a {model_classes}-class model for a {num_classes}-class "
        "dataset. Evaluate the model on the dataset it was trained for, or give a model with "
        f"{num_classes} outputs.")


def check_images(x, model, name="images"):
    """Finite values in [0, 1], with the per-example shape the model was built for."""
    if x.ndim < 2:
        raise ArgumentError(f"{name} must be a batch: shape (n, ...). Received: shape {x.shape}.")
    finite = np.isfinite(x)
    if not finite.all():
        bad_images = int(np.sum(~finite.reshape(len(x), -1).all(axis=1)))
        raise ArgumentError(
            f"{name} must be finite. Received: {int(np.sum(~finite))} NaN or infinite values in "
            f"{bad_images} of {len(x)} images. A non-finite image has no meaningful "
            "prediction; fix the data or the preprocessing that produced them.")
    attack_lib.core.check_image_range(x, name)
    expected = model_input_shape(model)
    if expected is None:
        return
    got = tuple(x.shape[1:])
    if len(expected) != len(got) or any(e is not None and e != g for e, g in zip(expected, got)):
        raise ArgumentError(
            f"{name} do not fit the model: each image has shape {got} but the model takes "
            f"{expected} (model.input_shape[1:]; None is any size). Received: {name} of shape "
            f"{x.shape}. Evaluate the model on the data it was built for (same size and "
            "channels), or build the model for these images.")


def _one_hot_indices(y, num_classes, name):
    """Class indices of one-hot rows; refuses soft or multi-label rows."""
    is_one_hot = bool(np.all((y == 0) | (y == 1)) and np.all(y.sum(axis=1) == 1))
    if not is_one_hot:
        raise ArgumentError(
            f"{name} must be class indices, shape (n,), or one-hot rows, shape (n, "
            f"num_classes). Received: shape {y.shape} whose rows are not one-hot (soft or "
            "multi-label targets?). Give each example's class index, e.g. "
            "np.argmax(labels, axis=-1), if that is what you mean.")
    if num_classes is not None and y.shape[1] != num_classes:
        raise ArgumentError(
            f"{name} are one-hot over {y.shape[1]} classes but the model outputs {num_classes}. "
            f"Received: labels of shape {y.shape}. Evaluate the model on the dataset it was "
            "trained for, or give a model with as many outputs as the dataset has classes.")
    return np.argmax(y, axis=1)


def labels_as_indices(y, num_classes=None, name="labels"):
    """Integer class indices in [0, num_classes) from index or one-hot labels."""
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y.reshape(-1)
    if y.ndim == 2:
        y = _one_hot_indices(y, num_classes, name)
    elif y.ndim != 1:
        raise ArgumentError(f"{name} must have shape (n,) or (n, num_classes). Received: shape "
                            f"{y.shape}." + (" Batch the dataset (e.g. dataset.batch(128))."
                                          if y.ndim == 0 else ""))
    if y.dtype.kind not in "iub":
        if y.dtype.kind != "f" or not np.all(np.isfinite(y) & (y == np.round(y))):
            raise ArgumentError(f"{name} must be integer class indices. Received: dtype {y.dtype}"
                                f", e.g. {y[:5].tolist()}.")
    y = y.astype(np.int64)
    if y.size and (y.min() < 0 or (num_classes is not None and y.max() >= num_classes)):
        valid = ("indices >= 0" if num_classes is None else
                 f"indices in [0, {num_classes}): the model outputs {num_classes} logits")
        raise ArgumentError(
            f"{name} must be class {valid}. Received: labels from {y.min()} to {y.max()}. "
            "A label the model cannot output means the model does not fit the dataset "
            "(trained on another one?): evaluate it on its own dataset, or give a model with "
            "one output per class.")
    return y.astype(np.int32)


def check_batch(model, x, y, num_classes=None, names=("images", "labels")):
    """One batch, checked: `(float32 images, int32 labels, num_classes)`.

    Images first (finite, [0, 1], the model's input shape), then the labels
    against `num_classes`: given, else the model's (from its output shape, or
    one forward pass on the checked images).
    """
    x = np.asarray(x, np.float32)
    check_images(x, model, names[0])
    num_classes = num_classes or model_num_classes(model, sample=x)
    y = labels_as_indices(y, num_classes, names[1])
    if len(y) != len(x):
        raise ArgumentError(f"{names[0]} and {names[1]} must have one label per image. Received: "
                            f"{len(x)} images and {len(y)} labels.")
    return x, y, num_classes


def _is_array(value):
    return isinstance(value, (np.ndarray, tf.Tensor)) or (
        hasattr(value, "shape") and hasattr(value, "dtype"))


def as_batches(dataset, batch_size=128):
    """`dataset` itself, or, for one `(images, labels)` pair of arrays, a list
    of its batches of `batch_size` (a list of batches stays a list of batches)."""
    if (isinstance(dataset, (tuple, list)) and len(dataset) == 2
            and all(_is_array(part) for part in dataset)
            and np.ndim(dataset[0]) >= 2 and len(dataset[0]) == len(dataset[1])):
        x, y = (np.asarray(part) for part in dataset)
        return [(x[i:i + batch_size], y[i:i + batch_size]) for i in range(0, len(x), batch_size)]
    return dataset


def _label_batches(dataset, n_examples):
    """Iterate the labels of a re-iterable dataset (None if it can be read only once)."""
    if isinstance(dataset, tf.data.Dataset):
        if n_examples is None and dataset.cardinality() < 0:
            return None  # infinite or unknown length: read it once, check as we go
        return (y for y in dataset.map(lambda x, y: y))
    if isinstance(dataset, (list, tuple)):
        return (y for _, y in dataset)
    return None


def scan_labels(dataset, n_examples, num_classes):
    """Check every label of the (first `n_examples` of the) dataset before any
    attack runs, without reading the images into the attacks. Returns the
    number of examples, or None for a dataset that can be read only once (a
    generator): its labels are checked batch by batch instead."""
    label_batches = _label_batches(dataset, n_examples)
    if label_batches is None:
        return None
    seen = 0
    for y in label_batches:
        y = np.asarray(y)
        if n_examples is not None:
            y = y[: n_examples - seen]
        seen += len(labels_as_indices(y, num_classes, "dataset labels"))
        if n_examples is not None and seen >= n_examples:
            break
    return seen


def check_logits(model, x, name="model"):
    """Refuse a model whose outputs on `x` are probabilities (every row >= 0,
    summing to 1): the attacks' losses (cross-entropy, DLR, margins) take logits,
    and on a softmax output they are flattened (gradient masking by mistake)."""
    outputs = np.asarray(model(x[:32], training=False), np.float64)
    if outputs.ndim != 2 or outputs.shape[1] < 2:
        return
    if np.all(outputs >= 0) and np.allclose(outputs.sum(axis=1), 1.0, atol=1e-3):
        raise ArgumentError(
            f"The {name} outputs probabilities (every row is >= 0 and sums to 1), but the "
            "attacks need logits: on a softmax output their losses saturate and the "
            "robust accuracy is overstated. Received: a model ending in a softmax. Evaluate "
            "the logits instead: build the last layer with activation=None, or take the "
            "layer before the softmax (keras.Model(model.inputs, model.layers[-2].output) "
            "when the softmax is its own last layer).")


def checked_batches(model, dataset, n_examples, num_classes):
    """`(images, labels)` batches, cut at `n_examples`, each checked before use.

    `num_classes` is the model's class count if known; otherwise it is read
    from one forward pass on the first batch.
    """
    seen = 0
    for x, y in dataset:
        x, y = np.asarray(x), np.asarray(y)
        if n_examples is not None:
            x, y = x[: n_examples - seen], y[: n_examples - seen]
        if len(x) == 0:
            break
        x, y, num_classes = check_batch(model, x, y, num_classes,
                                        ("dataset images", "dataset labels"))
        if seen == 0:
            check_logits(model, x)
        seen += len(y)
        yield x, y
        if n_examples is not None and seen >= n_examples:
            break
