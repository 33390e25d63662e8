"""Architectures of the LightTrack search space as small immutable values.

Canonical string grammar (one line, no spaces, safe in a shell without quotes)::

    bb:<stage1>/<stage2>/<stage3>/<stage4>+cls:<C>:<op>,...(8)+reg:<C>:<op>,...(8)

* ``bb`` lists the MBConv choice of every backbone block that is *run*, grouped by
  stage (``/``), blocks of a stage separated by ``,``. A block is ``k{3,5,7}e{4,6}``.
  The backbone is cut at its output layer, so the number of blocks listed *is* the
  output-layer choice: 7..14 blocks in the paper's space (the output is one of the last
  eight blocks, stride 16), 3..14 in the wide space (also the four 40-channel blocks of
  stage 2, stride 8, as the released supernet samples them). Stages hold at most 2, 4,
  4, 4 blocks; trailing stages may be empty or absent.
* ``cls`` / ``reg``: head channels C in {128, 192, 256}, then 8 ops; the first op is
  ``k3`` or ``k5``, the other seven ``k3``, ``k5`` or ``skip``.

Example (LightTrack-Mobile)::

    bb:k7e4,k7e6/k3e4,k5e4,k7e6,k3e6/k7e4,k3e4,k7e4,k7e4/k7e6,k5e4,k3e6+cls:256:k5,k5,k3,k3,k3,k3,skip,skip+reg:192:k3,k3,k3,k3,k3,k5,k5,k5

The released code's notation ``back_<20 digits>+cls_<9 digits>+reg_<9 digits>_ops_XY``
is read by :func:`parse` too (see :func:`_parse_released`).
"""
from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Sequence

import numpy as np

__all__ = [
    "ArchError", "HeadArch", "Arch", "MBCONV_OPS", "HEAD_OPS", "HEAD_CHANNELS",
    "STAGE_BLOCKS", "STAGE_CHANNELS", "STAGE_STRIDES", "NUM_BLOCKS", "OUT_BLOCKS",
    "WIDE_OUT_BLOCKS", "IMAGENET_STAGE", "DECISIONS", "Space", "SPACES", "PAPER", "get_space", "output_of",
    "parse", "sample", "sample_backbone_path", "PRESETS", "resolve", "space_size",
]


class ArchError(ValueError):
    """A malformed architecture string or an out-of-range choice."""


# MBConv choices in the released code's index order: (kernel, expansion).
MBCONV_OPS: tuple[tuple[int, int], ...] = ((3, 4), (3, 6), (5, 4), (5, 6), (7, 4), (7, 6))
# Head layer ops in the released code's index order; None = skip.
HEAD_OPS: tuple[int | None, ...] = (3, 5, None)
HEAD_CHANNELS: tuple[int, ...] = (128, 192, 256)
HEAD_LAYERS = 8

# Searchable backbone stages used for tracking (stages 1..4 of paper Table 1).
STAGE_BLOCKS: tuple[int, ...] = (2, 4, 4, 4)
STAGE_CHANNELS: tuple[int, ...] = (24, 40, 80, 96)
STAGE_STRIDES: tuple[int, ...] = (2, 2, 2, 1)
NUM_BLOCKS = sum(STAGE_BLOCKS)  # 14
# Output layer: one of the last eight blocks (stages 3 and 4, stride 16), as block indices.
OUT_BLOCKS: tuple[int, ...] = tuple(range(NUM_BLOCKS - 8, NUM_BLOCKS))
# The wider option: stages 2-4 (12 positions; stage 2's 40-channel outputs are at stride 8).
WIDE_OUT_BLOCKS: tuple[int, ...] = tuple(range(STAGE_BLOCKS[0], NUM_BLOCKS))
STEM_STRIDE = 2
TEMPLATE_INPUT = 128  # template crop side, pixels (template features are 128 / stride wide)
# Phase-1 only (ImageNet): a 5th MBConv stage (channels, max blocks, stride).
IMAGENET_STAGE: tuple[int, int, int] = (192, 4, 2)


def _op_name(op: tuple[int, int]) -> str:
    return f"k{op[0]}e{op[1]}"


_MB_NAMES = {_op_name(op): i for i, op in enumerate(MBCONV_OPS)}
_SKIP = HEAD_OPS.index(None)
_HEAD_NAMES = {("skip" if k is None else f"k{k}"): i for i, k in enumerate(HEAD_OPS)}


