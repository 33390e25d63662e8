"""The paper's evolutionary search as a Nevergrad optimizer (``LightTrackEvolution``).

Random initial population; afterwards every child comes from the current top-k of all
results told so far (steady state, so asynchronous workers never wait for a generation):
with probability ``crossover_prob`` a uniform crossover of two distinct top-k parents,
otherwise a mutation of one top-k parent in which each decision is re-drawn uniformly
with probability ``mutation_prob``. Only children that pass ``feasible`` (the budget
check) and (with ``unique``) were not proposed before are returned. Results told without being asked
(a cache seeding the search) join the population like any other. A result marked partial
(``mark_partial``: a candidate stopped by successive halving on part of the validation split,
or one the accuracy predictor ruled out) is proposed no more but never becomes a parent: its
value is not a whole-split fitness.

Works on the parametrization of :mod:`lighttrack.search.space`. ``generations`` is not
an optimizer setting: the search gives it ``budget = population * generations``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import nevergrad as ng
import numpy as np
from nevergrad.optimization import base

from lighttrack.arch import PAPER, Arch
from lighttrack.search import space

__all__ = ["LightTrackEvolution", "LightTrackRandom", "Lineage", "Infeasible"]

Feasible = Callable[[Arch], bool]


class Infeasible(RuntimeError):
    """No feasible new candidate could be found."""


@dataclass
class Lineage:
    """How one asked candidate was made (kept for inspection and tests)."""

    kind: str  # "random", "mutation" or "crossover"
    parents: tuple[str, ...] = ()  # uids of the parents
    redrawn: tuple[bool, ...] = ()  # mutation: which decisions were re-drawn
    topk: tuple[str, ...] = field(default=(), repr=False)  # uids of the top-k when made


class _Evolution(base.Optimizer):
    def __init__(self, parametrization: ng.p.Parameter, budget: int | None = None,
                 num_workers: int = 1, *, population: int = 50, topk: int = 10,
                 mutation_prob: float = 0.1, crossover_prob: float = 0.5,
                 feasible: Feasible | None = None, unique: bool = True,
                 max_tries: int = 20000) -> None:
        super().__init__(parametrization, budget=budget, num_workers=num_workers)
        # (ConfiguredOptimizer instantiates once with an int dimension as a smoke check.)
        if not isinstance(parametrization, int) and tuple(parametrization.kwargs) != space.NAMES:
            raise ValueError("LightTrackEvolution needs the parametrization of lighttrack.search.space")
        if population < 2 or not 2 <= topk <= population:
            raise ValueError(f"need population >= 2 and 2 <= topk <= population, got {population}, {topk}")
        if not 0.0 <= mutation_prob <= 1.0 or not 0.0 <= crossover_prob <= 1.0:
            raise ValueError("mutation_prob and crossover_prob are probabilities")
        self.population, self.topk = population, topk
        self.mutation_prob, self.crossover_prob = mutation_prob, crossover_prob
        self.feasible, self.unique, self.max_tries = feasible, unique, max_tries
        self.space = PAPER if isinstance(parametrization, int) else space.space_of(parametrization)
        self._arity = np.array([n for _, n in self.space.decisions])
        self._results: list[tuple[float, int, str, tuple[int, ...]]] = []  # (loss, order, uid, choices)
        self._seen: set[tuple[int, ...]] = set()  # normalised choices asked or told
        self._random_asked = 0
        self._partial: set[str] = set()  # uids whose told value is no whole-split fitness
        self.lineage: dict[str, Lineage] = {}

    # -- helpers ------------------------------------------------------------------------
    def _ok(self, choices: tuple[int, ...]) -> bool:
        if self.unique and space.normalize(choices, self.space) in self._seen:
            return False
        return self.feasible is None or self.feasible(self.space.from_choices(choices))

    def _random(self) -> tuple[int, ...]:
        return tuple(int(self._rng.randint(n)) for n in self._arity)

    def parents(self, all_results: bool = False) -> list[tuple[float, int, str, tuple[int, ...]]]:
        """(loss, order, uid, choices) of the current top-k (lowest loss first; ties by tell
        order), or of every result told."""
        ranked = sorted(self._results)
        return ranked if all_results else ranked[:self.topk]

    def propose(self) -> tuple[tuple[int, ...], Lineage]:
        """The next candidate's choices and lineage (what ``ask`` wraps; no side effects)."""
        top = self.parents()
        evolve = (len(top) >= 2 and self._random_asked + self.num_tell_not_asked >= self.population)
        for _ in range(self.max_tries):
            if not evolve:
                choices, lin = self._random(), Lineage("random")
            elif self._rng.rand() < self.crossover_prob:
                i, j = self._rng.choice(len(top), size=2, replace=False)
                pick = self._rng.rand(len(self._arity)) < 0.5
                choices = tuple(int(a if p else b) for a, b, p in zip(top[i][3], top[j][3], pick))
                lin = Lineage("crossover", (top[i][2], top[j][2]))
            else:
                i = int(self._rng.randint(len(top)))
                redraw = self._rng.rand(len(self._arity)) < self.mutation_prob
                fresh = self._random()
                choices = tuple(int(f if r else c) for c, f, r in zip(top[i][3], fresh, redraw))
                lin = Lineage("mutation", (top[i][2],), tuple(bool(r) for r in redraw))
            if self._ok(choices):
                lin.topk = tuple(t[2] for t in top)
                return choices, lin
        raise Infeasible(f"no new feasible candidate in {self.max_tries} tries "
                         f"({len(self._seen)} proposed so far)")

    # -- nevergrad interface --------------------------------------------------------------
    def _internal_ask_candidate(self) -> ng.p.Parameter:
        choices, lin = self.propose()
        if lin.kind == "random":
            self._random_asked += 1
        self._seen.add(space.normalize(choices, self.space))
        cand = self.parametrization.spawn_child(new_value=((), dict(zip(space.NAMES, choices))))
        self.lineage[cand.uid] = lin
        return cand

    def mark_partial(self, candidate: ng.p.Parameter) -> None:
        """The next tell of ``candidate`` is a partial value: seen, never a parent."""
        self._partial.add(candidate.uid)

    def record(self, choices: tuple[int, ...], loss: float, uid: str) -> None:
        """Add a result to the population (what ``tell`` does)."""
        self._seen.add(space.normalize(choices, self.space))
        if uid in self._partial:
            return
        if math.isfinite(loss):
            self._results.append((float(loss), len(self._results), uid, tuple(choices)))

    def _record(self, candidate: ng.p.Parameter, loss: float) -> None:
        kwargs = candidate.kwargs  # computed from the whole parameter tree: read it once
        self.record(tuple(int(kwargs[n]) for n in space.NAMES), loss, candidate.uid)

    def _internal_tell_candidate(self, candidate: ng.p.Parameter, loss: float) -> None:
        self._record(candidate, loss)

    def _internal_tell_not_asked(self, candidate: ng.p.Parameter, loss: float) -> None:
        self._record(candidate, loss)


