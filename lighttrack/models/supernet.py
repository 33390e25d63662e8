"""Weight-sharing supernets: tracking (phase 2/3) and ImageNet classification (phase 1).

A choice layer owns all its candidate blocks; ``forward`` takes the architecture
explicitly and runs only its path (single-path one-shot), so only that path's
parameters get gradients. Parameter names of the shared backbone are the same in
both supernets: ``backbone.stem``, ``backbone.ds``, ``backbone.blocks.<i>.choices.<c>``.

Each layer hands out the static module of one choice (``static``, Once-for-All's
``get_active_subnet``): a standalone copy, weights and BN statistics copied, not shared.
``extract`` assembles a static subnet from them.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import torch
from torch import nn

from lighttrack.arch import (
    HEAD_CHANNELS, HEAD_LAYERS, HEAD_OPS, IMAGENET_STAGE, MBCONV_OPS, NUM_BLOCKS, Arch, HeadArch, Space,
    get_space, output_of,
)
from lighttrack.models.blocks import (
    NECK_CHANNELS, STEM_CHANNELS, ConvBnAct, DepthwiseSeparable, HeadDSConv, InvertedResidual, Neck,
    block_specs, copy_of, head_output, init_backbone_,
)
from lighttrack.models.static import StaticBackbone, StaticClassifier, StaticHead, StaticTracker

__all__ = [
    "ChoiceBlock", "SupernetBackbone", "HeadSupernet", "TrackSupernet", "SupernetPath", "ClassSupernet",
    "extract", "extract_classifier",
]


def _check_path(path: Sequence[int], max_len: int) -> None:
    if len(path) > max_len:
        raise ValueError(f"backbone path has {len(path)} blocks, this supernet has {max_len}")
    for i, c in enumerate(path):
        if not 0 <= int(c) < len(MBCONV_OPS):
            raise ValueError(f"backbone path block {i}: choice {c} out of range 0..{len(MBCONV_OPS) - 1}")


# -- backbone ----------------------------------------------------------------------------
def _copy_slice_(dst: nn.Module, src: nn.Module) -> None:
    """Copy ``src``'s parameters and buffers into the smaller ``dst``: leading slice of each
    channel dimension, centre crop of each spatial one."""
    for name, d in list(dst.named_parameters(recurse=False)) + list(dst.named_buffers(recurse=False)):
        t = getattr(src, name)
        if d.dim() == 0:
            d.copy_(t)
            continue
        idx = [slice(0, n) for n in d.shape[:2]]
        idx += [slice((m - n) // 2, (m - n) // 2 + n) for n, m in zip(d.shape[2:], t.shape[2:])]
        d.copy_(t[tuple(idx)])


class ChoiceBlock(nn.Module):
    """One searchable MBConv layer holding all six candidates (MBCONV_OPS order)."""

    def __init__(self, in_chs: int, out_chs: int, stride: int) -> None:
        super().__init__()
        self.choices = nn.ModuleList(
            InvertedResidual(in_chs, out_chs, k, e, stride) for k, e in MBCONV_OPS)

    def forward(self, x: torch.Tensor, choice: int) -> torch.Tensor:
        return self.choices[choice](x)

    def static(self, choice: int) -> InvertedResidual:
        """Candidate ``choice`` alone (a copy)."""
        return copy_of(self.choices[choice])

    @torch.no_grad()
    def inherit_from_largest_(self) -> None:
        """Overwrite every candidate with a slice of the largest (k7e6): its first ``mid``
        expand filters, the centre of each depthwise kernel, the matching SE and projection
        weights (BN parameters are left alone). The candidates stay separate parameters;
        only their starting points agree. Used at init, and after a warm-up on the largest
        path (``PretrainConfig.largest_warmup_epochs``).

        Why: a block that is not residual (a stage's first) re-projects all channels; with
        unrelated candidates there, a path's features mean something else at every step.
        """
        ref = self.choices[-1]
        for blk in self.choices[:-1]:
            for name in ("conv_pw", "conv_dw", "se.conv_reduce", "se.conv_expand", "conv_pwl"):
                _copy_slice_(blk.get_submodule(name), ref.get_submodule(name))


class SupernetBackbone(nn.Module):
    """Stem (conv3x3 s2) -> stage-0 DS block -> ``num_blocks`` choice layers."""

    def __init__(self, num_blocks: int = NUM_BLOCKS) -> None:
        super().__init__()
        self.stem = ConvBnAct(3, STEM_CHANNELS, 3, stride=2)
        self.ds = DepthwiseSeparable(STEM_CHANNELS, STEM_CHANNELS, 3)
        self.blocks = nn.ModuleList(ChoiceBlock(*s) for s in block_specs(num_blocks))
        init_backbone_(self)
        self.inherit_from_largest_()

    def forward(self, x: torch.Tensor, path: Sequence[int]) -> torch.Tensor:
        """Run the blocks of ``path`` (a prefix of the choice layers): the cut at the output layer."""
        _check_path(path, len(self.blocks))
        x = self.ds(self.stem(x))
        for block, choice in zip(self.blocks, path):
            x = block(x, int(choice))
        return x

    def path_modules(self, path: Sequence[int]) -> list[nn.Module]:
        return [self.stem, self.ds] + [b.choices[int(c)] for b, c in zip(self.blocks, path)]

    def static(self, path: Sequence[int]) -> StaticBackbone:
        """The backbone of ``path`` alone: copies of the stem, DS block and chosen blocks."""
        _check_path(path, len(self.blocks))
        blocks = [block.static(int(c)) for block, c in zip(self.blocks, path)]
        return StaticBackbone(path, copy_of(self.stem), copy_of(self.ds), blocks)

    def inherit_from_largest_(self) -> None:
        for block in self.blocks:
            block.inherit_from_largest_()


# -- heads ---------------------------------------------------------------------------------
class HeadTower(nn.Module):
    """All candidates of one head branch at one channel count C: 8 choice layers + output conv."""

    def __init__(self, in_chs: int, chs: int, out_chs: int) -> None:
        super().__init__()
        kernels = [k for k in HEAD_OPS if k is not None]
        self.layers = nn.ModuleList(
            nn.ModuleDict({f"k{k}": HeadDSConv(in_chs if i == 0 else chs, chs, k) for k in kernels})
            for i in range(HEAD_LAYERS))
        self.out = nn.Conv2d(chs, out_chs, 3, padding=1, bias=True)

    def path_modules(self, head: HeadArch) -> list[nn.Module]:
        mods = [self.layers[i][f"k{k}"] for i, k in enumerate(head.kernels) if k is not None]
        return mods + [self.out]

    @torch.no_grad()
    def inherit_from_(self, ref: "HeadTower") -> None:
        """Every layer and the output conv <- the matching slice of ``ref``'s widest-kernel
        candidates (first channels, centre of the depthwise kernel; BN included)."""
        widest = f"k{max(k for k in HEAD_OPS if k is not None)}"
        for mine, theirs in zip(self.layers, ref.layers):
            for layer in mine.values():
                if layer is not theirs[widest]:
                    for dst, src in ((layer.conv_dw, theirs[widest].conv_dw), (layer.conv_pw, theirs[widest].conv_pw),
                                     (layer.bn, theirs[widest].bn)):
                        _copy_slice_(dst, src)
        if self is not ref:
            _copy_slice_(self.out, ref.out)



class HeadSupernet(nn.Module):
    """One branch (``kind`` 'cls' -> 1 channel, 'reg' -> 4) with a tower per channel choice."""

    def __init__(self, kind: str, in_chs: int = NECK_CHANNELS) -> None:
        super().__init__()
        if kind not in ("cls", "reg"):
            raise ValueError(f"head kind must be 'cls' or 'reg', got {kind!r}")
        self.kind = kind
        out_chs = 1 if kind == "cls" else 4
        self.towers = nn.ModuleDict({f"c{c}": HeadTower(in_chs, c, out_chs) for c in HEAD_CHANNELS})

    def forward(self, x: torch.Tensor, head: HeadArch) -> torch.Tensor:
        mods = self.path_modules(head)
        for layer in mods[:-1]:
            x = layer(x)
        return head_output(self.kind, mods[-1](x))

    def path_modules(self, head: HeadArch) -> list[nn.Module]:
        return self.towers[f"c{head.channels}"].path_modules(head)

    def static(self, head: HeadArch) -> StaticHead:
        """The branch of ``head`` alone: copies of its tower's chosen layers and output conv."""
        *layers, out = self.path_modules(head)
        return StaticHead(self.kind, [copy_of(m) for m in layers], copy_of(out))

    def inherit_from_largest_(self) -> None:
        """Every candidate <- a slice of the widest tower's k5 layers (see HeadTower)."""
        ref = self.towers[f"c{max(HEAD_CHANNELS)}"]
        ref.inherit_from_(ref)  # its own k3 layers first
        for tower in self.towers.values():
            if tower is not ref:
                tower.inherit_from_(ref)


# -- tracking supernet ------------------------------------------------------------------------
class TrackSupernet(nn.Module):
    """Backbone + neck(s) + cls/reg heads holding every candidate of ``space``.

    ``space`` 'paper' (output layer in stages 3-4, stride 16, one ``neck``) or 'wide'
    (also stage 2 at stride 8, with its own ``neck_s8``; the heads are shared). The
    template branch runs once per video; the search branch per frame.
    """

    def __init__(self, space: str | Space = "paper") -> None:
        super().__init__()
        self.space = get_space(space)
        self.backbone = SupernetBackbone(NUM_BLOCKS)
        outs: dict[int, set[int]] = {}  # stride -> output channel counts
        for b in self.space.out_blocks:
            channels, stride = output_of(b)
            outs.setdefault(stride, set()).add(channels)
        self.neck = Neck(outs[16])
        if 8 in outs:
            self.neck_s8 = Neck(outs[8], stride=8)
        self.cls_head = HeadSupernet("cls")
        self.reg_head = HeadSupernet("reg")  # its own tower weights (the released code reused cls's)

    @classmethod
    def for_state_dict(cls, state_dict: Mapping[str, torch.Tensor]) -> "TrackSupernet":
        """An empty supernet of the space a checkpoint was trained on (a stride-8 neck = wide)."""
        wide = any(k.removeprefix("module.").startswith("neck_s8.") for k in state_dict)
        return cls("wide" if wide else "paper")

    def neck_of(self, arch: Arch) -> Neck:
        self.space.check(arch)
        return self.neck_s8 if arch.stride == 8 else self.neck

    def template(self, z: torch.Tensor, arch: Arch) -> torch.Tensor:
        """z (B, 3, 128, 128) normalised -> raw template features (B, C, 128/stride, 128/stride)."""
        return self.backbone(z, self.space.check(arch).backbone)

    def search(self, zf: torch.Tensor, x: torch.Tensor, arch: Arch) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, 3, S, S), S a multiple of 16 -> cls logits (B, 1, S/s, S/s), reg ltrb (B, 4, ...),
        s = arch.stride (16, or 8 for stage-2 outputs)."""
        f = self.neck_of(arch)(zf, self.backbone(x, arch.backbone))  # (B, 128, S/s, S/s)
        return self.cls_head(f, arch.cls), self.reg_head(f, arch.reg)

    def forward(self, z: torch.Tensor, x: torch.Tensor, arch: Arch) -> tuple[torch.Tensor, torch.Tensor]:
        return self.search(self.template(z, arch), x, arch)

    def inherit_from_largest_(self, backbone: bool = True) -> None:
        """After a warm-up on the largest architecture: every smaller candidate of the heads
        (and of the backbone, unless it comes trained from phase 1) starts from it."""
        if backbone:
            self.backbone.inherit_from_largest_()
        self.cls_head.inherit_from_largest_()
        self.reg_head.inherit_from_largest_()

    def path(self, arch: Arch) -> "SupernetPath":
        """A module view of one path, sharing this supernet's weights."""
        return SupernetPath(self, arch)

    def path_modules(self, arch: Arch) -> list[nn.Module]:
        """The modules that run for ``arch`` (template and search branches together)."""
        return (self.backbone.path_modules(arch.backbone) + self.neck_of(arch).path_modules(arch.out_channels)
                + self.cls_head.path_modules(arch.cls) + self.reg_head.path_modules(arch.reg))

    def path_parameters(self, arch: Arch) -> list[nn.Parameter]:
        return [p for m in self.path_modules(arch) for p in m.parameters()]

    def load_backbone(self, state_dict: Mapping[str, torch.Tensor]) -> None:
        """Copy phase-1 backbone weights (a ClassSupernet state dict; ``module.`` prefixes ok).

        Every backbone tensor of this supernet must be present; the ImageNet-only blocks
        and the classifier are ignored.
        """
        src = {k.removeprefix("module."): v for k, v in state_dict.items()}
        own = self.backbone.state_dict()
        missing = [k for k in own if f"backbone.{k}" not in src]
        if missing:
            raise ValueError(f"load_backbone: {len(missing)} backbone tensors missing, e.g. {missing[:3]}")
        new = {}
        for k, v in own.items():
            t = src[f"backbone.{k}"]
            if t.shape != v.shape:
                raise ValueError(f"load_backbone: backbone.{k} has shape {tuple(t.shape)}, expected {tuple(v.shape)}")
            new[k] = t
        self.backbone.load_state_dict(new)


