"""A Keras image classifier as a PyTorch module, for comparing attacks with a PyTorch peer.

`port_to_torch(model)` rebuilds a chain of Keras layers (each layer's input is the
previous layer's output) as a `torch.nn.Sequential` holding the same weights, in
inference mode: Conv2D, Dense, BatchNormalization (moving statistics), the
model's Normalization / Rescaling layer, max / average / global pooling, Flatten,
activations, and the layers that are the identity at inference (SelfGradient
sites, Dropout). The module takes images the PyTorch way, `(N, C, H, W)` in [0, 1],
and returns the same logits as the Keras model on `(N, H, W, C)`: kernels are
transposed to PyTorch's layout, and Flatten orders the features as Keras does
(height, width, channel). `check_port` refuses a port whose logits differ from the
Keras model's by more than a tolerance, or whose predictions differ.

torch is an optional extra (`make install-peer`), imported only when a port is made.
"""

import math

import numpy as np

from keras_sgn.errors import ArgumentError

#: The largest absolute logit difference a port may show (the peer comparison's bound).
LOGIT_TOLERANCE = 1e-4
#: Keras layer classes that are the identity in inference mode.
IDENTITY_LAYERS = ("InputLayer", "SelfGradient", "Dropout", "SpatialDropout2D",
                   "GaussianNoise", "GaussianDropout", "AlphaDropout", "ActivityRegularization")
#: Keras activation names the port knows (a softmax is refused: the attacks need logits).
ACTIVATIONS = ("linear", "relu", "tanh", "sigmoid", "elu", "selu", "silu", "swish",
               "softplus")
#: Keras's epsilon, the floor of Normalization's standard deviation (keras.config.epsilon()).
KERAS_EPSILON = 1e-7


def _torch():
    import torch  # noqa: PLC0415  (the optional extra: imported only when a port is made)

    return torch


def _modules():
    """The small `torch.nn.Module`s a port is made of (defined once torch is imported)."""
    torch = _torch()
    nn, functional = torch.nn, torch.nn.functional

    class ChannelAffine(nn.Module):
        """`x * scale + shift`, `scale`/`shift` per channel or NHWC-broadcast, on an NCHW
        (or 2-D) input: kept in both layouts, so a 4-D input is never transposed."""

        def __init__(self, scale, shift):
            super().__init__()
            for name, value in (("scale", scale), ("shift", shift)):
                value = np.asarray(value, np.float32)
                self.register_buffer(name, torch.from_numpy(value.copy()))
                nchw = (value.reshape(1, -1, 1, 1) if value.ndim <= 1
                        else np.broadcast_to(value, (1,) * (4 - value.ndim) + value.shape)
                        .transpose(0, 3, 1, 2))
                self.register_buffer(name + "_nchw", torch.from_numpy(nchw.copy()))

        def forward(self, x):
            if x.dim() == 4:
                return x * self.scale_nchw + self.shift_nchw
            return x * self.scale + self.shift

    class KerasFlatten(nn.Module):
        """Keras's Flatten of channels-last features: (height, width, channel) order."""

        def forward(self, x):
            if x.dim() == 4:
                x = x.permute(0, 2, 3, 1)
            return x.reshape(x.shape[0], -1)

    class Pad(nn.Module):
        """Constant padding `(left, right, top, bottom)`, e.g. TensorFlow's 'same'."""

        def __init__(self, pads, value=0.0):
            super().__init__()
            self.pads, self.value = tuple(pads), value

        def forward(self, x):
            return functional.pad(x, self.pads, value=self.value)

    class GlobalPool(nn.Module):
        def __init__(self, reduce, keepdims):
            super().__init__()
            self.reduce, self.keepdims = reduce, keepdims

        def forward(self, x):
            out = x.mean((2, 3)) if self.reduce == "mean" else x.amax((2, 3))
            return out[:, :, None, None] if self.keepdims else out

    class KerasReLU(nn.Module):
        """Keras's ReLU layer: threshold, negative slope, max value."""

        def __init__(self, threshold, negative_slope, max_value):
            super().__init__()
            self.threshold, self.slope, self.max_value = threshold, negative_slope, max_value

        def forward(self, x):
            out = torch.where(x >= self.threshold, x, self.slope * (x - self.threshold))
            return out if self.max_value is None else out.clamp(max=self.max_value)

    return dict(ChannelAffine=ChannelAffine, KerasFlatten=KerasFlatten, Pad=Pad,
                GlobalPool=GlobalPool, KerasReLU=KerasReLU)


def _activation(name, layer_name):
    nn = _torch().nn
    table = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "elu": nn.ELU,
             "selu": nn.SELU, "silu": nn.SiLU, "swish": nn.SiLU, "softplus": nn.Softplus}
    if name == "linear":
        return None
    if name not in table:
        raise ArgumentError(
            f"model: layer {layer_name!r} has activation {name!r}, which the PyTorch port does "
            f"not know (known: {', '.join(ACTIVATIONS)}). Received: activation={name!r}. A "
            "softmax must be removed: the attacks need logits.")
    return table[name]()