class LightTrackEvolution(base.ConfiguredOptimizer):
    """Configured evolution; ``LightTrackEvolution(population=..)(param, budget, workers)``."""

    # pylint: disable=unused-argument
    def __init__(self, *, population: int = 50, topk: int = 10, mutation_prob: float = 0.1,
                 crossover_prob: float = 0.5, feasible: Feasible | None = None,
                 unique: bool = True, max_tries: int = 20000) -> None:
        super().__init__(_Evolution, locals())


class _Random(_Evolution):
    def __init__(self, parametrization: ng.p.Parameter, budget: int | None = None,
                 num_workers: int = 1, *, feasible: Feasible | None = None, unique: bool = True,
                 max_tries: int = 20000) -> None:
        super().__init__(parametrization, budget, num_workers, population=2**62, topk=2,
                         feasible=feasible, unique=unique, max_tries=max_tries)


class LightTrackRandom(base.ConfiguredOptimizer):
    """Random search baseline: uniform (feasible, new) candidates, no parents ever.

    Nevergrad's ``RandomSearch`` works too, but samples through its parametrization
    (~0.5 s per ask here); this one draws the choices directly.
    """

    # pylint: disable=unused-argument
    def __init__(self, *, feasible: Feasible | None = None, unique: bool = True,
                 max_tries: int = 20000) -> None:
        super().__init__(_Random, locals())


# Selectable by name like any Nevergrad optimizer (default settings; configure for others).
for _name, _opt in (("LightTrackEvolution", LightTrackEvolution()), ("LightTrackRandom", LightTrackRandom())):
    if _name not in ng.optimizers.registry:
        ng.optimizers.registry.register_name(_name, _opt)
