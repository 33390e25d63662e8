"""Standalone subnets of one architecture, built from the supernet's block classes.

``build`` makes a freshly initialised one; ``supernet.extract`` assembles one from the
static modules a supernet's layers hand out, and in eval mode its outputs equal the
supernet path's. ``fold_bn`` merges BatchNorms into the preceding convs and
``tile_se_gates`` reshapes the SE products, for deployment.
"""
from __future__ import annotations

import copy
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from lighttrack.arch import MBCONV_OPS, Arch, HeadArch
from lighttrack.models.blocks import (
    BN_PAIRS, NECK_CHANNELS, STEM_CHANNELS, ConvBnAct, DepthwiseSeparable, HeadDSConv, InvertedResidual, Neck,
    SqueezeExcite, block_specs, head_output, init_backbone_,
)

__all__ = ["StaticBackbone", "StaticHead", "StaticTracker", "StaticClassifier", "SearchBranch",
           "fold_bn", "TiledGateSE", "tile_se_gates"]


class StaticBackbone(nn.Module):
    """Stem -> DS block -> one MBConv block per choice (indices into MBCONV_OPS)."""

    def __init__(self, choices: Sequence[int], stem: ConvBnAct, ds: DepthwiseSeparable,
                 blocks: Sequence[InvertedResidual]) -> None:
        super().__init__()
        self.choices = tuple(int(c) for c in choices)
        self.stem = stem
        self.ds = ds
        self.blocks = nn.Sequential(*blocks)

    @classmethod
    def build(cls, choices: Sequence[int]) -> "StaticBackbone":
        """Freshly initialised (Google init, ``init_backbone_``)."""
        blocks = [InvertedResidual(i, o, *MBCONV_OPS[int(c)], stride=s)
                  for (i, o, s), c in zip(block_specs(len(choices)), choices)]
        net = cls(choices, ConvBnAct(3, STEM_CHANNELS, 3, stride=2),
                  DepthwiseSeparable(STEM_CHANNELS, STEM_CHANNELS, 3), blocks)
        init_backbone_(net)
        return net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.ds(self.stem(x)))


