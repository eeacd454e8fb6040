"""Datasets for keras-sgn: tf.data pipelines of float32 images in [0, 1].

Conventions (the same in every package):

* Images are float32 in **[0, 1]**, NHWC. Mean/std normalisation is *not* applied here; it is
  a layer inside the model, so that the adversarial budget epsilon is in pixel units. The
  per-channel statistics are exposed through :func:`info` for building that layer.
* Labels are int32 class indices; ``info(name).class_names[label]`` is the name of a class
  (a tuple of strings for every dataset, e.g. ``"Ankle boot"`` for Fashion-MNIST's label 9).
* Every dataset has three splits: ``"train"``, ``"validation"`` (a fixed held-out part of the
  original training set, never seen by ``"train"``) and ``"test"`` (the original test set).

Supported datasets (:data:`DATASETS`):

* ``mnist``, ``fashion_mnist``: from the original files, found without network by
  :func:`locate` (``data_dir``, ``$TFDS_DATA_DIR``, the Keras cache, Debian's
  ``/usr/share/datasets/fashion-mnist``): a prepared tfds folder, the four IDX files (checked
  by the sha256 of their decompressed bytes) or Keras' ``mnist.npz``. When no place has them,
  the files ``keras.datasets`` uses are downloaded into the Keras cache. The IDX files are put in
  tfds' stored order, so every source gives the same splits: validation is the last 1,000
  images of the stored training split. Decoded arrays are cached on disk (checked by sha256,
  see :mod:`keras_sgn.data.cache`), so loads after the first are fast.
* tensorflow-datasets: ``cifar10``, ``cifar100``, ``svhn_cropped``, read from their prepared
  folder in ``data_dir`` (or ``$TFDS_DATA_DIR``, or ``~/tensorflow_datasets``); when it is not
  there, tfds downloads and prepares it there. Validation is the last 1,000 images of the
  stored training split.
* ``digits``: scikit-learn's bundled 8x8 handwritten digits (1,797 real images, values 0..16,
  loaded from the scikit-learn installation, no network), as ``(8, 8, 1)`` images ``value / 16``.

Downloads (:mod:`keras_sgn.data.download`): where a network is there, a dataset that is not on
this machine is downloaded the way tensorflow-datasets and ``keras.datasets`` do, then checked
like a local copy; a download is used only once complete and verified (it goes to a temporary
name, is checked, then renamed). ``download=False`` (``--nodownload`` in the tools) never
opens a connection. Without a network the failure shows within seconds:
:class:`DatasetNotAvailableError` names the ways to get the data (its ``command_line``
attribute says it on one line for the tools). :func:`prepare` does this step alone (a
training run calls it before creating its output folder).

Example::

    import keras_sgn.data
    train = keras_sgn.data.load("digits", "train", batch_size=64)
    for images, labels in train.take(1):
        print(images.shape, labels.shape)   # (64, 8, 8, 1) (64,)
"""

# Loaded so that `data.<module>.<name>` works after importing the package.
from keras_sgn.data import sources  # noqa: F401
from keras_sgn.data.catalog import DATASETS, SPLITS, DatasetInfo, info
from keras_sgn.data.download import prepare
from keras_sgn.data.errors import DatasetIntegrityError, DatasetNotAvailableError
from keras_sgn.data.pipeline import load

__all__ = [
    "DATASETS",
    "SPLITS",
    "DatasetInfo",
    "DatasetIntegrityError",
    "DatasetNotAvailableError",
    "info",
    "load",
    "prepare",
]
