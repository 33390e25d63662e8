"""Parameters and MACs of an architecture, as the paper counts them.

``count(arch)`` runs fvcore on the static model's *search branch* at 256x256 with the
template features (1, C, 8, 8) (16x16 for a stride-8 output) given as an input (the template branch runs once per
video, so it is not counted; the template-feature BN runs per frame and is). ``macs``
is fvcore's default ``FlopCountAnalysis`` total in eval mode (conv + batch_norm +
adaptive_avg_pool2d + matmul; one multiply-accumulate = one "FLOP"), which gives the
paper's 530M for LightTrack-Mobile; ``conv_macs`` is the conv + matmul part. Params
are fvcore's ``parameter_count`` of the whole static model (backbone + neck + heads).

``ComplexityTable`` is the search loop's estimator: every cost is a sum of per-layer
costs that depend on one decision each, so cost tables (:mod:`lighttrack.costs`) built
from fvcore's per-module counts give the same integers in microseconds.
"""
from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path

import torch

from lighttrack.arch import HEAD_CHANNELS, HEAD_LAYERS, MBCONV_OPS, NUM_BLOCKS, STAGE_BLOCKS, Arch, HeadArch
from lighttrack.costs import CostTable, Key, flatten, nest
from lighttrack.models.static import SearchBranch, StaticTracker

__all__ = ["LayerCost", "Complexity", "count", "ComplexityTable", "covering_archs", "parse_quantity", "format_quantity"]

SEARCH_SIZE = 256
_CONV_OPS = ("conv", "matmul")
TABLE_PATH = Path(__file__).with_name("complexity_table.json")


@dataclass(frozen=True)
class LayerCost:
    name: str
    params: int
    macs: int
    conv_macs: int


@dataclass(frozen=True)
class Complexity:
    params: int
    macs: int
    conv_macs: int
    table: tuple[LayerCost, ...] = field(default=(), repr=False)

    def format_table(self) -> str:
        rows = [f"{'layer':<28}{'params':>12}{'MACs':>16}{'conv MACs':>16}"]
        rows += [f"{r.name:<28}{r.params:>12,}{r.macs:>16,}{r.conv_macs:>16,}" for r in self.table]
        rows.append(f"{'total':<28}{self.params:>12,}{self.macs:>16,}{self.conv_macs:>16,}")
        return "\n".join(rows)


def _layer_names(net: StaticTracker) -> list[str]:
    """The modules that make the per-layer table (each parameter belongs to exactly one)."""
    names = ["backbone.stem", "backbone.ds"]
    names += [f"backbone.blocks.{i}" for i in range(len(net.backbone.blocks))]
    key = f"c{net.arch.out_channels}"
    names += [f"neck.bn_z.{key}", f"neck.bn_x.{key}", "neck.ca", "neck.adjust"]
    for head in ("cls_head", "reg_head"):
        names += [f"{head}.layers.{j}" for j in range(len(getattr(net, head).layers))]
        names.append(f"{head}.out")
    return names


def _fvcore_layers(net: StaticTracker, search_size: int) -> tuple[dict[str, LayerCost], Complexity]:
    """Per-layer costs (plus 'neck.correlation' for the neck's own matmul) and totals."""
    from fvcore.nn import FlopCountAnalysis, parameter_count  # slow import; only needed here

    net = net.eval()
    side = net.arch.template_feature_size
    zf = torch.zeros(1, net.arch.out_channels, side, side)
    x = torch.zeros(1, 3, search_size, search_size)
    with torch.no_grad():
        flops = (FlopCountAnalysis(SearchBranch(net), (zf, x))
                 .unsupported_ops_warnings(False).uncalled_modules_warnings(False))
        by_op = flops.by_module_and_operator()
        by_mod = flops.by_module()
    params = parameter_count(net)

    def conv(name: str) -> int:
        return sum(by_op.get(name, {}).get(op, 0) for op in _CONV_OPS)

    layers: dict[str, LayerCost] = {}
    for name in _layer_names(net):
        layers[name] = LayerCost(name, params[name], by_mod[f"net.{name}"], conv(f"net.{name}"))
    neck_inner = [n for n in layers if n.startswith("neck.")]
    corr = "neck.correlation"  # ops run by Neck.forward itself: the matmul
    layers[corr] = LayerCost(corr, params["neck"] - sum(layers[n].params for n in neck_inner),
                             by_mod["net.neck"] - sum(layers[n].macs for n in neck_inner),
                             conv("net.neck") - sum(layers[n].conv_macs for n in neck_inner))
    total = Complexity(params[""], flops.total(), conv(""), tuple(layers.values()))
    for what in ("params", "macs", "conv_macs"):
        if sum(getattr(r, what) for r in layers.values()) != getattr(total, what):
            raise RuntimeError(f"per-layer {what} do not add up to the total; a module escaped the table")
    return layers, total


def count(arch: Arch, search_size: int = SEARCH_SIZE) -> Complexity:
    """Exact fvcore params / MACs of ``arch`` (search branch, template features precomputed)."""
    return _fvcore_layers(StaticTracker.build(arch), search_size)[1]


# -- lookup table ---------------------------------------------------------------------------
Cost = tuple[int, int, int]  # (params, macs, conv_macs)


