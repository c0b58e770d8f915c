"""Tower architectures in a registry: ``register_tower`` / ``create_tower`` / ``list_towers``.

A tower maps float32 (N, C, H, W) in [0, 1] to (N, D) L2-normalised signatures, so distances lie in
[0, 2] whatever the architecture and a threshold keeps its meaning across models. Every tower
carries ``architecture``, ``embedding_size``, ``input_size`` and ``in_channels`` for the ModelCard.
Towers are modality-agnostic: any channel count (1 for fingerprints, 3 for RGB, 4 for RGB-D).
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn
from torch.nn import functional as F

from .errors import ConfigError

_REGISTRY: dict[str, tuple[Callable[..., nn.Module], str]] = {}


def register_tower(name: str, description: str = "") -> Callable:
    """Decorator: make ``create_tower(name, ...)`` build this class or factory."""

    def wrap(factory: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _REGISTRY:
            raise ConfigError(f"tower {name!r} is already registered")
        _REGISTRY[name] = (factory, description or (factory.__doc__ or "").strip().split("\n")[0])
        return factory

    return wrap


def list_towers() -> dict[str, str]:
    """Registered tower names and their one-line descriptions."""
    return {name: desc for name, (_, desc) in sorted(_REGISTRY.items())}


def create_tower(
    name: str, embedding_size: int, in_channels: int = 1, input_size: int = 96
) -> nn.Module:
    """Build a registered tower; ConfigError naming the known towers for an unknown name."""
    if name not in _REGISTRY:
        raise ConfigError(f"unknown tower {name!r}; known towers: {', '.join(sorted(_REGISTRY))}")
    if embedding_size < 2:
        raise ConfigError(f"embedding_size must be >= 2, got {embedding_size}")
    if input_size < 32 or input_size % 16:
        raise ConfigError(f"input size must be a multiple of 16 and at least 32, got {input_size}")
    if in_channels < 1:
        raise ConfigError(f"in_channels must be >= 1, got {in_channels}")
    tower = _REGISTRY[name][0](embedding_size=embedding_size, in_channels=in_channels,
                               input_size=input_size)
    tower.architecture = name
    tower.embedding_size = embedding_size
    tower.input_size = (input_size, input_size)
    tower.in_channels = in_channels
    return tower


def count_parameters(tower: nn.Module) -> int:
    """Trainable parameters."""
    return sum(p.numel() for p in tower.parameters() if p.requires_grad)


def _conv(cin: int, cout: int, k: int, stride: int = 1, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class _Tower(nn.Module):
    """Features -> 2x2 average pool -> flatten -> linear -> L2 normalise.

    Flattening a small spatial map (not global pooling) keeps where ridges are relative to each
    other, which is what tells two fingers apart.
    """

    def __init__(self, features: nn.Module, feat_channels: int, feat_side: int, embedding_size: int):
        super().__init__()
        self.features = features
        side = feat_side // 2
        self.head = nn.Linear(feat_channels * side * side, embedding_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        x = F.avg_pool2d(x, 2)
        x = self.head(torch.flatten(x, 1))
        return F.normalize(x, dim=1, eps=1e-6)


@register_tower("tiny", "microcontroller tower (MLTK class): ~6k parameters at 16 dimensions, depthwise-separable")
def tiny_tower(embedding_size: int = 16, in_channels: int = 1, input_size: int = 96) -> nn.Module:
    """Microcontroller tower: ~6.4k parameters at D=16 (about 6 kB of int8 weights), 16-byte signature."""
    features = nn.Sequential(
        _conv(in_channels, 8, 5, 2),
        _conv(8, 16, 3, 2),
        _conv(16, 16, 3, 2, groups=16), _conv(16, 24, 1),
        _conv(24, 24, 3, 2, groups=24), _conv(24, 24, 1),
    )
    return _Tower(features, 24, input_size // 16, embedding_size)


@register_tower("small", "small tower: ~100k parameters, plain conv stages")
def small_tower(embedding_size: int = 32, in_channels: int = 1, input_size: int = 96) -> nn.Module:
    """Small tower for a Linux box or a large MCU: four conv stages, 32-64 dimensions."""
    features = nn.Sequential(
        _conv(in_channels, 16, 5, 2),
        _conv(16, 32, 3, 2), _conv(32, 32, 3),
        _conv(32, 48, 3, 2), _conv(48, 48, 3),
        _conv(48, 64, 3, 2),
    )
    return _Tower(features, 64, input_size // 16, embedding_size)


class _MeanTower(nn.Module):
    """Features -> global average pooling -> linear -> L2 normalise.

    Global pooling forgets where a pattern sits in the window, so a finger placed a few
    millimetres off (an R503 window shows a different part of it at every touch) gives a
    signature closer to its enrollment than with a flattened map. It also takes any input size,
    and the head's weights do not grow with it.
    """

    def __init__(self, features: nn.Module, feat_channels: int, embedding_size: int):
        super().__init__()
        self.features = features
        self.head = nn.Linear(feat_channels, embedding_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x).mean(dim=(2, 3))
        return F.normalize(self.head(x), dim=1, eps=1e-6)


class _PooledTower(_MeanTower):
    """Features -> 1x1 expansion -> global average pooling -> linear -> L2 normalise.

    The expansion gives the pooled vector room to keep which patterns are present.
    """

    def __init__(self, features: nn.Module, feat_channels: int, pooled: int, embedding_size: int):
        super().__init__(nn.Sequential(features, _conv(feat_channels, pooled, 1)), pooled,
                         embedding_size)


@register_tower("small_pool", "small tower with a global-pooling head: ~95k parameters, "
                "placement-tolerant")
def small_pool_tower(embedding_size: int = 32, in_channels: int = 1,
                     input_size: int = 96) -> nn.Module:
    """The small tower's conv stages, widened to 192 channels by a 1x1 conv and pooled globally."""
    features = nn.Sequential(
        _conv(in_channels, 16, 5, 2),
        _conv(16, 32, 3, 2), _conv(32, 32, 3),
        _conv(32, 48, 3, 2), _conv(48, 48, 3),
        _conv(48, 64, 3, 2),
    )
    return _PooledTower(features, 64, 192, embedding_size)