class StaticHead(nn.Module):
    """One head branch (``kind`` 'cls' or 'reg'): DSConv layers, then the output conv."""

    def __init__(self, kind: str, layers: Sequence[HeadDSConv], out: nn.Conv2d) -> None:
        super().__init__()
        self.kind = kind
        self.layers = nn.Sequential(*layers)
        self.out = out

    @classmethod
    def build(cls, kind: str, head: HeadArch, in_chs: int = NECK_CHANNELS) -> "StaticHead":
        """Freshly initialised (PyTorch defaults): the non-skip layers of ``head``."""
        layers, chs = [], in_chs
        for k in head.kernels:
            if k is not None:
                layers.append(HeadDSConv(chs, head.channels, k))
                chs = head.channels
        out = nn.Conv2d(head.channels, 1 if kind == "cls" else 4, 3, padding=1, bias=True)
        return cls(kind, layers, out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return head_output(self.kind, self.out(self.layers(x)))


class StaticTracker(nn.Module):
    """A single LightTrack architecture: ``template(z)``, ``search(zf, x)``, ``forward(z, x)``."""

    def __init__(self, arch: Arch, backbone: StaticBackbone, neck: Neck, cls_head: StaticHead,
                 reg_head: StaticHead) -> None:
        super().__init__()
        self.arch = arch
        self.backbone = backbone
        self.neck = neck
        self.cls_head = cls_head
        self.reg_head = reg_head

    @classmethod
    def build(cls, arch: Arch) -> "StaticTracker":
        """Freshly initialised (backbone Google init, neck/heads PyTorch defaults)."""
        return cls(arch, StaticBackbone.build(arch.backbone), Neck((arch.out_channels,), arch.stride),
                   StaticHead.build("cls", arch.cls), StaticHead.build("reg", arch.reg))

    def template(self, z: torch.Tensor) -> torch.Tensor:
        """z (B, 3, 128, 128) -> raw template features (B, C, 128/s, 128/s), s = arch.stride."""
        return self.backbone(z)

    def search(self, zf: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, 3, S, S) -> cls logits (B, 1, S/s, S/s), reg ltrb pixels (B, 4, S/s, S/s)."""
        f = self.neck(zf, self.backbone(x))  # (B, 128, S/s, S/s)
        return self.cls_head(f), self.reg_head(f)

    def forward(self, z: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.search(self.template(z), x)


class SearchBranch(nn.Module):
    """The per-frame part of any tracker net (anything with ``search(zf, x)``) as a module
    with inputs (zf, x): what fvcore traces, the latency table times and ONNX exports."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, zf: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.net.search(zf, x)


class StaticClassifier(nn.Module):
    """A standalone ImageNet classifier for a found backbone (phase-4 retrain).

    ``choices`` are the MBConv choices of the searched backbone (7..14 blocks, e.g.
    ``arch.backbone``) optionally followed by up to 4 blocks of the 192-channel stage;
    then a 1x1 conv to 320, global pool, 1x1 conv to 1280, dropout, classifier. Its
    ``backbone`` has the same names as a StaticTracker's, so ``StaticTracker.backbone``
    can load ``state_dict`` entries prefixed ``backbone.`` after retraining.
    """

    def __init__(self, choices: Sequence[int], num_classes: int = 1000, dropout: float = 0.2) -> None:
        super().__init__()
        self.backbone = StaticBackbone.build(choices)
        last = block_specs(len(self.backbone.choices))[-1][1] if self.backbone.choices else STEM_CHANNELS
        self.conv_out = ConvBnAct(last, 320, 1)
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.conv_head = nn.Conv2d(320, 1280, 1, bias=True)
        self.act = nn.SiLU(inplace=True)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(1280, num_classes)
        init_backbone_(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.conv_head(self.global_pool(self.conv_out(self.backbone(x)))))
        return self.classifier(self.dropout(x.flatten(1)))


def fold_bn(model: nn.Module) -> nn.Module:
    """A copy of ``model`` in eval mode with every block's BN folded into its conv.

    Only (conv, BN) pairs inside the block classes are folded; the neck's BNs act on
    features that leave a residual sum or the template input, so they stay.
    """
    model = copy.deepcopy(model).eval()
    for module in model.modules():
        for conv_name, bn_name in BN_PAIRS.get(type(module), ()):
            conv, bn = getattr(module, conv_name), getattr(module, bn_name)
            setattr(module, conv_name, fuse_conv_bn_eval(conv, bn))
            setattr(module, bn_name, nn.Identity())
    return model


class TiledGateSE(nn.Module):
    """A SqueezeExcite whose (B, C, 1, 1) gate is tiled to (B, C, H, W) before the product.

    Exact: nearest upsampling of a 1x1 map repeats it. Why: ONNX Runtime runs the convs in
    its blocked NCHWc layout, which multiplies two NCHWc tensors of one shape and tiles a
    1x1 map with a nearest Resize, but has no product with a broadcast gate: that sent both
    operands out to NCHW and back around every SE (42 of the 49 layout reorders of
    LightTrack-Mobile's search graph; 7.5 -> 7.0 ms a frame at 1 thread).
    """

    def __init__(self, se: SqueezeExcite) -> None:
        super().__init__()
        self.se = se

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Python floats: the exporter writes constant scales, which the NCHWc Resize needs.
        scale = (float(x.shape[2]), float(x.shape[3]))
        return x * F.interpolate(self.se.gate(x), scale_factor=scale, mode="nearest")


def tile_se_gates(model: nn.Module) -> nn.Module:
    """A copy of ``model`` in eval mode with every SqueezeExcite wrapped in TiledGateSE."""
    model = copy.deepcopy(model).eval()
    for module in list(model.modules()):
        for name, child in module.named_children():
            if isinstance(child, SqueezeExcite):
                setattr(module, name, TiledGateSE(child))
    return model
