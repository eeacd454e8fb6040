"""Backbones with self-gradient feedback sites (DESIGN sections 2 and 4).

Every builder returns an `SGNModel` (a functional `keras.Model`) that maps
images in **[0, 1]** to **logits** (no softmax). The layout is always::

    image -> site_input -> input_normalization -> stage1 -> site_stage1
          -> stage2 -> site_stage2 -> ... -> head -> logits

* `site_input` is a `SelfGradient(input_site=True)` on the raw image, before
  the mean/std normalisation, so an attack's epsilon is in pixel units.
* `input_normalization` is a `keras.layers.Normalization` holding the dataset
  mean and variance (constants, not weights).
* `site_stage{i}` is a `SelfGradient(beta=beta_i, normalization=...)` after
  stage `i`. For residual networks the site sits on the residual stream at the
  end of the stage; the final BatchNorm/ReLU of pre-activation networks belongs
  to the head.
* The logits `Dense` layer is float32 so mixed precision keeps float32 logits.
* Every `BatchNormalization` uses `momentum=0.9` (attacks run BN in inference
  mode, so moving statistics must catch up quickly in short runs).

Which sites exist is chosen with `sites`: `"default"` (input + after every
stage), a list of names such as `["input", "stage2"]` (or the same names
comma-separated in one string, handy for command-line flags), or `()`/`None`/
`"none"` for the plain network without any `SelfGradient` layer. Sites have no weights,
so a plain network and an SGN have the same parameters.

Reference:
    He, Zhang, Ren, Sun. "Deep Residual Learning for Image Recognition", CVPR
    2016, and "Identity Mappings in Deep Residual Networks", ECCV 2016.
    Zagoruyko, Komodakis. "Wide Residual Networks", BMVC 2016.
    Wong, Rice, Kolter. "Fast is better than free: Revisiting adversarial
    training", ICLR 2020 (the PreAct ResNet-18 used for Fast-AT).
    Aboutalebi, Shafiee, Wong. "Self-Gradient Networks", arXiv 2011.09364
    (abstract only; the feedback mechanism is this project's reconstruction).
"""

import difflib
import math
import numbers

import keras
from keras import layers

from keras_sgn.layers import NORMALIZATIONS, SelfGradient
from keras_sgn.models.sgn_model import SGNModel

SITE_PREFIX = "site_"
INPUT_SITE = "input"
DEFAULT_BETA = 0.01  # measured on digits (see README); a fraction of the activation norm
BN_MOMENTUM = 0.9
BN_EPSILON = 1e-5

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2471, 0.2435, 0.2616)


# --------------------------------------------------------------------------
# Argument validation
# --------------------------------------------------------------------------


def _check_num_classes(num_classes):
    if (
        isinstance(num_classes, bool)
        or not isinstance(num_classes, numbers.Integral)
        or num_classes < 2
    ):
        raise ValueError(
            f"num_classes must be an integer >= 2, got {num_classes!r}."
        )
    return int(num_classes)


def _check_input_shape(input_shape, min_size=1):
    try:
        shape = tuple(input_shape)
    except TypeError:
        shape = None
    if shape is None or len(shape) != 3 or not all(
        isinstance(d, numbers.Integral) and not isinstance(d, bool) and d >= 1
        for d in shape
    ):
        raise ValueError(
            "input_shape must be (height, width, channels) with three positive "
            f"integers (channels last, batch excluded), got {input_shape!r}."
        )
    shape = tuple(int(d) for d in shape)
    if min(shape[:2]) < min_size:
        raise ValueError(
            f"input_shape {shape}: height and width must be >= {min_size} for "
            "this network."
        )
    return shape


def _as_floats(value, param):
    if isinstance(value, numbers.Real):
        value = (value,)
    try:
        values = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(
            f"{param} must be a number or a sequence of numbers, got {value!r}."
        ) from None
    if not values or not all(math.isfinite(v) for v in values):
        raise ValueError(
            f"{param} must be a non-empty sequence of finite numbers, got {value!r}."
        )
    return values