def _stage_of(block: int) -> int:
    """Stage index (0-based over STAGE_BLOCKS) of a backbone block index."""
    for s, end in enumerate(np.cumsum(STAGE_BLOCKS)):
        if block < end:
            return s
    raise ArchError(f"backbone block {block} is outside the {NUM_BLOCKS} searchable blocks")


# (channels, total stride) after each block; a table because the search reads it per candidate.
_OUTPUT = tuple((STAGE_CHANNELS[_stage_of(b)], STEM_STRIDE * int(np.prod(STAGE_STRIDES[:_stage_of(b) + 1])))
                for b in range(NUM_BLOCKS))


def output_of(block: int) -> tuple[int, int]:
    """(channels, total stride) of the features after backbone block ``block``."""
    if not 0 <= block < NUM_BLOCKS:
        _stage_of(block)  # raises with the message
    return _OUTPUT[block]


@dataclass(frozen=True)
class HeadArch:
    """One head branch: channel count and 8 op indices into HEAD_OPS."""

    channels: int
    ops: tuple[int, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "ops", tuple(int(o) for o in self.ops))
        if self.channels not in HEAD_CHANNELS:
            raise ArchError(f"head channels {self.channels!r} not in {HEAD_CHANNELS}")
        if len(self.ops) != HEAD_LAYERS:
            raise ArchError(f"head needs {HEAD_LAYERS} ops, got {len(self.ops)}")
        for i, o in enumerate(self.ops):
            if not 0 <= o < len(HEAD_OPS):
                raise ArchError(f"head op {i} = {o} out of range 0..{len(HEAD_OPS) - 1}")
        if HEAD_OPS[self.ops[0]] is None:
            raise ArchError("head op 0 cannot be skip (the first layer sets the channels)")

    @property
    def kernels(self) -> tuple[int | None, ...]:
        return tuple(HEAD_OPS[o] for o in self.ops)

    def __str__(self) -> str:
        names = ",".join("skip" if k is None else f"k{k}" for k in self.kernels)
        return f"{self.channels}:{names}"


@dataclass(frozen=True)
class Arch:
    """A tracking architecture: the backbone blocks that run, and two heads.

    ``backbone[i]`` indexes MBCONV_OPS for block i; ``len(backbone) - 1`` is the
    output block (one of OUT_BLOCKS).
    """

    backbone: tuple[int, ...]
    cls: HeadArch
    reg: HeadArch

    def __post_init__(self) -> None:
        object.__setattr__(self, "backbone", tuple(int(b) for b in self.backbone))
        n = len(self.backbone)
        if n - 1 not in WIDE_OUT_BLOCKS:
            raise ArchError(
                f"backbone has {n} blocks; the output layer must be one of blocks "
                f"{OUT_BLOCKS[0] + 1}..{OUT_BLOCKS[-1] + 1} (1-based; the wide space also allows "
                f"{WIDE_OUT_BLOCKS[0] + 1}..{OUT_BLOCKS[0]})")
        for i, b in enumerate(self.backbone):
            if not 0 <= b < len(MBCONV_OPS):
                raise ArchError(f"backbone block {i} choice {b} out of range 0..{len(MBCONV_OPS) - 1}")

    # -- derived facts -------------------------------------------------------------
    @property
    def out_block(self) -> int:
        return len(self.backbone) - 1

    @property
    def out_channels(self) -> int:
        return output_of(self.out_block)[0]

    @property
    def stride(self) -> int:
        """Total stride of the output features: 16 (stages 3-4) or 8 (stage 2)."""
        return output_of(self.out_block)[1]

    @property
    def template_feature_size(self) -> int:
        """Side of the template features: 8 at stride 16, 16 at stride 8."""
        return TEMPLATE_INPUT // self.stride

    @property
    def blocks(self) -> tuple[tuple[int, int], ...]:
        """(kernel, expansion) of every backbone block that runs."""
        return tuple(MBCONV_OPS[b] for b in self.backbone)

    def cost_keys(self) -> tuple[tuple, ...]:
        """The per-decision entries of a cost table that this architecture runs, in
        execution order (``lighttrack.costs``): ``("fixed",)`` stem + DS block,
        ``("block", i, choice)``, ``("neck", C)`` for C-channel backbone features, then per
        head branch ``("head", stride, branch, C, layer, op)`` for every layer that is not
        a skip (a skip costs nothing) and ``("out", stride, branch, C)``. About 2 us."""
        channels, stride = output_of(self.out_block)
        keys: list[tuple] = [("fixed",)]
        keys += [("block", i, c) for i, c in enumerate(self.backbone)]
        keys.append(("neck", channels))
        for branch, h in (("cls", self.cls), ("reg", self.reg)):
            keys += [("head", stride, branch, h.channels, i, op) for i, op in enumerate(h.ops) if op != _SKIP]
            keys.append(("out", stride, branch, h.channels))
        return tuple(keys)

    # -- string forms --------------------------------------------------------------
    def __str__(self) -> str:
        stages, start = [], 0
        for n in STAGE_BLOCKS:
            chunk = self.backbone[start:start + n]
            start += n
            if chunk:
                stages.append(",".join(_op_name(MBCONV_OPS[b]) for b in chunk))
        return f"bb:{'/'.join(stages)}+cls:{self.cls}+reg:{self.reg}"

    def to_released(self) -> str:
        """The released code's notation (unused backbone digits written as 0)."""
        digits = list(self.backbone) + [0] * (NUM_BLOCKS - len(self.backbone))
        back = "0" + "".join(map(str, digits)) + "0000" + "0"
        stage = _stage_of(self.out_block)
        first = sum(STAGE_BLOCKS[:stage])
        heads = [f"{HEAD_CHANNELS.index(h.channels)}{''.join(map(str, h.ops))}" for h in (self.cls, self.reg)]
        return f"back_{back}+cls_{heads[0]}+reg_{heads[1]}_ops_{stage}{self.out_block - first}"

    # -- fixed-length encoding for optimisers ----------------------------------------
    def to_choices(self, space: "Space | None" = None) -> tuple[int, ...]:
        """One integer per decision of ``space.decisions`` (default: the paper's space)."""
        return (space or PAPER).to_choices(self)

    @classmethod
    def from_choices(cls, choices: Sequence[int], space: "Space | None" = None) -> "Arch":
        return (space or PAPER).from_choices(choices)