class _BasicBlock(nn.Module):
    """ResNet basic block: two 3x3 conv + BN (ReLU between), added to a shortcut, then ReLU.

    The shortcut is the input itself, or a 1x1 strided conv + BN where the block changes the
    stride or the width.
    """

    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.body = nn.Sequential(
            _conv(cin, cout, 3, stride),
            nn.Conv2d(cout, cout, 3, 1, 1, bias=False),
            nn.BatchNorm2d(cout),
        )
        self.shortcut = nn.Identity() if stride == 1 and cin == cout else nn.Sequential(
            nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.body(x) + self.shortcut(x))


@register_tower("medium", "medium tower: ~1.2M parameters, residual stages, global-pooling head; "
                "192 px input, trained on a GPU")
def medium_tower(embedding_size: int = 64, in_channels: int = 1,
                 input_size: int = 192) -> nn.Module:
    """Residual basic blocks in four stride-2 stages after a cheap 5x5 stride-2 stem, pooled globally.

    The stem brings a 192 px window to 96 px with 24 channels; the stages (32, 64, 128 x 2
    blocks, 192) halve it four more times, so a 192 px input ends on a 6x6 map, a 96 px one on 3x3.
    """
    stages: list[nn.Module] = [_conv(in_channels, 24, 5, 2)]
    cin = 24
    for width, blocks in ((32, 1), (64, 1), (128, 2), (192, 1)):
        stages.append(_BasicBlock(cin, width, 2))
        stages.extend(_BasicBlock(width, width) for _ in range(blocks - 1))
        cin = width
    return _PooledTower(nn.Sequential(*stages), cin, 256, embedding_size)


