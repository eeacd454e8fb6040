"""Small convolutional networks with self-gradient sites, for grey digit and
clothing images: `sgn_small_cnn` (8x8 digits), `sgn_mnist_cnn` (28x28
MNIST / Fashion-MNIST) and its wider `sgn_mnist_cnn_wide`.

Both are convolutional stages then one dense stage, each followed by a site::

    image -> site_input -> input_normalization -> stage1 (conv) -> site_stage1
          -> stage2 (conv) -> site_stage2 -> ... -> stageN (dense) -> site_stageN -> logits
"""

from keras_sgn.models import arguments
from keras_sgn.models.blocks import conv_stage, dense_stage
from keras_sgn.models.network import Network
from keras_sgn.models.sites import DEFAULT_BETA


def _conv_net(net, conv_stages, dense_units, use_batch_norm):
    """`conv_stages`: `(filters, kernel_size, strides, pool)` per stage."""
    x = net.image_input()
    for stage, (filters, kernel_size, strides, pool) in enumerate(conv_stages, start=1):
        x = conv_stage(x, filters, kernel_size, strides, pool, use_batch_norm, f"stage{stage}")
        x = net.site(x, f"stage{stage}")
    last = f"stage{len(conv_stages) + 1}"
    x = net.site(dense_stage(x, dense_units, last), last)
    return net.logits_model(x)


def sgn_small_cnn(input_shape=(8, 8, 1), num_classes=10, sites="default", beta=DEFAULT_BETA,
                  normalization="l2_relative", mean=(0.5,), std=(0.5,), width=32,
                  batch_norm=True, feedback_at_inference=False, name="sgn_small_cnn"):
    """A small three-stage CNN with self-gradient sites, made for 8x8 digits (an
    `SGNModel`, images in [0, 1] to float32 logits).

    * stage1: conv(width, 3x3, same) + [BN] + ReLU, plus a 2x2 max-pool when
      the image is at least 16 pixels high and wide;
    * stage2: conv(2*width, 3x3, same) + [BN] + ReLU + 2x2 max-pool;
    * stage3: flatten + Dense(4*width) + ReLU;
    * head: Dense(num_classes) logits (float32).

    Sites: `input`, `stage1`, `stage2`, `stage3`.

    At 28x28 it pools after both convolutions (7x7x64 into a 128-unit dense
    layer: about 422k parameters) and its 3x3 stride-1 convolutions run on the
    full 28x28 and 14x14 grids: one `sgn` step on a batch of 128 took 188 ms
    on this 2-core CPU, against 55 ms for `sgn_mnist_cnn` (166k parameters, the
    architecture of the published Fashion-MNIST adversarial-training results).
    For 28x28 images prefer `sgn_mnist_cnn`.

    Args:
        width: filters of the first convolution (>= 1).
        batch_norm: whether to use BatchNormalization. `False` gives a
            BN-free network (convolutions then have biases), needed when
            replicas must compute exactly the same thing.
        input_shape: `(height, width, channels)`, height and width >= 2.
        num_classes, sites, beta, normalization, mean, std,
            feedback_at_inference, name: see `keras_sgn.models.network.Network`.

    Example: `keras_sgn.models.get("sgn_small_cnn")` (8x8 digits).

    Reference:
        Aboutalebi et al. "Self-Gradient Networks", arXiv 2011.09364.
    """
    width = arguments.check_int(width, "width")
    arguments.check_bool(batch_norm, "batch_norm")
    net = Network(num_stages=3, input_shape=input_shape, num_classes=num_classes, sites=sites,
                  beta=beta, normalization=normalization, mean=mean, std=std,
                  feedback_at_inference=feedback_at_inference, name=name, min_size=2)
    pool_first = min(net.input_shape[:2]) >= 16
    stages = ((width, 3, 1, pool_first), (2 * width, 3, 1, True))
    return _conv_net(net, stages, 4 * width, batch_norm)


