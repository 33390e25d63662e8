"""Building blocks of LightTrack, one ``nn.Module`` per block type (timm style), and the
fixed layout around them (stem width, block specs, neck, head outputs).

The same classes build the supernet (which holds every candidate) and the static
subnets (which hold one), so a static model's outputs equal the supernet path's.
Layer details follow docs/method.md §5 (the released model definition): BatchNorm
defaults, padding ``k // 2``, convs without bias except in SE, channel attention,
the neck's 1x1 conv and the head's output convs.
"""
from __future__ import annotations

import copy
import math
from typing import Iterable, TypeVar

import torch
import torch.nn.functional as F
from torch import nn

from lighttrack.arch import IMAGENET_STAGE, NUM_BLOCKS, STAGE_BLOCKS, STAGE_CHANNELS, STAGE_STRIDES, TEMPLATE_INPUT

__all__ = [
    "STEM_CHANNELS", "NECK_CHANNELS", "block_specs", "make_divisible", "SqueezeExcite", "ConvBnAct",
    "DepthwiseSeparable", "InvertedResidual", "HeadDSConv", "ChannelAttention", "pixel_correlation", "Neck",
    "head_output", "copy_of", "init_backbone_", "BN_PAIRS",
]

STEM_CHANNELS = 16
NECK_CHANNELS = 128  # the correlation map is projected to this many channels for the heads


def block_specs(num_blocks: int = NUM_BLOCKS) -> list[tuple[int, int, int]]:
    """(in_chs, out_chs, stride) of the first ``num_blocks`` MBConv blocks (max 14 + 4)."""
    channels = (*STAGE_CHANNELS, IMAGENET_STAGE[0])
    blocks = (*STAGE_BLOCKS, IMAGENET_STAGE[1])
    strides = (*STAGE_STRIDES, IMAGENET_STAGE[2])
    specs, in_chs = [], STEM_CHANNELS
    for out_chs, n, stride in zip(channels, blocks, strides):
        for j in range(n):
            specs.append((in_chs, out_chs, stride if j == 0 else 1))
            in_chs = out_chs
    if not 0 <= num_blocks <= len(specs):
        raise ValueError(f"num_blocks {num_blocks} not in 0..{len(specs)}")
    return specs[:num_blocks]


def make_divisible(v: float, divisor: int = 8) -> int:
    """Round ``v`` to a multiple of ``divisor``, never going more than 10% below it."""
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


