"""Multi-fidelity evaluation: successive halving over the validation sequences.

A candidate first tracks ``min_sequences`` sequences (the first of the evaluator's rung
order), and only the best ``1/reduction`` of the candidates at a rung go on to ``reduction``
times as many, up to the whole split::

    rungs(21, min_sequences=3, reduction=3) == (3, 9, 21)

The decision is asynchronous successive halving (ASHA, Li et al. 2020), the rule of Ray
Tune's ``ASHAScheduler`` that the Ray job uses: a candidate reaching a rung goes on when its
fitness is at least the ``1 - 1/reduction`` quantile of the fitnesses recorded at that rung
so far (the first one always goes on). :class:`Halving` is that rule for the plain
in-process loop; each rung's row goes to the evaluation cache (its ``sequences``), so a
stopped candidate that is asked again goes on from its deepest rung.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Callable, Mapping

import numpy as np

from lighttrack.config import PosInt, Range

__all__ = ["FidelityConfig", "rungs", "Halving", "evaluate_halving"]


@dataclass
class FidelityConfig:
    """Successive halving in phase 3 (off: every candidate tracks the whole split)."""

    enabled: bool = False
    min_sequences: PosInt = 3  # the first rung
    reduction: Annotated[int, Range(ge=2)] = 3  # keep 1/reduction at each rung; rungs grow by it


def rungs(total: int, min_sequences: int, reduction: int) -> tuple[int, ...]:
    """Sequences seen at each rung: min_sequences * reduction**i below ``total``, then ``total``."""
    out, k = [], int(min_sequences)
    while k < total:
        out.append(k)
        k *= reduction
    return (*out, int(total))


class Halving:
    """ASHA's promotion rule over ``rungs`` (the last is the whole split)."""

    def __init__(self, rung_sizes: tuple[int, ...], reduction: int) -> None:
        self.rungs, self.reduction = tuple(rung_sizes), int(reduction)
        self.recorded: dict[int, list[float]] = {k: [] for k in self.rungs[:-1]}

    def promote(self, sequences: int, fitness: float) -> bool:
        """Record ``fitness`` at rung ``sequences``; whether the candidate goes on."""
        seen = self.recorded[sequences]
        cutoff = np.nanpercentile(seen, (1 - 1 / self.reduction) * 100) if seen else None
        seen.append(float(fitness))
        return cutoff is None or fitness >= cutoff


def evaluate_halving(evaluate: Callable[[int], Mapping[str, Any]], halving: Halving) -> dict:
    """One candidate through the rungs: ``evaluate(sequences)`` gives a rung's row; the row
    of the rung where it stopped (``sequences`` set) or of the whole split (``sequences`` None)."""
    for k in halving.rungs:
        row = evaluate(k)
        if row.get("sequences") is None or not halving.promote(k, float(row["fitness"])):
            return dict(row)
    return dict(row)
