"""What every backbone shares: its checked arguments, the image input with its
site and normalisation, the placing of sites, and the logits head.

Every builder makes the same layout::

    image -> site_input -> input_normalization -> stage1 -> site_stage1
          -> stage2 -> site_stage2 -> ... -> head -> logits

* `site_input` is a `SelfGradient(input_site=True)` on the raw image, before
  the mean/std normalisation, so an attack's epsilon is in pixel units.
* `input_normalization` is a `keras.layers.Normalization` holding the dataset
  mean and variance (constants, not weights).
* `site_stage{i}` is a `SelfGradient(beta=beta_i, normalization=...)` after
  stage `i`.
* The logits `Dense` layer is float32 so mixed precision keeps float32 logits.

Sites have no weights, so a plain network and an SGN have the same parameters.
"""

import keras
from keras import layers

from keras_sgn.models import arguments
from keras_sgn.models.sgn_model import SGNModel
from keras_sgn.models.sites import INPUT_SITE, SitePlacer, resolve_sites


class Network:
    """Checks a builder's common arguments and builds the network's two ends.

    The arguments every builder takes are described here once.

    Args:
        num_stages: stages the network has (sites `stage1` ... `stage{n}`).
        input_shape: `(height, width, channels)` of the images, in [0, 1].
        num_classes: number of classes (>= 2); the model outputs logits.
        sites: `"default"` (input + after every stage), a list of site names
            (`"input"`, `"stage1"`, ...) or one comma-separated string, or
            `()`/`None`/`"none"` for the plain network.
        beta: feedback strength of the hidden sites, a float for all of them
            or a dict `{site_name: beta}` (missing selected sites get DEFAULT_BETA).
        normalization: gradient normalisation `N` of the hidden sites:
            `"l2_relative"` (default), `"sign"` or `"raw"`.
        mean, std: per-channel statistics of the input normalisation (pixel
            units; one value, or one per channel).
        feedback_at_inference: research option of `SGNModel` (self-injection
            at test time using the predicted label).
        name: model name.
        min_size: smallest image height and width the network accepts.

    Example:

    ```python
    net = Network(num_stages=1, input_shape=(8, 8, 1), num_classes=10, ...)
    x = net.image_input()
    x = net.site(some_stage(x), "stage1")
    model = net.logits_model(x)
    ```
    """

    def __init__(self, *, num_stages, input_shape, num_classes, sites, beta, normalization,
                 mean, std, feedback_at_inference, name, min_size=1):
        self.input_shape = arguments.check_input_shape(input_shape, min_size=min_size)
        self.num_classes = arguments.check_num_classes(num_classes)
        normalization = arguments.check_normalization(normalization)
        self.mean, self.std = arguments.check_mean_std(mean, std, self.input_shape[-1])
        self.name = arguments.check_name(name)
        self.site = SitePlacer(resolve_sites(sites, beta, num_stages), normalization)
        self.feedback_at_inference = feedback_at_inference
        self.inputs = None

    def image_input(self):
        """The `image` input, its site, and the mean/std normalisation."""
        self.inputs = keras.Input(shape=self.input_shape, name="image")
        x = self.site(self.inputs, INPUT_SITE)
        return layers.Normalization(
            mean=list(self.mean), variance=[s * s for s in self.std],
            name="input_normalization",
        )(x)

    def logits_model(self, x):
        """The float32 `logits` layer on `x`, and the `SGNModel` from image to logits."""
        logits = layers.Dense(self.num_classes, dtype="float32", name="logits")(x)
        return SGNModel(
            inputs=self.inputs,
            outputs=logits,
            name=self.name,
            feedback_at_inference=self.feedback_at_inference,
        )