def _check_mean_std(mean, std, channels):
    mean = _as_floats(mean, "mean")
    std = _as_floats(std, "std")
    for param, values in (("mean", mean), ("std", std)):
        if len(values) not in (1, channels):
            raise ValueError(
                f"{param} must have 1 or {channels} values (one per input "
                f"channel), got {len(values)}: {values}."
            )
    if len(mean) != len(std):
        raise ValueError(
            f"mean and std must have the same length, got {len(mean)} and "
            f"{len(std)}."
        )
    if not all(s > 0 for s in std):
        raise ValueError(f"std values must be > 0, got {std}.")
    return mean, std


def _check_normalization(normalization):
    if normalization not in NORMALIZATIONS:
        raise ValueError(
            f"normalization must be one of {NORMALIZATIONS}, got {normalization!r}."
        )
    return normalization


def _check_name(name):
    if not isinstance(name, str) or not name:
        raise ValueError(f"name must be a non-empty string, got {name!r}.")
    return name


def stage_names(num_stages):
    """Valid site names of a network with `num_stages` stages, in order."""
    return (INPUT_SITE,) + tuple(f"stage{i}" for i in range(1, num_stages + 1))


def _strip_prefix(site):
    if isinstance(site, str) and site.startswith(SITE_PREFIX):
        return site[len(SITE_PREFIX):]
    return site


def resolve_sites(sites, beta, num_stages):
    """Validate `sites`/`beta`; return `{site_name: beta}` in network order.

    The input site's value is `None` (its step is the training method's
    `alpha`, not a `beta`). Names may be given with or without the
    `SITE_PREFIX` (`"stage1"` or `"site_stage1"`).
    """
    valid = stage_names(num_stages)
    if sites is None:
        selected = ()
    elif isinstance(sites, str):
        if sites == "default":
            selected = valid
        elif sites.strip().lower() == "none":
            selected = ()
        else:
            selected = tuple(s.strip() for s in sites.split(",") if s.strip())
    else:
        try:
            selected = tuple(sites)
        except TypeError:
            raise ValueError(
                "sites must be 'default', a list of site names, or () / None for "
                f"the plain network; got {sites!r}. Valid names: {list(valid)}."
            ) from None
    selected = tuple(_strip_prefix(s) for s in selected)
    unknown = [s for s in selected if s not in valid]
    if unknown:
        raise ValueError(
            f"sites: unknown site name(s) {unknown}. Valid names for this network: "
            f"{list(valid)} (or 'default' for all of them, () for none)."
        )
    chosen = [s for s in valid if s in selected]

    hidden = [s for s in chosen if s != INPUT_SITE]
    if isinstance(beta, dict):
        beta_map = {_strip_prefix(k): v for k, v in beta.items()}
        if INPUT_SITE in beta_map:
            raise ValueError(
                "beta: the 'input' site takes no beta (its step is the training "
                "method's alpha, projected to the threat model). Give beta only "
                f"for the selected hidden sites: {hidden}."
            )
        extra = [k for k in beta_map if k not in hidden]
        if extra:
            raise ValueError(
                f"beta: key(s) {extra} are not selected hidden sites. Selected "
                f"hidden sites: {hidden}; all valid names: {list(valid[1:])}."
            )
        betas = {s: beta_map.get(s, DEFAULT_BETA) for s in hidden}
    else:
        betas = {s: beta for s in hidden}
    for site, value in betas.items():
        if (
            isinstance(value, bool)
            or not isinstance(value, numbers.Real)
            or not math.isfinite(value)
            or value < 0
        ):
            raise ValueError(
                f"beta for site {site!r} must be a finite number >= 0, got {value!r}."
            )
    return {s: (None if s == INPUT_SITE else float(betas[s])) for s in chosen}


# --------------------------------------------------------------------------
# Building blocks
# --------------------------------------------------------------------------


