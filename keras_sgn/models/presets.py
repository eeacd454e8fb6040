"""Named residual networks, as data: each preset is the `sgn_resnet` arguments
of a published architecture plus what a reader needs to know about it.

Adding a network is adding an entry to `PRESETS`; `preset_builder` turns each
entry into a builder (`sgn_resnet18`, ...) that `keras_sgn.models.get` knows.
"""

from keras_sgn.models import resnet
from keras_sgn.models.resnet import CIFAR10_MEAN, CIFAR10_STD
from keras_sgn.models.sites import DEFAULT_BETA

_RESNET18 = dict(stem_filters=64, stage_filters=(64, 128, 256, 512),
                 blocks_per_stage=(2, 2, 2, 2), stage_strides=(1, 2, 2, 2))
_WIDE_RESNET = dict(stem_filters=16, stage_filters=(16, 32, 64), stage_strides=(1, 2, 2),
                    block_type="preact")
_SGN = 'Aboutalebi et al. "Self-Gradient Networks", arXiv 2011.09364.'
_WRN = 'Zagoruyko, Komodakis. "Wide Residual Networks", BMVC 2016.'

PRESETS = {
    "sgn_resnet18": {
        "architecture": {**_RESNET18, "block_type": "basic"},
        "description": (
            "CIFAR ResNet-18: 3x3 stem convolution with 64 filters (no max-pool), four "
            "stages of two BasicBlocks with widths 64/128/256/512 and strides 1/2/2/2 "
            "(1x1 conv + BN projection shortcut when the shape changes), global average "
            "pooling and a dense layer giving logits."),
        "trainable_parameters": 11_173_962,  # the PyTorch reference CIFAR ResNet-18
        "references": ('He et al. "Deep Residual Learning for Image Recognition", CVPR 2016.',
                       _SGN),
    },
    "sgn_preact_resnet18": {
        "architecture": {**_RESNET18, "block_type": "preact"},
        "description": (
            'The PreAct ResNet-18 of Wong et al. 2020 ("Fast is better than free"): 3x3 '
            "stem convolution with 64 filters, four stages of two pre-activation blocks "
            "(BN-ReLU-conv-BN-ReLU-conv, widths 64/128/256/512, strides 1/2/2/2, 1x1 conv "
            "projection shortcut on the pre-activated input when the shape changes), then "
            "BN-ReLU, global average pooling and a dense layer."),
        "trainable_parameters": 11_172_170,  # Wong et al. 2020 PreActResNet18
        "references": ('He et al. "Identity Mappings in Deep Residual Networks", ECCV 2016.',
                       'Wong et al. "Fast is better than free", ICLR 2020.', _SGN),
    },
    "sgn_wrn_28_10": {
        "architecture": {**_WIDE_RESNET, "blocks_per_stage": (4, 4, 4), "widen_factor": 10},
        "description": "WRN-28-10, the same as `sgn_wide_resnet(depth=28, width=10, ...)`.",
        "trainable_parameters": 36_479_194,
        "references": (_WRN, _SGN),
    },
    "sgn_wrn_34_10": {
        "architecture": {**_WIDE_RESNET, "blocks_per_stage": (5, 5, 5), "widen_factor": 10},
        "description": "WRN-34-10, the same as `sgn_wide_resnet(depth=34, width=10, ...)`.",
        "trainable_parameters": 46_160_474,
        "references": (_WRN, _SGN),
    },
}

_DOC = """{description}

    About {millions:.2f}M trainable parameters. Sites: {sites}.

    Args:
        input_shape: `(height, width, channels)` of the images, in [0, 1].
        num_classes: number of classes (>= 2); the model outputs logits.
        sites: `"default"` (input + after every stage), a list of site names,
            or `()`/`None` for the plain network.
        beta: float, or dict `{{site_name: beta}}` (missing sites get DEFAULT_BETA).
        normalization: `"l2_relative"` (default), `"sign"` or `"raw"`.
        mean, std: per-channel statistics of the input normalisation.
        feedback_at_inference: research option of `SGNModel`.
        name: model name.
        **options: further `sgn_resnet` options that are not part of the
            architecture (`dropout`).

    Returns:
        An `SGNModel` mapping images in [0, 1] to float32 logits.

    Example:

    ```python
    model = keras_sgn.models.get("{name}", num_classes=10)
    logits = model(images)  # images: (batch, 32, 32, 3) in [0, 1]
    ```

    Reference:
        {references}
    """


def preset_builder(preset_name):
    """The builder of a preset: `sgn_resnet` with the preset's architecture."""
    preset = PRESETS[preset_name]

    def builder(input_shape=(32, 32, 3), num_classes=10, sites="default", beta=DEFAULT_BETA,
                normalization="l2_relative", mean=CIFAR10_MEAN, std=CIFAR10_STD,
                feedback_at_inference=False, name=preset_name, **options):
        # Looked up at call time, so a test can watch what a preset passes on.
        return resnet.sgn_resnet(**preset["architecture"], **options, input_shape=input_shape,
                                 num_classes=num_classes, sites=sites, beta=beta,
                                 normalization=normalization, mean=mean, std=std,
                                 feedback_at_inference=feedback_at_inference, name=name)

    stages = len(preset["architecture"]["stage_filters"])
    builder.__name__ = builder.__qualname__ = preset_name
    builder.__doc__ = _DOC.format(
        description=preset["description"], name=preset_name,
        millions=preset["trainable_parameters"] / 1e6,
        sites=", ".join(["`input`"] + [f"`stage{i}`" for i in range(1, stages + 1)]),
        references="\n        ".join(preset["references"]))
    return builder


BUILDERS = {name: preset_builder(name) for name in PRESETS}
sgn_resnet18 = BUILDERS["sgn_resnet18"]
sgn_preact_resnet18 = BUILDERS["sgn_preact_resnet18"]
sgn_wrn_28_10 = BUILDERS["sgn_wrn_28_10"]
sgn_wrn_34_10 = BUILDERS["sgn_wrn_34_10"]
