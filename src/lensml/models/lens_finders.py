"""The six Lens Finding Challenge architectures that LEXACTUM trains, in PyTorch.

Each network reproduces its Keras original layer for layer, so parameter counts match the
published Keras totals and trained results stay comparable. Models return one raw logit per
image: training uses `BCEWithLogitsLoss`, inference applies the sigmoid.

Two exact rewrites make training cheaper without changing what the weights mean. Where a
max-pool follows a ReLU or ELU, it runs first: a monotone activation commutes with the maximum,
so the activation (and its backward pass) touches a quarter or a ninth of the pixels. Activations
work in place, since no backward pass here needs the tensor they overwrite. Neither moves a
parameter, so model files written before load unchanged.
"""

from __future__ import annotations

import copy
from typing import Callable

import torch
from torch import nn

from .registry import register_model

Size = tuple[int, int]

# Keras BatchNormalization defaults (momentum 0.99 is 0.01 in PyTorch's convention).
KERAS_BN_EPS = 1e-3
KERAS_BN_MOMENTUM = 0.01


def _batch_norm(channels: int, dims: int = 2) -> nn.Module:
    """BatchNorm with Keras' epsilon and momentum, so running statistics evolve as in Keras."""
    cls = nn.BatchNorm2d if dims == 2 else nn.BatchNorm1d
    return cls(channels, eps=KERAS_BN_EPS, momentum=KERAS_BN_MOMENTUM)


def _relu() -> nn.Module:
    return nn.ReLU(inplace=True)


def _elu() -> nn.Module:
    return nn.ELU(inplace=True)


def published_order(model: nn.Module) -> nn.Module:
    """A copy of `model` in the Keras originals' order: each max-pool back behind the activation that
    precedes it there, activations out of place; same weights. For checks and side-by-side timing."""
    model = copy.deepcopy(model)
    for module in model.modules():
        if isinstance(module, (nn.ReLU, nn.ELU)):
            module.inplace = False
        if isinstance(module, nn.Sequential):
            keys = list(module._modules)
            for first, second in zip(keys, keys[1:]):
                pool, act = module._modules[first], module._modules[second]
                if isinstance(pool, nn.MaxPool2d) and isinstance(act, (nn.ReLU, nn.ELU)):
                    module._modules[first], module._modules[second] = act, pool
    return model