class _Sites:
    """Places the selected `SelfGradient` layers while a network is built."""

    def __init__(self, resolved, normalization):
        self.resolved = resolved
        self.normalization = normalization

    def __call__(self, x, site):
        if site not in self.resolved:
            return x
        if site == INPUT_SITE:
            layer = SelfGradient(input_site=True, name=SITE_PREFIX + INPUT_SITE)
        else:
            layer = SelfGradient(
                beta=self.resolved[site],
                normalization=self.normalization,
                name=SITE_PREFIX + site,
            )
        return layer(x)


def _conv(filters, kernel_size, strides, name, use_bias=False):
    return layers.Conv2D(
        filters,
        kernel_size,
        strides=strides,
        padding="same",
        use_bias=use_bias,
        kernel_initializer="he_normal",
        name=name,
    )


def _bn(name):
    return layers.BatchNormalization(
        momentum=BN_MOMENTUM, epsilon=BN_EPSILON, name=name
    )


def _relu(name):
    return layers.ReLU(name=name)


def _stem(input_shape, sites, mean, std):
    inputs = keras.Input(shape=input_shape, name="image")
    x = sites(inputs, INPUT_SITE)
    x = layers.Normalization(
        mean=list(mean), variance=[s * s for s in std], name="input_normalization"
    )(x)
    return inputs, x


def _logits(x, num_classes):
    return layers.Dense(num_classes, dtype="float32", name="logits")(x)


def _basic_block(x, filters, strides, name):
    """Post-activation BasicBlock (He et al. 2016a)."""
    shortcut = x
    y = _conv(filters, 3, strides, f"{name}_conv1")(x)
    y = _bn(f"{name}_bn1")(y)
    y = _relu(f"{name}_relu1")(y)
    y = _conv(filters, 3, 1, f"{name}_conv2")(y)
    y = _bn(f"{name}_bn2")(y)
    if strides != 1 or x.shape[-1] != filters:
        shortcut = _conv(filters, 1, strides, f"{name}_shortcut_conv")(x)
        shortcut = _bn(f"{name}_shortcut_bn")(shortcut)
    y = layers.Add(name=f"{name}_add")([y, shortcut])
    return _relu(f"{name}_out")(y)


def _preact_block(x, filters, strides, name, dropout=0.0):
    """Pre-activation BasicBlock (He et al. 2016b; WRN block with dropout).

    As in the reference implementations (Wong et al. 2020; Zagoruyko &
    Komodakis 2016), the projection shortcut reads the pre-activated input and
    the identity shortcut reads the raw input.
    """
    y = _bn(f"{name}_bn1")(x)
    y = _relu(f"{name}_relu1")(y)
    if strides != 1 or x.shape[-1] != filters:
        shortcut = _conv(filters, 1, strides, f"{name}_shortcut_conv")(y)
    else:
        shortcut = x
    y = _conv(filters, 3, strides, f"{name}_conv1")(y)
    y = _bn(f"{name}_bn2")(y)
    y = _relu(f"{name}_relu2")(y)
    if dropout > 0:
        y = layers.Dropout(dropout, name=f"{name}_dropout")(y)
    y = _conv(filters, 3, 1, f"{name}_conv2")(y)
    return layers.Add(name=f"{name}_add")([y, shortcut])


def _common(input_shape, num_classes, sites, beta, normalization, mean, std, name,
            num_stages, min_size=1):
    input_shape = _check_input_shape(input_shape, min_size=min_size)
    num_classes = _check_num_classes(num_classes)
    normalization = _check_normalization(normalization)
    mean, std = _check_mean_std(mean, std, input_shape[-1])
    name = _check_name(name)
    resolved = resolve_sites(sites, beta, num_stages)
    return input_shape, num_classes, _Sites(resolved, normalization), mean, std, name


# --------------------------------------------------------------------------
# Builders
# --------------------------------------------------------------------------