class SqueezeExcite(nn.Module):
    """avg-pool -> 1x1 reduce (bias) -> ReLU -> 1x1 expand (bias) -> hard-sigmoid gate."""

    def __init__(self, chs: int, reduced_chs: int) -> None:
        super().__init__()
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.conv_reduce = nn.Conv2d(chs, reduced_chs, 1, bias=True)
        self.act = nn.ReLU(inplace=True)
        self.conv_expand = nn.Conv2d(reduced_chs, chs, 1, bias=True)

    def gate(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> per-channel gate in [0, 1], (B, C, 1, 1)."""
        s = self.avg_pool(x)  # (B, C, 1, 1)
        return F.hardsigmoid(self.conv_expand(self.act(self.conv_reduce(s))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(x)


class ConvBnAct(nn.Module):
    """conv kxk (no bias) -> BN -> Swish: the stem, and the phase-1 1x1 conv to 320."""

    def __init__(self, in_chs: int, out_chs: int, kernel_size: int, stride: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_chs, out_chs, kernel_size, stride, kernel_size // 2, bias=False)
        self.bn = nn.BatchNorm2d(out_chs)
        self.act = nn.SiLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class DepthwiseSeparable(nn.Module):
    """Stage-0 block: depthwise kxk -> BN -> Swish -> SE -> pointwise 1x1 -> BN, residual.

    SE reduces to ``make_divisible(in_chs * se_ratio)`` channels (8 for 16 channels).
    """

    def __init__(self, in_chs: int, out_chs: int, kernel_size: int = 3, stride: int = 1,
                 se_ratio: float = 0.25) -> None:
        super().__init__()
        self.has_residual = in_chs == out_chs and stride == 1
        self.conv_dw = nn.Conv2d(in_chs, in_chs, kernel_size, stride, kernel_size // 2,
                                 groups=in_chs, bias=False)
        self.bn1 = nn.BatchNorm2d(in_chs)
        self.act = nn.SiLU(inplace=True)
        self.se = SqueezeExcite(in_chs, make_divisible(in_chs * se_ratio))
        self.conv_pw = nn.Conv2d(in_chs, out_chs, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_chs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act(self.bn1(self.conv_dw(x)))
        out = self.bn2(self.conv_pw(self.se(out)))
        return out + x if self.has_residual else out


class InvertedResidual(nn.Module):
    """MBConv: 1x1 expand -> BN -> Swish -> dw kxk -> BN -> Swish -> SE -> 1x1 project -> BN.

    Residual when ``in_chs == out_chs`` and stride 1; SE reduces to
    ``make_divisible(mid_chs * se_ratio)`` channels (the released code's ``reduce_mid``).
    """

    def __init__(self, in_chs: int, out_chs: int, kernel_size: int, exp_ratio: int,
                 stride: int = 1, se_ratio: float = 0.25) -> None:
        super().__init__()
        mid_chs = make_divisible(in_chs * exp_ratio)
        self.has_residual = in_chs == out_chs and stride == 1
        self.conv_pw = nn.Conv2d(in_chs, mid_chs, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(mid_chs)
        self.act = nn.SiLU(inplace=True)
        self.conv_dw = nn.Conv2d(mid_chs, mid_chs, kernel_size, stride, kernel_size // 2,
                                 groups=mid_chs, bias=False)
        self.bn2 = nn.BatchNorm2d(mid_chs)
        self.se = SqueezeExcite(mid_chs, make_divisible(mid_chs * se_ratio))
        self.conv_pwl = nn.Conv2d(mid_chs, out_chs, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_chs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act(self.bn1(self.conv_pw(x)))
        out = self.act(self.bn2(self.conv_dw(out)))
        out = self.bn3(self.conv_pwl(self.se(out)))
        return out + x if self.has_residual else out


class HeadDSConv(nn.Module):
    """Head layer: depthwise kxk (no bias) -> pointwise 1x1 (no bias) -> BN -> ReLU."""

    def __init__(self, in_chs: int, out_chs: int, kernel_size: int) -> None:
        super().__init__()
        self.conv_dw = nn.Conv2d(in_chs, in_chs, kernel_size, 1, kernel_size // 2,
                                 groups=in_chs, bias=False)
        self.conv_pw = nn.Conv2d(in_chs, out_chs, 1, bias=False)
        self.bn = nn.BatchNorm2d(out_chs)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv_pw(self.conv_dw(x))))


class ChannelAttention(nn.Module):
    """avg-pool -> 1x1 (bias) -> ReLU -> 1x1 (bias) -> sigmoid -> scale the input."""

    def __init__(self, chs: int) -> None:
        super().__init__()
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(chs, chs, 1, bias=True)
        self.act = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(chs, chs, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.fc2(self.act(self.fc1(self.avg_pool(x))))  # (B, C, 1, 1)
        return x * torch.sigmoid(s)


def pixel_correlation(zf: torch.Tensor, xf: torch.Tensor) -> torch.Tensor:
    """Every template position is a 1x1 kernel over the search map (unscaled).

    zf (B, C, Hz, Wz), xf (B, C, Hx, Wx) -> (B, Hz*Wz, Hx, Wx), one batched matmul z^T x.
    """
    b, c, hx, wx = xf.shape
    z = zf.flatten(2).transpose(1, 2)  # (B, Hz*Wz, C)
    out = torch.matmul(z, xf.flatten(2))  # (B, Hz*Wz, Hx*Wx)
    return out.view(b, z.shape[1], hx, wx)


class Neck(nn.Module):
    """BN on template features, BN on search features, pixel-wise correlation,
    channel attention, 1x1 conv to 128 channels.

    The BNs exist once per possible backbone output channel count (``channels``); the
    one matching the features runs. A static subnet holds only its own (``static``). The
    template feature positions are the correlation channels: 64 (8x8) at ``stride`` 16,
    256 (16x16) at stride 8, so each stride has its own neck (as in the released supernet).
    """

    def __init__(self, channels: Iterable[int], stride: int = 16) -> None:
        super().__init__()
        channels = sorted(set(channels))
        self.side = TEMPLATE_INPUT // stride  # template feature side
        positions = self.side ** 2
        self.bn_z = nn.ModuleDict({f"c{c}": nn.BatchNorm2d(c) for c in channels})
        self.bn_x = nn.ModuleDict({f"c{c}": nn.BatchNorm2d(c) for c in channels})
        self.ca = ChannelAttention(positions)
        self.adjust = nn.Conv2d(positions, NECK_CHANNELS, 1, bias=True)

    def forward(self, zf: torch.Tensor, xf: torch.Tensor) -> torch.Tensor:
        """zf (B, C, s, s) raw template features (s = 8 or 16), xf (B, C, H, W) -> (B, 128, H, W)."""
        key = self._key(zf.shape[1])
        if tuple(zf.shape[-2:]) != (self.side, self.side):
            raise ValueError(f"template features must be {self.side}x{self.side} for this neck "
                             f"(128x128 template), got {tuple(zf.shape)}")
        corr = pixel_correlation(self.bn_z[key](zf), self.bn_x[key](xf))  # (B, s*s, H, W)
        return self.adjust(self.ca(corr))

    def _key(self, channels: int) -> str:
        key = f"c{channels}"
        if key not in self.bn_z:
            raise ValueError(f"neck has no BN for {channels}-channel features (has {list(self.bn_z)})")
        return key

    def path_modules(self, channels: int) -> list[nn.Module]:
        key = self._key(channels)
        return [self.bn_z[key], self.bn_x[key], self.ca, self.adjust]

    def static(self, channels: int) -> "Neck":
        """A standalone copy (see ``copy_of``) keeping only the BNs for ``channels``-channel features."""
        key = self._key(channels)
        neck = copy_of(self)
        for bns in (neck.bn_z, neck.bn_x):
            for other in [k for k in bns if k != key]:
                del bns[other]
        return neck


def head_output(kind: str, x: torch.Tensor) -> torch.Tensor:
    """Scale the output conv: cls logits x0.1; reg ltrb distances ReLU(x) * 16 (pixels)."""
    return 0.1 * x if kind == "cls" else torch.relu(x) * 16.0


M = TypeVar("M", bound=nn.Module)


def copy_of(module: M) -> M:
    """A standalone copy of ``module``: its own parameters and buffers with the same values.

    All parameters are trainable, as in a freshly built module, even where the source's are
    frozen (phase 2's backbone, an EMA copy): an extracted subnet is retrained whole.
    """
    out = copy.deepcopy(module)
    out.requires_grad_(True)
    return out


def init_backbone_(module: nn.Module, zero_init_last: bool = True) -> None:
    """Backbone init of the released code (Google's): conv ~ N(0, sqrt(2 / fan_out)) with
    fan_out = k*k*out/groups, conv bias 0, BN weight 1 / bias 0; with two changes for
    training from scratch on small data (embedded 10-class set, a fixed path, 150 SGD
    steps at 64 px: released init 11 % top-1; second change only 24 %, first only 61 %,
    both 51 %):

    * ``zero_init_last``: the last BN of every residual MBConv starts at gamma 0, so each
      residual block starts as the identity and a deep path trains like a shallow one
      (timm's ``zero_init_last``);
    * linear layers ~ N(0, 0.01), bias 0: the released U(+-1/sqrt(classes)) is meant for
      1000 classes; with 10 it puts the initial loss at 3.2 instead of ln 10 = 2.3.
    """
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels // m.groups
            nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / fan_out))
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0.0, 0.01)
            nn.init.zeros_(m.bias)
    if zero_init_last:
        for m in module.modules():
            if isinstance(m, InvertedResidual) and m.has_residual:
                nn.init.zeros_(m.bn3.weight)


# (conv, bn) attribute pairs that fold_bn may merge, per block class.
BN_PAIRS: dict[type, tuple[tuple[str, str], ...]] = {
    ConvBnAct: (("conv", "bn"),),
    DepthwiseSeparable: (("conv_dw", "bn1"), ("conv_pw", "bn2")),
    InvertedResidual: (("conv_pw", "bn1"), ("conv_dw", "bn2"), ("conv_pwl", "bn3")),
    HeadDSConv: (("conv_pw", "bn"),),
}