def sgn_mnist_cnn(input_shape=(28, 28, 1), num_classes=10, sites="default", beta=DEFAULT_BETA,
                  normalization="l2_relative", mean=(0.5,), std=(0.5,), filters=(16, 32),
                  dense_units=100, batch_norm=True, feedback_at_inference=False,
                  name="sgn_mnist_cnn"):
    """The small CNN of the MNIST / Fashion-MNIST robustness literature, for 28x28
    grey images (an `SGNModel`, images in [0, 1] to float32 logits).

    The network behind the published Fashion-MNIST L-inf anchor (PGD
    adversarial training, eps 0.1: clean 88.46%, Croce et al. 2019, who take
    it from Wong & Kolter 2018), with BatchNorm after each convolution:

    * stage1: conv(16, 4x4, stride 2, same) + [BN] + ReLU -> 14x14x16;
    * stage2: conv(32, 4x4, stride 2, same) + [BN] + ReLU -> 7x7x32;
    * stage3: flatten + Dense(100) + ReLU;
    * head: Dense(num_classes) logits (float32).

    About 166k parameters. Sites: `input`, `stage1`, `stage2`, `stage3` (one
    more per extra entry of `filters`). One `sgn` step on a batch of 128 took
    55 ms on this 2-core CPU, against 591 ms for the 3.3M-parameter CNN of
    Madry et al. 2018 (5x5 convolutions 32/64 with max-pooling, Dense(1024)),
    so recipes can afford PGD-AT baselines and several seeds.

    Args:
        filters: filters of each stride-2 4x4 convolution stage.
        dense_units: units of the dense stage.
        batch_norm: whether to use BatchNormalization (`False`: the anchor's
            exact BN-free network, convolutions with biases).
        mean, std: per-channel statistics of the input normalisation; give the
            dataset's, as the training tools do.
        input_shape, num_classes, sites, beta, normalization,
            feedback_at_inference, name: see `keras_sgn.models.network.Network`.

    Example:

    ```python
    info = keras_sgn.data.info("fashion_mnist")
    model = keras_sgn.models.get("sgn_mnist_cnn", mean=info.mean, std=info.std)
    ```

    Reference:
        Croce, Andriushchenko, Hein. "Provable Robustness of ReLU networks via
        Maximization of Linear Regions", AISTATS 2019 (Table 1).
        Wong, Kolter. "Provable defenses against adversarial examples via the
        convex outer adversarial polytope", ICML 2018.
    """
    filters = arguments.check_int_sequence(filters, "filters")
    dense_units = arguments.check_int(dense_units, "dense_units")
    arguments.check_bool(batch_norm, "batch_norm")
    net = Network(num_stages=len(filters) + 1, input_shape=input_shape, num_classes=num_classes,
                  sites=sites, beta=beta, normalization=normalization, mean=mean, std=std,
                  feedback_at_inference=feedback_at_inference, name=name)
    return _conv_net(net, [(f, 4, 2, False) for f in filters], dense_units, batch_norm)


def sgn_lenet_small(input_shape=(28, 28, 1), num_classes=10, sites="default",
                    beta=DEFAULT_BETA, normalization="l2_relative", mean=(0.5,), std=(0.5,),
                    feedback_at_inference=False, name="sgn_lenet_small"):
    """The anchor's exact network: `sgn_mnist_cnn` without BatchNorm, as
    `LeNetSmall` of Croce et al.'s code (`max-andr/provable-robustness-max-
    linear-regions`, `models.py`): conv(16, 4x4, stride 2, same) + ReLU,
    conv(32, 4x4, stride 2, same) + ReLU, Dense(100) + ReLU, Dense(classes),
    every layer with a bias.

    Where it still differs from theirs: the images pass a fixed mean/std
    `Normalization` layer first (theirs take [0, 1] pixels as they are: an
    affine reparametrisation of the first convolution), and the dense layers
    start from Keras' Glorot-uniform instead of He-normal weights (standard
    deviations within 5% of each other at these sizes).

    Args: see `sgn_mnist_cnn`.
    """
    return sgn_mnist_cnn(input_shape=input_shape, num_classes=num_classes, sites=sites,
                         beta=beta, normalization=normalization, mean=mean, std=std,
                         batch_norm=False, feedback_at_inference=feedback_at_inference,
                         name=name)


def sgn_mnist_cnn_wide(input_shape=(28, 28, 1), num_classes=10, sites="default",
                       beta=DEFAULT_BETA, normalization="l2_relative", mean=(0.5,), std=(0.5,),
                       batch_norm=True, feedback_at_inference=False, name="sgn_mnist_cnn_wide"):
    """`sgn_mnist_cnn` twice as wide: conv(32, 4x4, stride 2) + [BN] + ReLU,
    conv(64, 4x4, stride 2) + [BN] + ReLU, Dense(256) + ReLU, Dense(classes).

    About 839k parameters (5x the small CNN's). A PGD-10 training step on a
    batch of 128 took 0.32 s of one core of this project's CPU against 0.13 s
    for `sgn_mnist_cnn`: the capacity step up for robust Fashion-MNIST models
    that the small CNN cannot reach.

    Args: see `sgn_mnist_cnn`.
    """
    return sgn_mnist_cnn(input_shape=input_shape, num_classes=num_classes, sites=sites,
                         beta=beta, normalization=normalization, mean=mean, std=std,
                         filters=(32, 64), dense_units=256, batch_norm=batch_norm,
                         feedback_at_inference=feedback_at_inference, name=name)