def sgn_resnet18(
    input_shape=(32, 32, 3),
    num_classes=10,
    sites="default",
    beta=DEFAULT_BETA,
    normalization="l2_relative",
    mean=CIFAR10_MEAN,
    std=CIFAR10_STD,
    feedback_at_inference=False,
    name="sgn_resnet18",
):
    """CIFAR ResNet-18 with self-gradient sites (about 11.17M parameters).

    3x3 stem convolution with 64 filters (no max-pool), four stages of two
    BasicBlocks with widths 64/128/256/512 and strides 1/2/2/2 (1x1 conv + BN
    projection shortcut when the shape changes), global average pooling and a
    dense layer giving logits. Sites: `input`, `stage1` ... `stage4`.

    Args:
        input_shape: `(height, width, channels)` of the images, in [0, 1].
        num_classes: number of classes (>= 2); the model outputs logits.
        sites: `"default"` (input + after every stage), a list of site names
            (`"input"`, `"stage1"`, ...), or `()`/`None` for the plain network.
        beta: feedback strength of the hidden sites, a float for all of them
            or a dict `{site_name: beta}` (missing selected sites get DEFAULT_BETA).
        normalization: gradient normalisation `N` of the hidden sites:
            `"l2_relative"` (default), `"sign"` or `"raw"`.
        mean: per-channel mean of the input normalisation (pixel units).
        std: per-channel standard deviation of the input normalisation.
        feedback_at_inference: research option of `SGNModel` (self-injection
            at test time using the predicted label).
        name: model name.

    Returns:
        An `SGNModel` mapping images in [0, 1] to float32 logits.

    Example:

    ```python
    import keras_sgn.models
    model = keras_sgn.models.get("sgn_resnet18", num_classes=10)
    logits = model(images)  # images: (batch, 32, 32, 3) in [0, 1]
    ```

    Reference:
        He et al. "Deep Residual Learning for Image Recognition", CVPR 2016.
        Aboutalebi et al. "Self-Gradient Networks", arXiv 2011.09364.
    """
    input_shape, num_classes, site, mean, std, name = _common(
        input_shape, num_classes, sites, beta, normalization, mean, std, name, 4
    )
    inputs, x = _stem(input_shape, site, mean, std)
    x = _conv(64, 3, 1, "stem_conv")(x)
    x = _bn("stem_bn")(x)
    x = _relu("stem_relu")(x)
    for stage, (filters, strides) in enumerate(
        ((64, 1), (128, 2), (256, 2), (512, 2)), start=1
    ):
        for block in range(2):
            x = _basic_block(
                x, filters, strides if block == 0 else 1, f"stage{stage}_block{block + 1}"
            )
        x = site(x, f"stage{stage}")
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    logits = _logits(x, num_classes)
    return SGNModel(
        inputs=inputs,
        outputs=logits,
        name=name,
        feedback_at_inference=feedback_at_inference,
    )