@dataclass(frozen=True)
class Space:
    """A search space: which output layers it offers (everything else is shared).

    ``paper``: the last eight blocks (stride 16), paper Table 1. ``wide``: stages 2-4
    (12 positions, strides 8 and 16), as the released supernet samples them.
    """

    name: str
    out_blocks: tuple[int, ...]

    @functools.cached_property
    def decisions(self) -> tuple[tuple[str, int], ...]:
        """(name, number of options) of every decision, in to_choices() order."""
        d = [("out", len(self.out_blocks))]
        d += [(f"bb{i}", len(MBCONV_OPS)) for i in range(NUM_BLOCKS)]
        for head in ("cls", "reg"):
            d.append((f"{head}_ch", len(HEAD_CHANNELS)))
            d.append((f"{head}0", 2))  # first layer: k3 or k5, never skip
            d += [(f"{head}{i}", len(HEAD_OPS)) for i in range(1, HEAD_LAYERS)]
        return tuple(d)

    @property
    def strides(self) -> tuple[int, ...]:
        return tuple(sorted({output_of(b)[1] for b in self.out_blocks}))

    def contains(self, arch: Arch) -> bool:
        return arch.out_block in self.out_blocks

    def check(self, arch: Arch) -> Arch:
        """``arch``, or a clear error when its output layer is not offered here."""
        if not self.contains(arch):
            raise ArchError(f"output block {arch.out_block + 1} (stride {arch.stride}) is not in the "
                            f"{self.name!r} space (blocks {self.out_blocks[0] + 1}..{self.out_blocks[-1] + 1}); "
                            "use the 'wide' space for stage-2 outputs")
        return arch

    def to_choices(self, arch: Arch) -> tuple[int, ...]:
        """Unused backbone blocks are encoded as 0, so every Arch has one encoding."""
        self.check(arch)
        bb = list(arch.backbone) + [0] * (NUM_BLOCKS - len(arch.backbone))
        heads = []
        for h in (arch.cls, arch.reg):
            heads += [HEAD_CHANNELS.index(h.channels), *h.ops]
        return tuple([self.out_blocks.index(arch.out_block)] + bb + heads)

    def from_choices(self, choices: Sequence[int]) -> Arch:
        decisions = self.decisions
        if len(choices) != len(decisions):
            raise ArchError(f"expected {len(decisions)} choices, got {len(choices)}")
        for (name, n), c in zip(decisions, choices):
            if not 0 <= int(c) < n:
                raise ArchError(f"decision {name} = {c} out of range 0..{n - 1}")
        c = [int(x) for x in choices]
        depth = self.out_blocks[c[0]] + 1
        bb = c[1:1 + NUM_BLOCKS][:depth]
        h = 1 + NUM_BLOCKS
        return Arch(bb, HeadArch(HEAD_CHANNELS[c[h]], c[h + 1:h + 9]),
                    HeadArch(HEAD_CHANNELS[c[h + 9]], c[h + 10:h + 18]))

    def sample(self, rng: np.random.Generator) -> Arch:
        """Uniformly random architecture: every decision drawn independently."""
        return self.from_choices([int(rng.integers(n)) for _, n in self.decisions])

    def size(self) -> dict[str, int]:
        """Sizes of the space as encoded (backbones counted at full depth)."""
        head = len(HEAD_CHANNELS) * 2 * len(HEAD_OPS) ** (HEAD_LAYERS - 1)
        return {"backbone": len(MBCONV_OPS) ** NUM_BLOCKS, "head": head ** 2,
                "output_layer": len(self.out_blocks)}


