"""Shear regressors: LensNet's VGG19 network, and lensml's default built for shear."""

from __future__ import annotations

from torch import nn

from .registry import register_model

VGG19_LAYOUT = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M")


def _conv_stack(in_channels: int, layout, batch_norm: bool) -> tuple[nn.Sequential, int, int]:
    """3x3 'same' convolutions and 2x2 max-pools; returns the stack, its channels and its pooling count."""
    layers: list[nn.Module] = []
    pools = 0
    for item in layout:
        if item == "M":
            layers.append(nn.MaxPool2d(2))
            pools += 1
            continue
        layers.append(nn.Conv2d(in_channels, item, 3, padding=1, bias=not batch_norm))
        if batch_norm:
            layers.append(nn.BatchNorm2d(item))
        layers.append(nn.ReLU(inplace=True))
        in_channels = item
    return nn.Sequential(*layers), in_channels, pools


def _head(features: int, hidden: tuple[int, ...], out_features: int) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Flatten()]
    for width in hidden:
        layers += [nn.Linear(features, width), nn.ReLU(inplace=True)]
        features = width
    layers.append(nn.Linear(features, out_features))
    return nn.Sequential(*layers)


@register_model(
    "lensnet_vgg19", task="shear", inputs=("galaxy",), norm="minmax",
    description="LensNet's network: VGG19 conv base (random init), dense 512 x2, linear out",
    in_channels=1, out_features=2, image_size=(40, 40),
)
def lensnet_vgg19(in_channels: int = 1, out_features: int = 2, image_size: tuple[int, int] = (40, 40)) -> nn.Module:
    features, channels, pools = _conv_stack(in_channels, VGG19_LAYOUT, batch_norm=False)
    side_h, side_w = image_size[0] >> pools, image_size[1] >> pools
    if side_h < 1 or side_w < 1:
        raise ValueError(f"VGG19 needs stamps of at least 32x32 pixels, got {image_size}")
    return nn.Sequential(features, _head(channels * side_h * side_w, (512, 512), out_features))


@register_model(
    "shear_cnn", task="shear", inputs=("galaxy", "psf"), norm="rms",
    description="galaxy + PSF as two channels, 3 VGG blocks with BatchNorm, dense 256 (the default before shear_net)",
    in_channels=2, out_features=2, image_size=(40, 40),
)
def shear_cnn(
    in_channels: int = 2, out_features: int = 2, image_size: tuple[int, int] = (40, 40), width: int = 32
) -> nn.Module:
    layout = (width, width, "M", 2 * width, 2 * width, "M", 4 * width, 4 * width, "M")
    features, channels, pools = _conv_stack(in_channels, layout, batch_norm=True)
    side_h, side_w = image_size[0] >> pools, image_size[1] >> pools
    if side_h < 1 or side_w < 1:
        raise ValueError(f"shear_cnn needs stamps of at least 8x8 pixels, got {image_size}")
    return nn.Sequential(features, _head(channels * side_h * side_w, (256,), out_features))


class CentreCrop(nn.Module):
    """The central `size` x `size` pixels: a galaxy stamp's light sits near its centre."""

    def __init__(self, size: tuple[int, int]):
        super().__init__()
        self.size = tuple(size)

    def forward(self, x):
        h, w = x.shape[-2:]
        top, left = (h - self.size[0]) // 2, (w - self.size[1]) // 2
        return x[..., top : top + self.size[0], left : left + self.size[1]]


def leading_crop(net: nn.Module) -> tuple[int, int] | None:
    """The size of the CentreCrop a network starts with (shear_net's), or None: a caller can cut its
    inputs to it early, the network's own crop then keeping them whole."""
    first = net
    while isinstance(first, nn.Sequential) and len(first):
        first = first[0]
    return first.size if isinstance(first, CentreCrop) else None


def _conv_bn_relu(in_channels: int, out_channels: int) -> list[nn.Module]:
    return [nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False), nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True)]


@register_model(
    "shear_net", task="shear", inputs=("galaxy", "psf"), norm="rms",
    description="lensml default: galaxy + PSF, central 32x32 crop, 5 convolutions with BatchNorm, "
                "3 average pools, dense 128 (~170k parameters; sized for metacalibration)",
    in_channels=2, out_features=2, image_size=(40, 40),
)
def shear_net(
    in_channels: int = 2, out_features: int = 2, image_size: tuple[int, int] = (40, 40), width: int = 16,
    crop: int = 32,
) -> nn.Module:
    """Small enough to run ten times per galaxy (five metacal images, two views) at survey rates.

    Average pooling rather than max pooling keeps the output a smooth function of the pixels, which
    metacalibration's finite-difference response (a 1% shear) needs.
    """
    side = (min(crop, image_size[0]), min(crop, image_size[1]))
    if min(side) < 8:
        raise ValueError(f"shear_net needs stamps of at least 8x8 pixels, got {tuple(image_size)}")
    w = width
    features = nn.Sequential(
        CentreCrop(side), *_conv_bn_relu(in_channels, w), *_conv_bn_relu(w, w), nn.AvgPool2d(2),
        *_conv_bn_relu(w, 2 * w), *_conv_bn_relu(2 * w, 2 * w), nn.AvgPool2d(2),
        *_conv_bn_relu(2 * w, 4 * w), nn.AvgPool2d(2),
    )
    return nn.Sequential(features, _head(4 * w * (side[0] >> 3) * (side[1] >> 3), (128,), out_features))