def sgn_preact_resnet18(
    input_shape=(32, 32, 3),
    num_classes=10,
    sites="default",
    beta=DEFAULT_BETA,
    normalization="l2_relative",
    mean=CIFAR10_MEAN,
    std=CIFAR10_STD,
    feedback_at_inference=False,
    name="sgn_preact_resnet18",
):
    """Pre-activation ResNet-18 with self-gradient sites (about 11.17M params).

    The PreAct ResNet-18 of Wong et al. 2020 ("Fast is better than free"):
    3x3 stem convolution with 64 filters, four stages of two pre-activation
    blocks (BN-ReLU-conv-BN-ReLU-conv, widths 64/128/256/512, strides
    1/2/2/2, 1x1 conv projection shortcut on the pre-activated input when the
    shape changes), then BN-ReLU, global average pooling and a dense layer.
    Sites `stage1` ... `stage4` sit on the residual stream after each stage.

    Args:
        input_shape: `(height, width, channels)` of the images, in [0, 1].
        num_classes: number of classes (>= 2); the model outputs logits.
        sites: `"default"`, a list of site names (`"input"`, `"stage1"` ...
            `"stage4"`), or `()`/`None` for the plain network.
        beta: float, or dict `{site_name: beta}` (missing sites get DEFAULT_BETA).
        normalization: `"l2_relative"` (default), `"sign"` or `"raw"`.
        mean: per-channel mean of the input normalisation.
        std: per-channel standard deviation of the input normalisation.
        feedback_at_inference: research option of `SGNModel`.
        name: model name.

    Returns:
        An `SGNModel` mapping images in [0, 1] to float32 logits.

    Example:

    ```python
    import keras_sgn.models
    model = keras_sgn.models.get("sgn_preact_resnet18", beta={"stage2": 0.2})
    ```

    Reference:
        He et al. "Identity Mappings in Deep Residual Networks", ECCV 2016.
        Wong et al. "Fast is better than free", ICLR 2020.
        Aboutalebi et al. "Self-Gradient Networks", arXiv 2011.09364.
    """
    input_shape, num_classes, site, mean, std, name = _common(
        input_shape, num_classes, sites, beta, normalization, mean, std, name, 4
    )
    inputs, x = _stem(input_shape, site, mean, std)
    x = _conv(64, 3, 1, "stem_conv")(x)
    for stage, (filters, strides) in enumerate(
        ((64, 1), (128, 2), (256, 2), (512, 2)), start=1
    ):
        for block in range(2):
            x = _preact_block(
                x, filters, strides if block == 0 else 1, f"stage{stage}_block{block + 1}"
            )
        x = site(x, f"stage{stage}")
    x = _bn("final_bn")(x)
    x = _relu("final_relu")(x)
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    logits = _logits(x, num_classes)
    return SGNModel(
        inputs=inputs,
        outputs=logits,
        name=name,
        feedback_at_inference=feedback_at_inference,
    )


def sgn_wide_resnet(
    depth=34,
    width=10,
    input_shape=(32, 32, 3),
    num_classes=10,
    dropout=0.0,
    sites="default",
    beta=DEFAULT_BETA,
    normalization="l2_relative",
    mean=CIFAR10_MEAN,
    std=CIFAR10_STD,
    feedback_at_inference=False,
    name=None,
):
    """Wide ResNet WRN-`depth`-`width` with self-gradient sites.

    Pre-activation WRN: 3x3 stem convolution with 16 filters, three groups of
    `(depth - 4) / 6` blocks with widths 16k/32k/64k (k = `width`) and strides
    1/2/2, then BN-ReLU, global average pooling and a dense layer. WRN-28-10
    has about 36.5M parameters, WRN-34-10 about 46.2M. Sites: `input`,
    `stage1` ... `stage3` (one per group, on the residual stream).

    Args:
        depth: total depth; `(depth - 4)` must be a positive multiple of 6.
        width: widening factor k (>= 1).
        input_shape: `(height, width, channels)` of the images, in [0, 1].
        num_classes: number of classes (>= 2); the model outputs logits.
        dropout: dropout rate between the two convolutions of a block, in
            [0, 1). 0 (default) adds no Dropout layer.
        sites: `"default"`, a list of site names, or `()`/`None`.
        beta: float, or dict `{site_name: beta}` (missing sites get DEFAULT_BETA).
        normalization: `"l2_relative"` (default), `"sign"` or `"raw"`.
        mean: per-channel mean of the input normalisation.
        std: per-channel standard deviation of the input normalisation.
        feedback_at_inference: research option of `SGNModel`.
        name: model name; default `f"sgn_wrn_{depth}_{width}"`.

    Returns:
        An `SGNModel` mapping images in [0, 1] to float32 logits.

    Example:

    ```python
    import keras_sgn.models
    model = keras_sgn.models.get("sgn_wide_resnet", depth=28, width=10)
    ```

    Reference:
        Zagoruyko, Komodakis. "Wide Residual Networks", BMVC 2016.
        Aboutalebi et al. "Self-Gradient Networks", arXiv 2011.09364.
    """
    if (
        isinstance(depth, bool)
        or not isinstance(depth, numbers.Integral)
        or depth < 10
        or (depth - 4) % 6 != 0
    ):
        raise ValueError(
            "depth must be an integer with (depth - 4) a positive multiple of 6 "
            f"(10, 16, 22, 28, 34, 40, ...), got depth={depth!r}."
        )
    if isinstance(width, bool) or not isinstance(width, numbers.Integral) or width < 1:
        raise ValueError(f"width (widening factor) must be an integer >= 1, got {width!r}.")
    if (
        isinstance(dropout, bool)
        or not isinstance(dropout, numbers.Real)
        or not 0.0 <= dropout < 1.0
    ):
        raise ValueError(f"dropout must be a number in [0, 1), got {dropout!r}.")
    depth, width = int(depth), int(width)
    if name is None:
        name = f"sgn_wrn_{depth}_{width}"
    input_shape, num_classes, site, mean, std, name = _common(
        input_shape, num_classes, sites, beta, normalization, mean, std, name, 3
    )
    blocks_per_group = (depth - 4) // 6
    inputs, x = _stem(input_shape, site, mean, std)
    x = _conv(16, 3, 1, "stem_conv")(x)
    for stage, (filters, strides) in enumerate(
        ((16 * width, 1), (32 * width, 2), (64 * width, 2)), start=1
    ):
        for block in range(blocks_per_group):
            x = _preact_block(
                x,
                filters,
                strides if block == 0 else 1,
                f"stage{stage}_block{block + 1}",
                dropout=float(dropout),
            )
        x = site(x, f"stage{stage}")
    x = _bn("final_bn")(x)
    x = _relu("final_relu")(x)
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    logits = _logits(x, num_classes)
    return SGNModel(
        inputs=inputs,
        outputs=logits,
        name=name,
        feedback_at_inference=feedback_at_inference,
    )


