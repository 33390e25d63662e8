"""Budgets (MACs, parameters, latency) and the cheap feasibility check the search uses.

Costs come from lookup tables (``models.complexity.ComplexityTable`` for MACs and
parameters, :class:`lighttrack.search.latency.LatencyTable` for latency), so checking a
candidate costs a few dictionary look-ups, never a forward pass. MACs follow the
model's convention (fvcore total of the search branch, template features precomputed).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from lighttrack.arch import Arch, resolve
from lighttrack.config import ConfigError

__all__ = ["BudgetError", "Budget", "Costs", "CostModel", "BudgetCheck", "check_possible",
           "parse_quantity"]


class BudgetError(ConfigError):
    """A malformed budget, or one that no architecture of the space can satisfy."""


def parse_quantity(text: str | int) -> int:
    """``"600M" -> 600_000_000`` (the grammar of ``models.complexity.parse_quantity``)."""
    from lighttrack.models.complexity import parse_quantity as parse

    return int(parse(text))


def _short(n: int) -> str:
    for s, f in (("G", 10**9), ("M", 10**6), ("K", 10**3)):
        if n >= f and n % (f // 100) == 0:
            return f"{n / f:g}{s}"
    return str(n)


@dataclass(frozen=True)
class Budget:
    """Upper bounds; None = unconstrained."""

    macs_max: int | None = None
    params_max: int | None = None
    latency_max_ms: float | None = None
    latency_runtime: str | None = None  # the runtime the latency table must be profiled on

    @classmethod
    def parse(cls, text: str, latency_max_ms: float | None = None) -> "Budget":
        """``"600M,2M"`` (MACs, params), ``"600M,2M,8ms"`` (plus latency) or
        ``"600M,2M,8ms@openvino"`` (latency on that runtime's table)."""
        parts = [p.strip() for p in text.split(",")]
        if not 1 <= len(parts) <= 3 or not all(parts):
            raise BudgetError(f"budget {text!r}: expected MACS,PARAMS[,LATENCYms[@RUNTIME]], e.g. 600M,2M")
        latency, runtime = latency_max_ms, None
        if len(parts) == 3:
            value, _, runtime = parts[2].partition("@")
            if not value.lower().endswith("ms"):
                raise BudgetError(f"budget {text!r}: latency must end in 'ms', got {parts[2]!r}")
            if runtime:
                from lighttrack.search.profiler import BACKENDS

                if runtime not in BACKENDS:
                    raise BudgetError(f"budget {text!r}: unknown runtime {runtime!r}; one of {list(BACKENDS)}")
            try:
                latency = float(value[:-2])
            except ValueError:
                raise BudgetError(f"budget {text!r}: latency {value!r} is not a number of ms") from None
        try:
            macs = parse_quantity(parts[0])
            params = parse_quantity(parts[1]) if len(parts) > 1 else None
        except ValueError as e:
            raise BudgetError(f"budget {text!r}: {e}") from None
        return cls(macs, params, latency, runtime or None)

    @property
    def label(self) -> str:
        """Short name usable in file names: ``600M_2M`` or ``600M_2M_8ms``."""
        parts = [_short(self.macs_max) if self.macs_max else "anyMACs",
                 _short(self.params_max) if self.params_max else "anyParams"]
        if self.latency_max_ms is not None:
            parts.append(f"{self.latency_max_ms:g}ms" + (f"-{self.latency_runtime}" if self.latency_runtime else ""))
        return "_".join(parts)

    def fits(self, macs: int, params: int, latency_ms: float | None = None) -> bool:
        if self.macs_max is not None and macs > self.macs_max:
            return False
        if self.params_max is not None and params > self.params_max:
            return False
        if self.latency_max_ms is not None:
            if latency_ms is None:
                raise BudgetError("a latency budget needs a latency table (--latency-table)")
            if latency_ms > self.latency_max_ms:
                return False
        return True


@dataclass(frozen=True)
class Costs:
    macs: int
    params: int
    latency_ms: float | None = None


class CostModel:
    """MACs, parameters and latency of an architecture from its cost tables, its cost keys
    enumerated once (picklable; memoised per architecture)."""

    def __init__(self, complexity: Any = None, latency: Any = None) -> None:
        if complexity is None:
            from lighttrack.models.complexity import ComplexityTable
            complexity = ComplexityTable.default()
        self.complexity, self.latency = complexity, latency
        self._memo: dict[Arch, Costs] = {}

    def __call__(self, arch: Arch) -> Costs:
        c = self._memo.get(arch)
        if c is None:
            keys = arch.cost_keys()
            lat = self.latency.estimate(arch) if self.latency is not None else None
            c = Costs(int(self.complexity.macs.sum(keys)), int(self.complexity.params.sum(keys)), lat)
            if len(self._memo) < 1_000_000:
                self._memo[arch] = c
        return c


class BudgetCheck:
    """``check(arch) -> bool``: inside every budget given (picklable, for optimizers)."""

    def __init__(self, budgets: Budget | Sequence[Budget], costs: CostModel) -> None:
        self.budgets = (budgets,) if isinstance(budgets, Budget) else tuple(budgets)
        self.costs = costs

    def __call__(self, arch: Arch) -> bool:
        c = self.costs(arch)
        return all(b.fits(c.macs, c.params, c.latency_ms) for b in self.budgets)


def check_possible(budget: Budget, costs: CostModel) -> Costs:
    """Raise :class:`BudgetError` unless the cheapest architecture fits; returns its costs."""
    if budget.latency_max_ms is not None and costs.latency is None:
        raise BudgetError("--latency-max needs --latency-table (see `lighttrack arch profile`)")
    if budget.latency_runtime and costs.latency is not None and costs.latency.backend != budget.latency_runtime:
        raise BudgetError(f"budget {budget.label}: the latency table was profiled on {costs.latency.backend!r}, "
                          f"not {budget.latency_runtime!r}; profile one with `lighttrack arch profile --runtime "
                          f"{budget.latency_runtime}`")
    smallest = resolve("smallest")
    c = costs(smallest)
    if not budget.fits(c.macs, c.params, c.latency_ms):
        lat = f", {c.latency_ms:.2f} ms" if c.latency_ms is not None else ""
        raise BudgetError(
            f"budget {budget.label} is infeasible: even the smallest architecture of the space "
            f"needs {c.macs / 1e6:.1f}M MACs, {c.params / 1e6:.3f}M params{lat}")
    return c