def extract(supernet: TrackSupernet, arch: Arch) -> StaticTracker:
    """A StaticTracker for ``arch``, made of each layer's static module (copies of the path's
    weights and BN statistics), in the supernet's train/eval mode."""
    neck = supernet.neck_of(arch).static(arch.out_channels)
    net = StaticTracker(arch, supernet.backbone.static(arch.backbone), neck,
                        supernet.cls_head.static(arch.cls), supernet.reg_head.static(arch.reg))
    return net.train(supernet.training)


class SupernetPath(nn.Module):
    """One architecture of a TrackSupernet as a module (weights shared, not copied)."""

    def __init__(self, net: TrackSupernet, arch: Arch) -> None:
        super().__init__()
        self.net = net
        self.arch = arch

    def template(self, z: torch.Tensor) -> torch.Tensor:
        return self.net.template(z, self.arch)

    def search(self, zf: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.net.search(zf, x, self.arch)

    def forward(self, z: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.net(z, x, self.arch)


# -- phase-1 classification supernet --------------------------------------------------------
CLASS_PATH_LEN = NUM_BLOCKS + IMAGENET_STAGE[1]  # 18


class ClassSupernet(nn.Module):
    """ImageNet supernet: the tracking backbone + a 192-channel stage (4 choice layers),
    1x1 conv to 320 (BN, Swish), global pool, 1x1 conv head to 1280 (bias, Swish),
    dropout, linear classifier. Pooling precedes the 1280 head, as in the released
    (Cream / MobileNetV3) supernet.
    """

    def __init__(self, num_classes: int = 1000, dropout: float = 0.0) -> None:
        super().__init__()
        self.backbone = SupernetBackbone(CLASS_PATH_LEN)
        self.conv_out = ConvBnAct(IMAGENET_STAGE[0], 320, 1)
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.conv_head = nn.Conv2d(320, 1280, 1, bias=True)
        self.act = nn.SiLU(inplace=True)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(1280, num_classes)
        for m in (self.conv_out, self.conv_head, self.classifier):  # the backbone inits itself
            init_backbone_(m)

    def forward(self, x: torch.Tensor, path: Sequence[int]) -> torch.Tensor:
        """x (B, 3, H, W) -> logits (B, num_classes); path = 18 MBConv choices."""
        if len(path) != CLASS_PATH_LEN:
            raise ValueError(f"phase-1 path needs {CLASS_PATH_LEN} choices, got {len(path)}")
        x = self.conv_out(self.backbone(x, path))
        x = self.act(self.conv_head(self.global_pool(x)))  # (B, 1280, 1, 1)
        return self.classifier(self.dropout(x.flatten(1)))

    def path_parameters(self, path: Sequence[int]) -> list[nn.Parameter]:
        mods = self.backbone.path_modules(path) + [self.conv_out, self.conv_head, self.classifier]
        return [p for m in mods for p in m.parameters()]


def extract_classifier(supernet: ClassSupernet, path: Sequence[int]) -> StaticClassifier:
    """A StaticClassifier for a full 18-block phase-1 path, weights copied (for checks)."""
    if len(path) != len(supernet.backbone.blocks):
        raise ValueError(f"path needs {len(supernet.backbone.blocks)} choices, got {len(path)}")
    net = StaticClassifier(path, supernet.classifier.out_features, supernet.dropout.p)
    net.backbone = supernet.backbone.static(path)
    for name in ("conv_out", "conv_head", "classifier"):
        setattr(net, name, copy_of(getattr(supernet, name)))
    return net.train(supernet.training)