def _wrn_preset(depth, width, parameters):
    """A named shortcut for `sgn_wide_resnet(depth=depth, width=width, ...)`."""
    preset_name = f"sgn_wrn_{depth}_{width}"

    def builder(input_shape=(32, 32, 3), num_classes=10, name=preset_name, **kwargs):
        return sgn_wide_resnet(depth=depth, width=width, input_shape=input_shape,
                               num_classes=num_classes, name=name, **kwargs)

    builder.__name__ = builder.__qualname__ = preset_name
    builder.__doc__ = f"""WRN-{depth}-{width} (about {parameters} parameters).

    Same as `sgn_wide_resnet(depth={depth}, width={width}, ...)`; see it for the Args.

    Example:

    ```python
    model = keras_sgn.models.get("{preset_name}")
    ```

    Reference:
        Zagoruyko, Komodakis. "Wide Residual Networks", BMVC 2016.
        Aboutalebi et al. "Self-Gradient Networks", arXiv 2011.09364.
    """
    return builder


sgn_wrn_34_10 = _wrn_preset(34, 10, "46.2M")
sgn_wrn_28_10 = _wrn_preset(28, 10, "36.5M")


def sgn_small_cnn(
    input_shape=(8, 8, 1),
    num_classes=10,
    sites="default",
    beta=DEFAULT_BETA,
    normalization="l2_relative",
    mean=(0.5,),
    std=(0.5,),
    width=32,
    batch_norm=True,
    feedback_at_inference=False,
    name="sgn_small_cnn",
):
    """A small three-stage CNN with self-gradient sites, for 8x8 digits and MNIST.

    * stage1: conv(width, 3x3, same) + [BN] + ReLU, plus a 2x2 max-pool when
      the image is at least 16 pixels high and wide (e.g. 28x28 MNIST);
    * stage2: conv(2*width, 3x3, same) + [BN] + ReLU + 2x2 max-pool;
    * stage3: flatten + Dense(4*width) + ReLU;
    * head: Dense(num_classes) logits (float32).

    Sites: `input`, `stage1`, `stage2`, `stage3`.

    Args:
        input_shape: `(height, width, channels)`, height and width >= 2.
        num_classes: number of classes (>= 2); the model outputs logits.
        sites: `"default"`, a list of site names, or `()`/`None`.
        beta: float, or dict `{site_name: beta}` (missing sites get DEFAULT_BETA).
        normalization: `"l2_relative"` (default), `"sign"` or `"raw"`.
        mean: per-channel mean of the input normalisation.
        std: per-channel standard deviation of the input normalisation.
        width: filters of the first convolution (>= 1).
        batch_norm: whether to use BatchNormalization. `False` gives a
            BN-free network (convolutions then have biases), needed when
            replicas must compute exactly the same thing.
        feedback_at_inference: research option of `SGNModel`.
        name: model name.

    Returns:
        An `SGNModel` mapping images in [0, 1] to float32 logits.

    Example:

    ```python
    import keras_sgn.models
    model = keras_sgn.models.get("sgn_small_cnn")                  # 8x8 digits
    mnist = keras_sgn.models.get("sgn_small_cnn", input_shape=(28, 28, 1))
    ```

    Reference:
        Aboutalebi et al. "Self-Gradient Networks", arXiv 2011.09364.
    """
    if isinstance(width, bool) or not isinstance(width, numbers.Integral) or width < 1:
        raise ValueError(f"width must be an integer >= 1, got {width!r}.")
    width = int(width)
    if not isinstance(batch_norm, bool):
        raise ValueError(f"batch_norm must be True or False, got {batch_norm!r}.")
    input_shape, num_classes, site, mean, std, name = _common(
        input_shape, num_classes, sites, beta, normalization, mean, std, name, 3,
        min_size=2,
    )
    inputs, x = _stem(input_shape, site, mean, std)

    def conv_bn_relu(x, filters, prefix):
        x = _conv(filters, 3, 1, f"{prefix}_conv", use_bias=not batch_norm)(x)
        if batch_norm:
            x = _bn(f"{prefix}_bn")(x)
        return _relu(f"{prefix}_relu")(x)

    x = conv_bn_relu(x, width, "stage1")
    if min(input_shape[:2]) >= 16:
        x = layers.MaxPooling2D(2, name="stage1_pool")(x)
    x = site(x, "stage1")
    x = conv_bn_relu(x, 2 * width, "stage2")
    x = layers.MaxPooling2D(2, name="stage2_pool")(x)
    x = site(x, "stage2")
    x = layers.Flatten(name="stage3_flatten")(x)
    x = layers.Dense(4 * width, name="stage3_dense")(x)
    x = _relu("stage3_relu")(x)
    x = site(x, "stage3")
    logits = _logits(x, num_classes)
    return SGNModel(
        inputs=inputs,
        outputs=logits,
        name=name,
        feedback_at_inference=feedback_at_inference,
    )


