"""Evolution against random search at the same number of evaluations, one supernet's scores
shared between every run (bench_evolution_vs_random, bench_ranking, bench_search_proof).

An architecture's score depends on the architecture alone (settings fixed), so a run that
proposes an architecture another run already scored gets that score without recomputing
it, and it still counts as one of its evaluations.
"""
from __future__ import annotations

import time
from typing import Callable, Sequence

import numpy as np

from lighttrack.search import space
from lighttrack.search.budget import BudgetCheck
from lighttrack.search.evolution import LightTrackEvolution, LightTrackRandom
from lighttrack.search.pareto import best_so_far
from lighttrack.search.searcher import CandidateSource, run_plain

__all__ = ["race"]


def race(evaluate: Callable, check: BudgetCheck, n: int, seeds: Sequence[int], population: int, topk: int,
         ) -> tuple[dict[str, list[np.ndarray]], int]:
    """Evolution and random search, ``n`` evaluations each per seed: the best-so-far AO curves
    per optimizer (one (n,) array a seed), and how many distinct architectures were scored."""
    scored: dict[str, dict] = {}  # arch -> row, shared by every run
    curves: dict[str, list[np.ndarray]] = {"evolution": [], "random": []}
    t0 = time.perf_counter()
    for seed in seeds:
        for name in curves:
            param = space.parametrization(seed)
            if name == "evolution":
                opt = LightTrackEvolution(population=population, topk=topk, feasible=check)(param, budget=n)
            else:
                opt = LightTrackRandom(feasible=check)(param, budget=n)
            source = CandidateSource(opt, check, n, known=scored)
            run_plain(source, evaluate)
            scored.update(source.known)
            aos = [h["ao"] for h in source.history]
            curves[name].append(best_so_far(aos))
            print(f"seed {seed} {name:<9}: best AO {max(aos):.4f} ({source.stats.trials} computed, "
                  f"{source.stats.cache_hits} from other runs; {time.perf_counter() - t0:.0f} s so far)", flush=True)
    return curves, len(scored)
