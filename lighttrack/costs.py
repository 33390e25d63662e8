"""Cost tables: one number per architecture decision; an architecture's cost is one sum.

Every cost the search budgets (parameters, MACs, latency) is a sum of per-layer costs
that each depend on one decision, so a table is a flat ``{key: value}`` over the keys
that :meth:`lighttrack.arch.Arch.cost_keys` enumerates, and an architecture's total is
the sum over its keys plus a constant (the latency table's calibrated overhead; 0 for
counts). Once-for-All's efficiency predictor has this shape: one table behind one call.

Keys: ``("fixed",)`` stem + DS block; ``("block", i, choice)``; ``("neck", C)`` the whole
neck for C-channel backbone features; ``("head", stride, branch, C, layer, op)`` (op 0 =
k3, 1 = k5; a skip has no entry); ``("out", stride, branch, C)`` a head's output conv.

Files keep the nested form people read (``fixed``, ``neck[C]``, ``block[i][choice]``,
``head[stride][branch][C][layer][op]``, ``out[stride][branch][C]``, JSON object keys
being strings); :func:`flatten` and :func:`nest` convert.
"""
from __future__ import annotations

from typing import Any, Iterable, Mapping

from lighttrack.arch import HEAD_CHANNELS, HEAD_LAYERS, HEAD_OPS, MBCONV_OPS, NUM_BLOCKS, Arch, output_of

__all__ = ["Key", "CostTable", "all_keys", "flatten", "nest"]

Key = tuple
_KERNEL_OPS = tuple(i for i, k in enumerate(HEAD_OPS) if k is not None)  # (0, 1): k3, k5
_BRANCHES = ("cls", "reg")


class CostTable:
    """``values[key]`` per decision; ``total(arch)`` = constant + the sum over its keys."""

    def __init__(self, values: Mapping[Key, Any], constant: float = 0) -> None:
        self.values = dict(values)
        self.constant = constant

    def sum(self, keys: Iterable[Key]) -> Any:
        """Sum over ``keys`` (an architecture's, enumerated once for several tables)."""
        return self.constant + sum(map(self.values.__getitem__, keys))

    def total(self, arch: Arch) -> Any:
        return self.sum(arch.cost_keys())

    def terms(self, arch: Arch) -> list[tuple[Key, Any]]:
        """(key, value) of every entry ``arch`` uses, without the constant."""
        return [(k, self.values[k]) for k in arch.cost_keys()]

    @property
    def strides(self) -> tuple[int, ...]:
        """The output strides the table has head entries for."""
        return tuple(sorted({k[1] for k in self.values if k[0] == "head"}))


def all_keys(strides: Iterable[int]) -> set[Key]:
    """Every key a table covering the architectures of these output strides holds."""
    strides = set(strides)
    keys: set[Key] = {("fixed",)}
    keys |= {("block", i, c) for i in range(NUM_BLOCKS) for c in range(len(MBCONV_OPS))}
    keys |= {("neck", output_of(b)[0]) for b in range(NUM_BLOCKS) if output_of(b)[1] in strides}
    for s in strides:
        for br in _BRANCHES:
            for c in HEAD_CHANNELS:
                keys |= {("head", s, br, c, i, op) for i in range(HEAD_LAYERS) for op in _KERNEL_OPS}
                keys.add(("out", s, br, c))
    return keys


def flatten(nested: Mapping[str, Any]) -> dict[Key, Any]:
    """The nested (file) form to ``{key: value}``; raises KeyError/TypeError/ValueError on
    a malformed one."""
    flat: dict[Key, Any] = {("fixed",): nested["fixed"]}
    flat.update({("neck", int(c)): v for c, v in nested["neck"].items()})
    flat.update({("block", i, c): v for i, per in enumerate(nested["block"]) for c, v in enumerate(per)})
    for s, per_s in nested["head"].items():
        for br, per_c in per_s.items():
            for c, layers in per_c.items():
                flat.update({("head", int(s), br, int(c), i, op): v
                             for i, ops in enumerate(layers) for op, v in enumerate(ops)})
    for s, per_s in nested["out"].items():
        for br, per_c in per_s.items():
            flat.update({("out", int(s), br, int(c)): v for c, v in per_c.items()})
    return flat


def nest(flat: Mapping[Key, Any]) -> dict[str, Any]:
    """``{key: value}`` to the nested (file) form, JSON-ready."""
    out: dict[str, Any] = {"fixed": flat[("fixed",)], "neck": {}, "block": [], "head": {}, "out": {}}
    block: dict[int, dict[int, Any]] = {}
    for key, v in flat.items():
        kind = key[0]
        if kind == "neck":
            out["neck"][str(key[1])] = v
        elif kind == "block":
            block.setdefault(key[1], {})[key[2]] = v
        elif kind == "head":
            _, s, br, c, i, op = key
            layers = out["head"].setdefault(str(s), {}).setdefault(br, {}).setdefault(str(c), {})
            layers.setdefault(i, {})[op] = v
        elif kind == "out":
            out["out"].setdefault(str(key[1]), {}).setdefault(key[2], {})[str(key[3])] = v
    out["block"] = [[per[c] for c in sorted(per)] for _, per in sorted(block.items())]
    for per_s in out["head"].values():
        for per_c in per_s.values():
            for c, layers in per_c.items():
                per_c[c] = [[ops[op] for op in sorted(ops)] for _, ops in sorted(layers.items())]
    return out