def _conv(in_ch: int, out_ch: int, kernel: int, *, stride: int = 1, valid: bool = False) -> nn.Module:
    """Keras Conv2D with bias, 'same' or 'valid' padding, giving Keras' output sizes."""
    if valid or kernel == 1:
        return nn.Conv2d(in_ch, out_ch, kernel, stride=stride)
    if stride != 1:
        raise ValueError("strided 'same' convolutions are only needed with 1x1 kernels here")
    if kernel % 2:
        return nn.Conv2d(in_ch, out_ch, kernel, padding=kernel // 2)
    before, after = (kernel - 1) // 2, kernel // 2
    return nn.Sequential(nn.ZeroPad2d((before, after, before, after)), nn.Conv2d(in_ch, out_ch, kernel))


def _keras_init(model: nn.Module) -> nn.Module:
    """Glorot-uniform weights and zero biases, Keras' defaults, so training starts as in LEXACTUM."""
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            nn.init.xavier_uniform_(module.weight)
            nn.init.zeros_(module.bias)
    return model


def _flat_features(features: nn.Module, in_channels: int, image_size: Size) -> int:
    """Length of the flattened feature vector, found by a dry run so any image size works."""
    was_training = features.training
    features.eval()
    try:
        with torch.no_grad():
            n = features(torch.zeros(1, in_channels, *image_size)).numel()
    except RuntimeError:  # a layer's output would be empty
        n = 0
    features.train(was_training)
    if n == 0:
        raise ValueError(f"cutouts of {image_size[0]}x{image_size[1]} pixels are too small for this architecture")
    return n


Head = Callable[[int], list[nn.Module]]


def _classifier(features: nn.Module, head: Head, in_channels: int, image_size: Size) -> nn.Sequential:
    """Feature extractor, flatten, then the dense layers `head(flat_width)` builds."""
    flat = _flat_features(features, in_channels, image_size)
    return _keras_init(nn.Sequential(features, nn.Flatten(), *head(flat)))


class PreActBottleneck(nn.Module):
    """Pre-activation bottleneck block of CMU DeepLens (Lanusse et al. 2018).

    BN-ELU-conv1x1(width) -> BN-ELU-conv3x3(width) -> BN-ELU-conv1x1(out), plus a shortcut:
    identity when shape is kept, else a strided 1x1 projection of the pre-activated input.
    """

    def __init__(self, in_ch: int, width: int, out_ch: int, stride: int = 1) -> None:
        super().__init__()
        self.preact = nn.Sequential(_batch_norm(in_ch), _elu())
        self.project = stride != 1 or in_ch != out_ch
        # registered before the shortcut: Keras lists a block's layers so (body, then shortcut) for
        # Add([body, shortcut]), and `lensml import-keras` pairs layers in that order
        self.body = nn.Sequential(
            _conv(in_ch, width, 1, stride=stride),
            _batch_norm(width), _elu(), _conv(width, width, 3),
            _batch_norm(width), _elu(), _conv(width, out_ch, 1),
        )
        self.shortcut = _conv(in_ch, out_ch, 1, stride=stride) if self.project else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        activated = self.preact(x)
        skip = self.shortcut(activated) if self.project else x
        return self.body(activated) + skip


def _residual_stage(in_ch: int, width: int, out_ch: int, blocks: int, stride: int) -> list[nn.Module]:
    """`blocks` bottlenecks; only the first may change resolution or channel count."""
    layers: list[nn.Module] = [PreActBottleneck(in_ch, width, out_ch, stride)]
    layers += [PreActBottleneck(out_ch, width, out_ch) for _ in range(blocks - 1)]
    return layers


@register_model(
    "cas_swinburne", task="lens", inputs=("bands",), norm="zscale",
    description="CAS Swinburne (Jacobs et al. 2017): 3 conv + maxpool 3, dense 1024 x2, dropout .5",
    in_channels=1, out_features=1, image_size=(101, 101),
)
def cas_swinburne(in_channels: int = 1, out_features: int = 1, image_size: tuple[int, int] = (101, 101)) -> nn.Module:
    features = nn.Sequential(
        _conv(in_channels, 96, 11), nn.MaxPool2d(3), _relu(),
        _conv(96, 128, 5), nn.MaxPool2d(3), _relu(),
        _conv(128, 256, 3), nn.MaxPool2d(3), _relu(),
    )

    def head(flat: int) -> list[nn.Module]:
        return [
            nn.Linear(flat, 1024), _relu(), nn.Dropout(0.5),
            nn.Linear(1024, 1024), _relu(), nn.Dropout(0.5),
            nn.Linear(1024, out_features),
        ]

    return _classifier(features, head, in_channels, image_size)


def _lastro_pair(in_ch: int, out_ch: int) -> list[nn.Module]:
    """Two 3x3 'valid' convolutions, max-pool 2 and BatchNorm: one LASTRO EPFL stage."""
    return [
        _conv(in_ch, out_ch, 3, valid=True), _relu(),
        _conv(out_ch, out_ch, 3, valid=True), nn.MaxPool2d(2), _relu(),
        _batch_norm(out_ch),
    ]


@register_model(
    "lastro_epfl", task="lens", inputs=("bands",), norm="zscale",
    description="LASTRO EPFL (Schaefer et al. 2018): 'valid' conv stages with BatchNorm, dense 1024 x3",
    in_channels=1, out_features=1, image_size=(101, 101),
)
def lastro_epfl(in_channels: int = 1, out_features: int = 1, image_size: tuple[int, int] = (101, 101)) -> nn.Module:
    """Every convolution is 'valid', as in the Keras original; only that gives its 3200-wide flatten."""
    features = nn.Sequential(
        _conv(in_channels, 16, 4, valid=True), _relu(),
        _conv(16, 16, 3, valid=True), nn.MaxPool2d(2), _relu(), _batch_norm(16),
        *_lastro_pair(16, 32),
        *_lastro_pair(32, 64),
        nn.Dropout(0.1),
        _conv(64, 128, 3, valid=True), _relu(), nn.Dropout(0.1),
        _conv(128, 128, 3, valid=True), _relu(), _batch_norm(128), nn.Dropout(0.1),
    )

    def head(flat: int) -> list[nn.Module]:
        return [
            nn.Linear(flat, 1024), _relu(), nn.Dropout(0.1),
            nn.Linear(1024, 1024), _relu(), nn.Dropout(0.1),
            nn.Linear(1024, 1024), _relu(), _batch_norm(1024, dims=1),
            nn.Linear(1024, out_features),
        ]

    return _classifier(features, head, in_channels, image_size)


@register_model(
    "cmu_deeplens", task="lens", inputs=("bands",), norm="zscale",
    description="CMU DeepLens (Lanusse et al. 2018): 15 pre-activation bottleneck blocks, avgpool, linear",
    in_channels=1, out_features=1, image_size=(101, 101),
)
def cmu_deeplens(in_channels: int = 1, out_features: int = 1, image_size: tuple[int, int] = (101, 101)) -> nn.Module:
    """Lanusse et al.'s pre-activation blocks: convolutions are linear, ELU comes before each one."""
    layers: list[nn.Module] = [_conv(in_channels, 32, 7), _elu(), _batch_norm(32)]
    channels = 32
    for i, width in enumerate((16, 32, 64, 128, 256)):
        layers += _residual_stage(channels, width, 2 * width, blocks=3, stride=1 if i == 0 else 2)
        channels = 2 * width
    layers.append(nn.AvgPool2d(2))
    return _classifier(nn.Sequential(*layers), lambda flat: [nn.Linear(flat, out_features)], in_channels, image_size)


def _conv_bn_relu(in_ch: int, out_ch: int, kernel: int, pool: int | None = None) -> list[nn.Module]:
    """WSI-Net's classification branch unit: conv with ELU, then BatchNorm and ReLU; a following
    max-pool of `pool` pixels runs ahead of the ReLU (see the module docstring)."""
    pooling = [] if pool is None else [nn.MaxPool2d(pool)]
    return [_conv(in_ch, out_ch, kernel), _elu(), _batch_norm(out_ch), *pooling, _relu()]


@register_model(
    "wsi_net", task="lens", inputs=("bands",), norm="zscale",
    description="WSI-Net classification branch: 2 bottleneck blocks, conv 1 and 5, maxpool, dense 128",
    in_channels=1, out_features=1, image_size=(101, 101),
)
def wsi_net(in_channels: int = 1, out_features: int = 1, image_size: tuple[int, int] = (101, 101)) -> nn.Module:
    """LEXACTUM's reduction of WSI-Net to its classification branch, without group norm or SPP."""
    features = nn.Sequential(
        _conv(in_channels, 32, 7), _elu(),
        PreActBottleneck(32, 16, 32),
        PreActBottleneck(32, 32, 64, stride=2),
        *_conv_bn_relu(64, 32, 1),
        *_conv_bn_relu(32, 32, 5, pool=2),
    )

    def head(flat: int) -> list[nn.Module]:
        return [nn.Linear(flat, 128), nn.Linear(128, out_features)]

    return _classifier(features, head, in_channels, image_size)


@register_model(
    "lens_flow", task="lens", inputs=("bands",), norm="zscale",
    description="LensFlow (Pourrahmani et al. 2018): avgpool 3, 3 small conv + maxpool, dense 128",
    in_channels=1, out_features=1, image_size=(101, 101),
)
def lens_flow(in_channels: int = 1, out_features: int = 1, image_size: tuple[int, int] = (101, 101)) -> nn.Module:
    features = nn.Sequential(
        nn.AvgPool2d(3),
        _conv(in_channels, 16, 5), nn.MaxPool2d(2), _relu(),
        _conv(16, 25, 5), nn.MaxPool2d(2), _relu(),
        _conv(25, 36, 4), nn.MaxPool2d(2), _relu(),
    )

    def head(flat: int) -> list[nn.Module]:
        return [nn.Linear(flat, 128), _relu(), nn.Dropout(0.5), nn.Linear(128, out_features)]

    return _classifier(features, head, in_channels, image_size)


@register_model(
    "lens_finder", task="lens", inputs=("bands",), norm="zscale",
    description="LensFinder (Pearson et al. 2018): conv 5-64 and 3-128 with maxpool, dense 128",
    in_channels=1, out_features=1, image_size=(101, 101),
)
def lens_finder(in_channels: int = 1, out_features: int = 1, image_size: tuple[int, int] = (101, 101)) -> nn.Module:
    features = nn.Sequential(
        _conv(in_channels, 64, 5), nn.MaxPool2d(2), _relu(),
        _conv(64, 128, 3), nn.MaxPool2d(2), _relu(),
    )

    def head(flat: int) -> list[nn.Module]:
        return [nn.Linear(flat, 128), _relu(), nn.Linear(128, out_features)]

    return _classifier(features, head, in_channels, image_size)