def _activation_name(layer):
    activation = getattr(layer, "activation", None)
    return "linear" if activation is None else getattr(activation, "__name__", str(activation))


def same_padding(size, kernel, stride, dilation=1):
    """TensorFlow's 'same' padding of one spatial dimension: `(before, after)`, the
    extra pixel (if the total is odd) after, as `tf.nn.conv2d` pads."""
    effective = (kernel - 1) * dilation + 1
    total = max((math.ceil(size / stride) - 1) * stride + effective - size, 0)
    return total // 2, total - total // 2


def _spatial_pads(layer, kernel, stride, dilation=(1, 1)):
    if layer.padding == "valid":
        return None
    if layer.padding != "same":
        raise ArgumentError(f"model: layer {layer.name!r} has padding {layer.padding!r}; the "
                            f"PyTorch port knows 'valid' and 'same'. Received: "
                            f"padding={layer.padding!r}.")
    _, height, width, _ = layer.input.shape
    top, bottom = same_padding(height, kernel[0], stride[0], dilation[0])
    left, right = same_padding(width, kernel[1], stride[1], dilation[1])
    return (left, right, top, bottom) if left or right or top or bottom else None


def _check_channels_last(layer):
    if getattr(layer, "data_format", "channels_last") != "channels_last":
        raise ArgumentError(f"model: layer {layer.name!r} is channels_first; the PyTorch port "
                            "takes channels_last models (Keras's default). Received: "
                            f"data_format={layer.data_format!r}.")


def _conv2d(layer, parts):
    torch = _torch()
    _check_channels_last(layer)
    kernel = np.asarray(layer.kernel)  # (kh, kw, in / groups, out)
    groups = getattr(layer, "groups", 1)
    conv = torch.nn.Conv2d(kernel.shape[2] * groups, kernel.shape[3], kernel.shape[:2],
                           stride=tuple(layer.strides), dilation=tuple(layer.dilation_rate),
                           groups=groups, bias=layer.use_bias)
    with torch.no_grad():
        conv.weight.copy_(torch.from_numpy(kernel.transpose(3, 2, 0, 1).copy()))
        if layer.use_bias:
            conv.bias.copy_(torch.from_numpy(np.asarray(layer.bias)))
    pads = _spatial_pads(layer, kernel.shape[:2], layer.strides, layer.dilation_rate)
    return ([parts["Pad"](pads)] if pads else []) + [conv]


def _dense(layer, parts):
    torch = _torch()
    kernel = np.asarray(layer.kernel)  # (in, out)
    linear = torch.nn.Linear(kernel.shape[0], kernel.shape[1], bias=layer.use_bias)
    with torch.no_grad():
        linear.weight.copy_(torch.from_numpy(kernel.T.copy()))
        if layer.use_bias:
            linear.bias.copy_(torch.from_numpy(np.asarray(layer.bias)))
    return [linear]


def _batch_norm(layer, parts):
    if layer.axis not in (-1, len(layer.input.shape) - 1):
        raise ArgumentError(f"model: layer {layer.name!r} normalises axis {layer.axis}; the "
                            "PyTorch port takes the channel axis (-1). Received: "
                            f"axis={layer.axis}.")
    mean, variance = np.asarray(layer.moving_mean), np.asarray(layer.moving_variance)
    gamma = np.asarray(layer.gamma) if layer.scale else np.ones_like(mean)
    beta = np.asarray(layer.beta) if layer.center else np.zeros_like(mean)
    scale = gamma / np.sqrt(variance + layer.epsilon)
    return [parts["ChannelAffine"](scale, beta - mean * scale)]


def _normalization(layer, parts):
    mean, variance = np.asarray(layer.mean), np.asarray(layer.variance)
    std = np.maximum(np.sqrt(variance), KERAS_EPSILON)
    if layer.invert:
        return [parts["ChannelAffine"](std, mean)]
    return [parts["ChannelAffine"](1.0 / std, -mean / std)]


def _rescaling(layer, parts):
    return [parts["ChannelAffine"](np.asarray(layer.scale, np.float32),
                                   np.asarray(layer.offset, np.float32))]


def _pooling(layer, parts):
    torch = _torch()
    _check_channels_last(layer)
    size, stride = tuple(layer.pool_size), tuple(layer.strides)
    pads = _spatial_pads(layer, size, stride)
    if type(layer).__name__ == "MaxPooling2D":
        return ([parts["Pad"](pads, -math.inf)] if pads else []) + [
            torch.nn.MaxPool2d(size, stride)]
    if pads:
        raise ArgumentError(f"model: layer {layer.name!r} is an average pooling with 'same' "
                            "padding, which the PyTorch port does not take (TensorFlow leaves "
                            "the padding out of each mean). Received: padding='same'.")
    return [torch.nn.AvgPool2d(size, stride)]


def _global_pooling(layer, parts):
    _check_channels_last(layer)
    reduce = "mean" if "Average" in type(layer).__name__ else "max"
    if getattr(layer, "keepdims", False):
        raise ArgumentError(f"model: layer {layer.name!r} keeps its pooled dimensions; the "
                            "PyTorch port takes keepdims=False. Received: keepdims=True.")
    return [parts["GlobalPool"](reduce, False)]