SPACES: dict[str, Space] = {"paper": Space("paper", OUT_BLOCKS), "wide": Space("wide", WIDE_OUT_BLOCKS)}
PAPER = SPACES["paper"]
# (name, number of options) of every decision of the paper's space, in to_choices() order.
DECISIONS: tuple[tuple[str, int], ...] = PAPER.decisions


def get_space(name: "str | Space") -> Space:
    if isinstance(name, Space):
        return name
    if name not in SPACES:
        raise ArchError(f"search space {name!r} is not one of {sorted(SPACES)}")
    return SPACES[name]


def space_size(space: "str | Space" = "paper") -> dict[str, int]:
    return get_space(space).size()


# -- parsing --------------------------------------------------------------------------
def _parse_head(text: str, field: str) -> HeadArch:
    parts = text.split(":")
    if len(parts) != 2:
        raise ArchError(f"{field}: expected '<channels>:<op>,<op>,...', got {text!r}")
    try:
        channels = int(parts[0])
    except ValueError:
        raise ArchError(f"{field}: channels {parts[0]!r} is not an integer") from None
    names = parts[1].split(",")
    ops = []
    for i, name in enumerate(names):
        if name not in _HEAD_NAMES:
            raise ArchError(f"{field} op {i}: {name!r} is not one of {sorted(_HEAD_NAMES)}")
        ops.append(_HEAD_NAMES[name])
    try:
        return HeadArch(channels, tuple(ops))
    except ArchError as e:
        raise ArchError(f"{field}: {e}") from None


def _parse_canonical(text: str) -> Arch:
    parts = text.split("+")
    keys = [p.split(":", 1)[0] for p in parts]
    if keys != ["bb", "cls", "reg"]:
        raise ArchError(f"expected fields bb:, cls:, reg: joined by '+', got {keys} in {text!r}")
    body = parts[0][3:]
    stages = body.split("/") if body else []
    if len(stages) > len(STAGE_BLOCKS):
        raise ArchError(f"bb: {len(stages)} stages given, at most {len(STAGE_BLOCKS)}")
    backbone: list[int] = []
    for s, stage in enumerate(stages):
        names = stage.split(",") if stage else []
        if len(names) > STAGE_BLOCKS[s]:
            raise ArchError(f"bb stage {s + 1}: {len(names)} blocks, at most {STAGE_BLOCKS[s]}")
        if s > 0 and len(backbone) < sum(STAGE_BLOCKS[:s]) and names:
            raise ArchError(f"bb stage {s + 1}: blocks given after an incomplete stage {s}")
        for name in names:
            if name not in _MB_NAMES:
                raise ArchError(f"bb stage {s + 1}: {name!r} is not one of {sorted(_MB_NAMES)}")
            backbone.append(_MB_NAMES[name])
    try:
        return Arch(tuple(backbone), _parse_head(parts[1][4:], "cls"), _parse_head(parts[2][4:], "reg"))
    except ArchError as e:
        if str(e).startswith(("cls", "reg")):
            raise
        raise ArchError(f"bb: {e}") from None


_RELEASED = re.compile(r"back_([^+]*)\+cls_([^+]*)\+reg_(.*?)_ops_(.*)")
_RELEASED_FIELDS = (("back_", 20), ("cls_", 9), ("reg_", 9), ("ops_", 2))


