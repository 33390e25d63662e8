"""Measured-latency budgets: a machine's per-decision latency table, read and written.

The table is a cost table (:mod:`lighttrack.costs`) of milliseconds: one entry per
decision of the search branch (the template branch runs once per video and is not
counted, as for MACs), whose constant is ``overhead_ms``, what a whole network takes
beyond the sum of its blocks. :mod:`lighttrack.search.profiler` measures it on the
machine where it runs; its docstring says why such a sum matches a whole network.

    table = profile(backend="torch", threads=1); table.save("table.json")
    LatencyTable.load("table.json").estimate(arch)  # ms, a few dict look-ups
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lighttrack.arch import Arch
from lighttrack.costs import CostTable, Key, all_keys, flatten, nest

__all__ = ["FORMAT", "LatencyTable", "LatencyTableError"]

FORMAT = "lighttrack-latency-table/2"  # /2: the neck is one entry; heads per output stride


class LatencyTableError(ValueError):
    """A latency table that cannot be read or does not cover the search space."""


@dataclass
class LatencyTable:
    """Per-decision latencies in ms (search branch, batch 1, ``search_size`` square input):
    ``ms`` holds one entry per cost key, its constant the calibrated ``overhead_ms``."""

    backend: str
    threads: int
    search_size: int
    ms: CostTable
    clock: str = "wall"
    repeats: int = 0
    machine: dict[str, Any] = field(default_factory=dict)
    calibration: list[dict[str, Any]] = field(default_factory=list)

    @property
    def overhead_ms(self) -> float:
        return self.ms.constant

    def _check_stride(self, arch: Arch) -> None:
        if arch.stride not in self.ms.strides:
            raise LatencyTableError(f"this latency table has no stride-{arch.stride} entries (profiled for "
                                    f"strides {list(self.ms.strides)}); profile it with `--space wide` for {arch}")

    def terms(self, arch: Arch) -> list[tuple[Key, float]]:
        """(cost key, ms) of every entry ``arch`` uses (without the overhead)."""
        self._check_stride(arch)
        return self.ms.terms(arch)

    def estimate(self, arch: Arch) -> float:
        """Estimated search-branch latency of ``arch`` in ms (sum of entries + overhead)."""
        self._check_stride(arch)
        return self.ms.total(arch)

    # -- files --------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "unit": "ms", "backend": self.backend, "threads": self.threads,
                "clock": self.clock, "search_size": self.search_size, "batch": 1,
                "repeats": self.repeats, "machine": self.machine, "overhead_ms": self.overhead_ms,
                **nest(self.ms.values), "calibration": self.calibration}

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=1) + "\n")

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str = "<dict>") -> "LatencyTable":
        if d.get("format") != FORMAT:
            raise LatencyTableError(f"{source}: format is {d.get('format')!r}, expected {FORMAT!r} "
                                    "(write one with `lighttrack arch profile`)")
        try:
            ms = CostTable({k: float(v) for k, v in flatten(d).items()}, float(d.get("overhead_ms", 0.0)))
            t = cls(backend=d["backend"], threads=int(d["threads"]), search_size=int(d["search_size"]), ms=ms,
                    clock=d.get("clock", "wall"), repeats=int(d.get("repeats", 0)),
                    machine=dict(d.get("machine", {})), calibration=list(d.get("calibration", [])))
        except (KeyError, TypeError, ValueError) as e:
            raise LatencyTableError(f"{source}: malformed latency table ({type(e).__name__}: {e})") from None
        t.validate(source)
        return t

    @classmethod
    def load(cls, path: str | Path) -> "LatencyTable":
        p = Path(path)
        if not p.is_file():
            raise FileNotFoundError(f"latency table {p} not found (write one with `lighttrack arch profile`)")
        try:
            data = json.loads(p.read_text())
        except json.JSONDecodeError as e:
            raise LatencyTableError(f"{p}: not JSON (line {e.lineno}: {e.msg})") from None
        return cls.from_dict(data, str(p))

    def validate(self, source: str) -> None:
        """Exactly the entries of the paper's space (stride 16), or of the wide one (8 and 16)."""
        strides = self.ms.strides
        if strides not in ((16,), (8, 16)):
            raise LatencyTableError(f"{source}: 'head' and 'out' must hold output strides 16 (and 8 for the "
                                    f"wide space), got {list(strides)}")
        have, want = set(self.ms.values), all_keys(strides)
        for what, keys in (("lacks", want - have), ("has unknown", have - want)):
            if keys:
                key = sorted(keys, key=str)[0]
                raise LatencyTableError(f"{source}: {what} entries, e.g. '{key[0]}' {key[1:]} "
                                        f"({len(keys)} in all)")
        values = [self.overhead_ms, *self.ms.values.values()]
        if not all(np.isfinite(v) for v in values) or min(self.ms.values.values()) < 0:
            raise LatencyTableError(f"{source}: latencies must be finite and >= 0")