class _Fire(nn.Module):
    """SqueezeNet's fire module: a 1x1 squeeze, then 1x1 and 3x3 expansions side by side."""

    def __init__(self, cin: int, squeeze: int, expand: int):
        super().__init__()
        self.squeeze = _conv(cin, squeeze, 1)
        self.expand1 = _conv(squeeze, expand, 1)
        self.expand3 = _conv(squeeze, expand, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.squeeze(x)
        return torch.cat([self.expand1(x), self.expand3(x)], dim=1)


@register_tower("face", "face tower (SqueezeNet-like): ~190k parameters at 128 dimensions, "
                "gray, RGB, depth or RGB-D input, global pooling")
def face_tower(embedding_size: int = 128, in_channels: int = 4,
               input_size: int = 64) -> nn.Module:
    """A 3x3 stride-2 stem and five fire modules in three resolutions, pooled globally.

    A 64 px face ends on an 8x8 map; fire modules keep the parameter count low (about 190k at
    D = 128) for a tower small enough for a doorbell-class Linux device.
    """
    features = nn.Sequential(
        _conv(in_channels, 32, 3, 2),
        _Fire(32, 16, 32), _Fire(64, 16, 32), nn.MaxPool2d(2),
        _Fire(64, 32, 64), _Fire(128, 32, 64), nn.MaxPool2d(2),
        _Fire(128, 48, 96),
    )
    return _PooledTower(features, 192, 256, embedding_size)


@register_tower("mltk", "MLTK's fingerprint tower re-created: 1,744 parameters (Keras count), "
                "two conv layers, global pooling")
def mltk_tower(embedding_size: int = 16, in_channels: int = 1, input_size: int = 192) -> nn.Module:
    """Silicon Labs MLTK's ``fingerprint_signature_generator`` tower, re-created from its
    published description for comparison with siamid's microcontroller tower.

    5x5 stride-2 conv (8 filters, unpadded, with bias) + BN + ReLU, 2x2 average pool, 3x3 conv
    (16 filters, unpadded, with bias) + BN + ReLU, global average pooling, dense to 16. At D = 16
    that is 1,696 trainable parameters plus 48 BatchNorm running statistics: the 1,744 Keras
    reports. MLTK runs it on a 180 px crop of the 192 px image (3.58 M MACs); siamid's inputs are
    multiples of 16: 176 px costs 3.42 M MACs, the whole 192 px window 4.10 M. Unlike MLTK's,
    the signature is L2-normalised, as every siamid tower's is. Every feature sees only 15
    pixels, so the signature is a texture statistic of the window.
    """
    features = nn.Sequential(
        nn.Conv2d(in_channels, 8, 5, 2), nn.BatchNorm2d(8), nn.ReLU(inplace=True),
        nn.AvgPool2d(2),
        nn.Conv2d(8, 16, 3), nn.BatchNorm2d(16), nn.ReLU(inplace=True),
    )
    return _MeanTower(features, 16, embedding_size)


def _conv_same(cin: int, cout: int, k: int, stride: int = 1, groups: int = 1) -> nn.Sequential:
    """``_conv`` with TFLite's SAME padding: a stride-2 window on an even input is padded
    ``k - 2`` pixels in all, the extra one after (``_conv`` pads ``k // 2`` on both sides, which
    TFLite can only do with a PAD operator that copies the feature map: 75 kB more tensor arena
    on the 96 x 96 x 8 map of a 192 px input). Every stride-2 input of a siamid tower is even (its
    input is a multiple of 16). Stride 1 is ``_conv`` itself."""
    if stride == 1:
        return _conv(cin, cout, k, stride, groups)
    before = (k - 2) // 2
    after = k - 2 - before
    return nn.Sequential(
        nn.ZeroPad2d((before, after, before, after)),
        nn.Conv2d(cin, cout, k, stride, 0, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


def _separable(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    """MobileNet's depthwise-separable block: 3x3 depthwise, then 1x1 pointwise (each + BN,
    ReLU), padded as TFLite pads (``_conv_same``)."""
    return nn.Sequential(_conv_same(cin, cin, 3, stride, groups=cin), _conv(cin, cout, 1))


@register_tower("micro", "microcontroller tower at the sensor's size: 7.6 kB of int8 weights, "
                "3.9 M MACs at 192 px, depthwise-separable, global pooling")
def micro_tower(embedding_size: int = 16, in_channels: int = 1, input_size: int = 192) -> nn.Module:
    """siamid's microcontroller tower: a 176-192 px window in at most 8 kB of int8 weights and
    4 M MACs (at D = 16, as ``siamid profile`` counts them: 7,584 bytes whatever the input, 3.86 M
    MACs at 192 px, 3.24 M at 176 px), with TFLite Micro's plainest operators (Conv2D,
    DepthwiseConv2D, mean, fully connected).

    A 5x5 stride-2 stem (the ridge period is about 9 pixels at 500 dpi), four depthwise-separable
    blocks (8 -> 16 -> 32 -> 32 -> 64 channels, stride 16 in all), a last 3x3 depthwise conv that
    widens each feature's view to 81 pixels, global average pooling and a linear layer to the
    signature. Unlike the flattening ``tiny`` tower, its weights do not grow with the input.
    """
    features = nn.Sequential(
        _conv_same(in_channels, 8, 5, 2),
        _separable(8, 16, 2),
        _separable(16, 32, 2),
        _separable(32, 32),
        _separable(32, 64, 2),
        _conv(64, 64, 3, groups=64),
    )
    return _MeanTower(features, 64, embedding_size)