def _parse_released(text: str) -> Arch:
    """Released notation: back_ + '0' + 18 MBConv digits (stages of 2,4,4,4,4 blocks,
    the last one ImageNet-only) + '0'; cls_/reg_ = channel index + 8 op digits;
    ops_XY = output stage X (1: 40ch, 2: 80ch, 3: 96ch) and 0-based block Y."""
    m = _RELEASED.fullmatch(text)
    if not m:
        raise ArchError(f"released notation is back_<20 digits>+cls_<9>+reg_<9>_ops_<2>; got {text!r}")
    for (field, n), value in zip(_RELEASED_FIELDS, m.groups()):
        if len(value) != n or not all(c in "0123456789" for c in value):
            raise ArchError(f"{field}: expected {n} digits, got {value!r}")
    back, cls_d, reg_d, ops = m.groups()
    x, y = ops
    stage, block = int(x), int(y)
    if not 1 <= stage <= 3 or block >= STAGE_BLOCKS[stage]:
        raise ArchError(f"ops_{x}{y}: output stage {x} block {y} does not exist")
    depth = sum(STAGE_BLOCKS[:stage]) + block + 1
    digits = [int(c) for c in back[1:1 + NUM_BLOCKS]]
    for i, d in enumerate(digits[:depth]):
        if d >= len(MBCONV_OPS):
            raise ArchError(f"back_: digit {i + 2} (backbone block {i}) is {d}, MBConv choices are 0..{len(MBCONV_OPS) - 1}")

    def head(d: str, field: str) -> HeadArch:
        if int(d[0]) >= len(HEAD_CHANNELS):
            raise ArchError(f"{field}_: channel index {d[0]} out of range 0..{len(HEAD_CHANNELS) - 1}")
        try:
            return HeadArch(HEAD_CHANNELS[int(d[0])], tuple(int(c) for c in d[1:]))
        except ArchError as e:
            raise ArchError(f"{field}_: {e}") from None

    try:
        return Arch(tuple(digits[:depth]), head(cls_d, "cls"), head(reg_d, "reg"))
    except ArchError as e:
        if str(e).startswith(("cls", "reg")):
            raise
        raise ArchError(f"back_/ops_: {e}") from None


def parse(text: str) -> Arch:
    """Parse a canonical or released-notation architecture string."""
    text = text.strip()
    if text.startswith("back_"):
        return _parse_released(text)
    if text.startswith("bb:"):
        return _parse_canonical(text)
    raise ArchError(f"an architecture string starts with 'bb:' (canonical) or 'back_' (released); got {text!r}")


PRESETS: dict[str, str] = {
    "lighttrack-mobile": "back_04502514044521042540+cls_211000022+reg_100000111_ops_32",
    # Extremes of the space (cheapest and most expensive path).
    "smallest": "bb:k3e4,k3e4/k3e4,k3e4,k3e4,k3e4/k3e4+cls:128:k3,skip,skip,skip,skip,skip,skip,skip"
                "+reg:128:k3,skip,skip,skip,skip,skip,skip,skip",
    "largest": "bb:k7e6,k7e6/k7e6,k7e6,k7e6,k7e6/k7e6,k7e6,k7e6,k7e6/k7e6,k7e6,k7e6,k7e6"
               "+cls:256:k5,k5,k5,k5,k5,k5,k5,k5+reg:256:k5,k5,k5,k5,k5,k5,k5,k5",
}


def resolve(name_or_string: str) -> Arch:
    """A preset name or an architecture string."""
    key = name_or_string.strip().lower()
    if key in PRESETS:
        return parse(PRESETS[key])
    if ":" not in key and not key.startswith("back_"):  # a name, not a string: most likely a preset typo
        raise ArchError(f"{name_or_string!r} is neither a preset ({', '.join(PRESETS)}) nor an architecture "
                        "string ('bb:...' canonical or 'back_...' released)")
    return parse(name_or_string)


# -- sampling -------------------------------------------------------------------------
def sample(rng: np.random.Generator, space: "str | Space" = "paper") -> Arch:
    """Uniformly random architecture of ``space``: every decision drawn independently."""
    return get_space(space).sample(rng)


def sample_backbone_path(rng: np.random.Generator) -> tuple[int, ...]:
    """Phase-1 path: one MBConv choice for each of the 14 + 4 (ImageNet stage) blocks."""
    return tuple(int(rng.integers(len(MBCONV_OPS))) for _ in range(NUM_BLOCKS + IMAGENET_STAGE[1]))