def _relu(layer, parts):
    max_value = None if layer.max_value is None else float(layer.max_value)
    if max_value is None and not float(layer.threshold) and not float(layer.negative_slope):
        return [_torch().nn.ReLU()]
    return [parts["KerasReLU"](float(layer.threshold), float(layer.negative_slope), max_value)]


def _activation_layer(layer, parts):
    module = _activation(_activation_name(layer), layer.name)
    return [module] if module is not None else []


def _flatten(layer, parts):
    _check_channels_last(layer)
    return [parts["KerasFlatten"]()]


_PORTS = {"Conv2D": _conv2d, "Dense": _dense, "BatchNormalization": _batch_norm,
          "Normalization": _normalization, "Rescaling": _rescaling,
          "MaxPooling2D": _pooling, "AveragePooling2D": _pooling,
          "GlobalAveragePooling2D": _global_pooling, "GlobalMaxPooling2D": _global_pooling,
          "ReLU": _relu, "Activation": _activation_layer, "Flatten": _flatten}
#: Keras layer classes the port rebuilds (besides `IDENTITY_LAYERS`).
PORTED_LAYERS = tuple(_PORTS)


def _chain(model):
    """The model's layers, checked to form one chain (no branches, no shared layers)."""
    layers = list(model.layers)
    previous = None
    for layer in layers:
        try:
            inbound = layer.input
        except (AttributeError, ValueError) as error:
            raise ArgumentError(f"model: layer {layer.name!r} is used more than once or has "
                                "no single input; the PyTorch port takes a chain of layers. "
                                f"Received: {error}") from None
        if previous is not None and inbound is not previous.output:
            raise ArgumentError(
                f"model: layer {layer.name!r} does not take the output of the layer before it "
                f"({previous.name!r}); the PyTorch port takes a chain of layers (no branches "
                f"or residual connections). Received: a {type(model).__name__} with branches.")
        previous = layer
    return layers


def port_to_torch(model):
    """`model` (a Keras classifier, a chain of layers, returning logits) as a
    `torch.nn.Sequential` in eval mode taking `(N, C, H, W)` images; raises
    `ArgumentError` naming the first layer it cannot port."""
    torch = _torch()
    if getattr(model, "feedback_at_inference", False):
        raise ArgumentError("model: it self-injects feedback at inference, which the PyTorch "
                            "port does not rebuild. Received: feedback_at_inference=True.")
    parts, modules = _modules(), []
    for layer in _chain(model):
        kind = type(layer).__name__
        if kind in IDENTITY_LAYERS:
            continue
        if kind not in _PORTS:
            raise ArgumentError(
                f"model: layer {layer.name!r} is a {kind}, which the PyTorch port does not "
                f"rebuild (it rebuilds {', '.join(PORTED_LAYERS + IDENTITY_LAYERS)}). "
                f"Received: {kind}.")
        modules += _PORTS[kind](layer, parts)
        if kind in ("Conv2D", "Dense"):
            activation = _activation(_activation_name(layer), layer.name)
            modules += [activation] if activation is not None else []
    return torch.nn.Sequential(*modules).eval()


def to_nchw(x):
    """Channels-last images as a float32 `torch.Tensor` in PyTorch's (N, C, H, W)."""
    torch = _torch()
    return torch.from_numpy(np.array(np.asarray(x, np.float32).transpose(0, 3, 1, 2), order="C"))


def to_nhwc(x):
    """A `(N, C, H, W)` torch tensor as channels-last float32 numpy images."""
    return np.ascontiguousarray(x.detach().cpu().numpy().transpose(0, 2, 3, 1))


def torch_logits(module, x, batch_size=256):
    """The module's logits on channels-last images `x`, as numpy."""
    torch = _torch()
    with torch.no_grad():
        return np.concatenate([module(to_nchw(x[i:i + batch_size])).numpy()
                               for i in range(0, len(x), batch_size)])


def check_port(model, module, x, tolerance=LOGIT_TOLERANCE, batch_size=256):
    """Compare the port's logits with the Keras model's on images `x` (channels
    last); returns `{"n_images", "max_abs_logit_difference", "same_predictions",
    "tolerance"}`, or raises `ArgumentError` if the difference exceeds `tolerance`
    or a prediction differs."""
    keras_logits = np.concatenate([np.asarray(model(x[i:i + batch_size], training=False))
                                   for i in range(0, len(x), batch_size)])
    ported = torch_logits(module, x, batch_size)
    difference = float(np.max(np.abs(keras_logits - ported)))
    differing = int(np.sum(np.argmax(keras_logits, -1) != np.argmax(ported, -1)))
    if not difference <= tolerance or differing:
        raise ArgumentError(
            f"model: its PyTorch port does not compute the same logits: max |logit difference| "
            f"{difference:.3g} on {len(x)} images (tolerance {tolerance:g}), {differing} "
            "predictions differ; the comparison would attack another model. Received: "
            f"a {type(model).__name__} the port rebuilds wrongly (report it with its config).")
    return {"n_images": int(len(x)), "max_abs_logit_difference": difference,
            "same_predictions": True, "tolerance": tolerance}
