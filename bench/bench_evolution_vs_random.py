"""Evolution vs random search at the same number of evaluations (issue 7; printed only).

    .venv/bin/python bench/bench_evolution_vs_random.py --supernet CKPT \
        [--config configs/search_tiny.yaml] [--evaluations 30] [--population 10] [--topk 3] \
        [--seeds 0 1 2] [--budget 600M,2M] [--set eval.val_frames=10 ...] [--json out.json]

Runs both optimizers in the plain in-process loop (the comparison is about the optimizer,
not Ray) on one supernet loaded once, for each seed, and prints the best AO found after
every evaluation count and its mean +- std over the seeds. Scores are shared between runs
(``search_race.race``): an architecture is scored once, whichever run proposes it, and
counts as one evaluation of each run that does. About half an hour with the defaults on
2 CPUs.
"""
from __future__ import annotations

import numpy as np
import torch

import harness
from search_race import race

from lighttrack.config import load
from lighttrack.search.budget import Budget, BudgetCheck, CostModel
from lighttrack.search.config import SearchConfig
from lighttrack.search.evaluate import CandidateEvaluator, load_supernet


def main() -> None:
    p = harness.parser(__doc__)
    p.add_argument("--supernet", required=True, help="trained supernet checkpoint.pt")
    p.add_argument("--config", default="configs/search_tiny.yaml")
    p.add_argument("--set", dest="overrides", action="extend", nargs="+", default=[])
    p.add_argument("--evaluations", type=int, default=30)
    p.add_argument("--population", type=int, default=10)
    p.add_argument("--topk", type=int, default=3)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--budget", default="600M,2M")
    args = p.parse_args()
    report = harness.Report("bench_evolution_vs_random", args)
    torch.set_num_threads(1)
    cfg = load(SearchConfig, args.config, args.overrides)
    net, sid = load_supernet(args.supernet)
    budget, costs = Budget.parse(args.budget), CostModel()
    check = BudgetCheck(budget, costs)
    ev = CandidateEvaluator(net, sid, cfg.eval, costs)
    n = args.evaluations
    print(f"{n} evaluations per run, seeds {args.seeds}, budget {budget.label}, population "
          f"{args.population}, top-{args.topk}, config {args.config} {args.overrides}")
    t = harness.timeit(lambda: race(ev.evaluate, check, n, args.seeds, args.population, args.topk), warmup=0)
    curves, distinct = t.result
    marks = sorted({k for k in (n // 4, n // 2, 3 * n // 4, n) if k >= 1})
    rows = []
    for k in marks:  # best AO so far after k evaluations, mean and std over the seeds
        row = {"evaluations": k}
        for name in curves:
            v = np.array([c[k - 1] for c in curves[name]])
            row[f"{name}_mean"], row[f"{name}_std"] = float(v.mean()), float(v.std())
        rows.append(row)
    print(f"\nbest AO so far over {len(args.seeds)} seeds:")
    report.table("best_ao_so_far", rows, **dict.fromkeys(list(rows[0])[1:], ".4f"))
    final = rows[-1]
    report.compare("best AO at equal evaluations, mean over seeds", ("evolution", final["evolution_mean"]),
                   ("random", final["random_mean"]), note=f"{n} evaluations, {len(args.seeds)} seeds")
    report.figure("distinct architectures scored", distinct, note=f"{t.median:.0f} s in all")
    report.record("curves", {k: [c.tolist() for c in v] for k, v in curves.items()})


if __name__ == "__main__":
    main()
