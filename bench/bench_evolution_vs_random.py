"""Evolution vs random search at the same number of evaluations (issue 7; printed only).

    .venv/bin/python bench/bench_evolution_vs_random.py --supernet CKPT \
        [--config configs/search_tiny.yaml] [--evaluations 30] [--population 10] [--topk 3] \
        [--seeds 0 1 2] [--budget 600M,2M] [--set eval.val_frames=10 ...]

Runs both optimizers in the plain in-process loop (the comparison is about the optimizer,
not Ray) on one supernet loaded once, for each seed, and prints the best AO found after
every evaluation count and its mean +- std over the seeds. An architecture's score
depends on the architecture alone (settings fixed), so results are shared between runs
through an in-memory cache: a run that proposes an architecture another run already
scored gets that score without recomputing it, and it still counts as one of its
evaluations. About half an hour with the defaults on 2 CPUs.
"""
from __future__ import annotations

import argparse
import time
from typing import Callable, Sequence

import numpy as np
import torch

from lighttrack.config import load
from lighttrack.search import space
from lighttrack.search.budget import Budget, BudgetCheck, CostModel
from lighttrack.search.config import SearchConfig
from lighttrack.search.evaluate import CandidateEvaluator, load_supernet
from lighttrack.search.evolution import LightTrackEvolution, LightTrackRandom
from lighttrack.search.pareto import best_so_far
from lighttrack.search.searcher import CandidateSource, run_plain


def race(evaluate: Callable, check: BudgetCheck, n: int, seeds: Sequence[int], population: int, topk: int,
         ) -> tuple[dict[str, list[np.ndarray]], int]:
    """Evolution and random search, ``n`` evaluations each per seed: the best-so-far AO curves
    per optimizer, and how many distinct architectures were scored (each once: shared)."""
    scored: dict[str, dict] = {}  # arch -> row, shared by every run
    curves: dict[str, list[np.ndarray]] = {"evolution": [], "random": []}
    t0 = time.time()
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
                  f"{source.stats.cache_hits} from other runs; {time.time() - t0:.0f} s so far)", flush=True)
    return curves, len(scored)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--supernet", required=True, help="trained supernet checkpoint.pt")
    p.add_argument("--config", default="configs/search_tiny.yaml")
    p.add_argument("--set", dest="overrides", action="extend", nargs="+", default=[])
    p.add_argument("--evaluations", type=int, default=30)
    p.add_argument("--population", type=int, default=10)
    p.add_argument("--topk", type=int, default=3)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--budget", default="600M,2M")
    args = p.parse_args()
    torch.set_num_threads(1)
    cfg = load(SearchConfig, args.config, args.overrides)
    net, sid = load_supernet(args.supernet)
    budget, costs = Budget.parse(args.budget), CostModel()
    check = BudgetCheck(budget, costs)
    ev = CandidateEvaluator(net, sid, cfg.eval, costs)
    n = args.evaluations
    print(f"{n} evaluations per run, seeds {args.seeds}, budget {budget.label}, population "
          f"{args.population}, top-{args.topk}, config {args.config} {args.overrides}")
    t0 = time.time()
    curves, distinct = race(ev.evaluate, check, n, args.seeds, args.population, args.topk)
    print(f"\n{'evaluations':>12} {'evolution':>18} {'random':>18}")
    marks = sorted({k for k in (n // 4, n // 2, 3 * n // 4, n) if k >= 1})
    for k in marks:
        cells = []
        for name in curves:
            v = np.array([c[k - 1] for c in curves[name]])
            cells.append(f"{v.mean():.4f} +- {v.std():.4f}")
        print(f"{k:>12} {cells[0]:>18} {cells[1]:>18}")
    print(f"(best AO so far, mean +- std over {len(args.seeds)} seeds; {distinct} distinct "
          f"architectures scored in {time.time() - t0:.0f} s)")


if __name__ == "__main__":
    main()