def covering_archs() -> list[Arch]:
    """Architectures that together run every per-decision cost (and latency) entry: per
    output stride (16 at full depth, 8 cut after stage 2), six where every block is choice
    j and both heads are C_j with kernel k_j everywhere; plus one cut after stage 3 (the
    80-channel neck)."""
    archs = []
    for depth in (NUM_BLOCKS, sum(STAGE_BLOCKS[:2])):  # full (stride 16), cut after stage 2 (stride 8)
        for j in range(len(MBCONV_OPS)):
            h = HeadArch(HEAD_CHANNELS[j % len(HEAD_CHANNELS)], (j // len(HEAD_CHANNELS),) * HEAD_LAYERS)
            archs.append(Arch((j,) * depth, h, h))
    archs.append(Arch((0,) * (NUM_BLOCKS - 4), archs[1].cls, archs[2].reg))
    return archs


def _key_costs(arch: Arch, layers: dict[str, LayerCost]) -> dict[Key, Cost]:
    """One network's fvcore per-layer costs, added up per cost key of ``arch``."""
    c = f"c{arch.out_channels}"
    run = {"cls": 0, "reg": 0}  # a head's next layer module (skips have none)
    out: dict[Key, Cost] = {}
    for key in arch.cost_keys():
        kind = key[0]
        if kind == "fixed":
            names = ["backbone.stem", "backbone.ds"]
        elif kind == "block":
            names = [f"backbone.blocks.{key[1]}"]
        elif kind == "neck":
            names = [f"neck.bn_z.{c}", f"neck.bn_x.{c}", "neck.correlation", "neck.ca", "neck.adjust"]
        elif kind == "head":
            names = [f"{key[2]}_head.layers.{run[key[2]]}"]
            run[key[2]] += 1
        else:
            names = [f"{key[2]}_head.out"]
        out[key] = tuple(sum(getattr(layers[n], what) for n in names) for what in ("params", "macs", "conv_macs"))
    return out


class ComplexityTable:
    """Parameters, MACs and conv MACs as three cost tables (:mod:`lighttrack.costs`) at a
    256x256 search image; ``cost(arch)`` reads the three once per candidate."""

    def __init__(self, params: CostTable, macs: CostTable, conv_macs: CostTable) -> None:
        self.params, self.macs, self.conv_macs = params, macs, conv_macs

    @classmethod
    def from_dict(cls, data: dict) -> "ComplexityTable":
        """From the file form: the nested tables with a (params, macs, conv_macs) triple per entry."""
        flat = flatten(data)
        return cls(*(CostTable({k: int(v[j]) for k, v in flat.items()}) for j in range(3)))

    def to_dict(self) -> dict:
        triples = {k: [self.params.values[k], self.macs.values[k], self.conv_macs.values[k]]
                   for k in self.params.values}
        return {"search_size": SEARCH_SIZE, **nest(triples)}

    # -- building ------------------------------------------------------------------------
    @classmethod
    def build(cls) -> "ComplexityTable":
        """Count the covering architectures with fvcore and split them into per-decision costs."""
        costs: dict[Key, Cost] = {}
        for a in covering_archs():
            layers, _ = _fvcore_layers(StaticTracker.build(a), SEARCH_SIZE)
            for key, cost in _key_costs(a, layers).items():
                if costs.setdefault(key, cost) != cost:  # a decision's cost must not depend on the others
                    raise RuntimeError(f"{key} costs {cost} in {a} but {costs[key]} in another covering arch")
        return cls(*(CostTable({k: v[j] for k, v in costs.items()}) for j in range(3)))

    @classmethod
    def default(cls) -> "ComplexityTable":
        """The table shipped with the package (checked against build() by the tests);
        built with fvcore if the file is missing. Memoised per process."""
        return _default_table()

    def save(self, path: Path = TABLE_PATH) -> None:
        Path(path).write_text(json.dumps(self.to_dict()) + "\n")

    # -- lookups -------------------------------------------------------------------------
    def cost(self, arch: Arch) -> Cost:
        """(params, macs, conv_macs) of ``arch``, equal to count()'s."""
        keys = arch.cost_keys()
        return self.params.sum(keys), self.macs.sum(keys), self.conv_macs.sum(keys)

    def feasible(self, arch: Arch, macs_max: int | None = None, params_max: int | None = None) -> bool:
        """Within the budgets (Eq. 4 of the paper); None means unconstrained."""
        p, m, _ = self.cost(arch)
        return (macs_max is None or m <= macs_max) and (params_max is None or p <= params_max)


@functools.lru_cache(maxsize=1)
def _default_table() -> ComplexityTable:
    if TABLE_PATH.exists():
        return ComplexityTable.from_dict(json.loads(TABLE_PATH.read_text()))
    return ComplexityTable.build()


# -- quantities --------------------------------------------------------------------------------
_SUFFIX = {"": 1, "k": 10**3, "K": 10**3, "M": 10**6, "G": 10**9}
_QUANTITY = re.compile(r"([0-9][0-9_,]*(?:\.[0-9]+)?)\s*([kKMG]?)")


def parse_quantity(text: str | int) -> int:
    """'600M' -> 600_000_000; also '2M', '1.5G', '800k', '530,411,008', 12345."""
    if isinstance(text, int) and not isinstance(text, bool):
        return text
    m = _QUANTITY.fullmatch(str(text).strip())
    if not m:
        raise ValueError(f"not a quantity: {text!r} (use e.g. 600M, 2M, 1.5G, 800k or a plain integer)")
    try:
        value = Decimal(m.group(1).replace("_", "").replace(",", "")) * _SUFFIX[m.group(2)]
    except InvalidOperation:
        raise ValueError(f"not a quantity: {text!r}") from None
    if value != value.to_integral_value():
        raise ValueError(f"quantity {text!r} is not a whole number")
    return int(value)


def format_quantity(n: int) -> str:
    """1969397 -> '1.97M', 530411008 -> '530.4M'."""
    for suffix, scale in (("G", 10**9), ("M", 10**6), ("k", 10**3)):
        if abs(n) >= scale:
            return f"{n / scale:.4g}{suffix}"
    return str(n)