# --------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------

_REGISTRY = {
    "sgn_resnet18": sgn_resnet18,
    "sgn_preact_resnet18": sgn_preact_resnet18,
    "sgn_wide_resnet": sgn_wide_resnet,
    "sgn_wrn_34_10": sgn_wrn_34_10,
    "sgn_wrn_28_10": sgn_wrn_28_10,
    "sgn_small_cnn": sgn_small_cnn,
}


def list_models():
    """Sorted names accepted by `get`."""
    return sorted(_REGISTRY)


def get(model, /, **kwargs):
    """Build a registered backbone by name.

    Args:
        model: builder name, one of `list_models()`.
        **kwargs: forwarded to the builder (including `name=` for the model's
            own name).

    Returns:
        The `SGNModel` built by the builder.

    Raises:
        ValueError: if `model` is not a registered name; the message lists
            close matches and all valid names.

    Example:

    ```python
    import keras_sgn.models
    model = keras_sgn.models.get("sgn_small_cnn", input_shape=(28, 28, 1))
    ```
    """
    key = model if isinstance(model, str) else None
    if key not in _REGISTRY:
        close = difflib.get_close_matches(str(model), list(_REGISTRY), n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise ValueError(
            f"Unknown model={model!r}.{hint} Valid names: {list_models()}."
        )
    return _REGISTRY[key](**kwargs)
