"""Search at scale (issue 36; printed, never asserted): successive halving over the
validation sequences and the accuracy predictor's screen, each against evolution that
tracks every candidate on the whole split, on one supernet, over seeds.

    .venv/bin/python bench/bench_search_scale.py --supernet CKPT --data DIR/got10k --out DIR
        [--seeds 5] [--evaluations 30] [--retest 30] [--set eval.val_frames=30 ...]

Per seed (the optimizer's), three plain in-process searches (LightTrackEvolution, the
config's population and top-k, one budget):

* ``full``: every candidate tracked on the whole split;
* ``halving``: the same number of candidates, each through the rungs of
  ``lighttrack.search.fidelity`` (the rule of Ray Tune's ASHA);
* ``predictor``: the same number of tracked evaluations, the screen on.

Every evaluation is measured once: two caches in ``--out`` (whole-split rows; rung rows),
and a search asking what another seed's search measured is charged that row's measured
seconds, so each search costs what it would alone (``seconds`` below are evaluation
seconds, BN recalibration included). Figures, as mean +- standard deviation over seeds:

* candidates per minute, halving against full, and the found fitness of each (at equal
  candidates, and full's best at the seconds halving took);
* evaluations the predictor search needed to reach the fitness ``full`` reached at N
  (goal: at most half);
* the predictor's held-out Kendall tau fitted on 50 and 200 whole-split rows, beside the
  noise ceiling: the tau between two measurements of ``--retest`` architectures under a
  second recalibration draw (``eval.seed`` + 1).
"""
from __future__ import annotations

import random
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

import harness
from lighttrack.arch import PAPER, parse
from lighttrack.config import load
from lighttrack.search.budget import Budget, BudgetCheck, CostModel
from lighttrack.search.cache import CachedEvaluator, EvalCache
from lighttrack.search.config import SearchConfig
from lighttrack.search.evaluate import CandidateEvaluator, load_supernet
from lighttrack.search.fidelity import Halving, evaluate_halving, rungs
from lighttrack.search.predictor import heldout_tau, kendall_tau
from lighttrack.search.searcher import open_search, run_plain

ROOT = Path(__file__).resolve().parents[1]


def search(cfg: SearchConfig, check: BudgetCheck, seed: int, evaluate) -> dict:
    """One plain search; ``evaluate(arch) -> (row, seconds charged)``. Its trajectory."""
    cfg = replace(cfg, seed=seed)
    source = open_search(cfg, check, [])
    spent, best, curve = 0.0, -1.0, []  # curve: (candidates, seconds, best whole-split fitness)

    def step(arch):
        nonlocal spent, best
        row, seconds = evaluate(arch)
        spent += seconds
        if row.get("sequences") is None:
            best = max(best, row["fitness"])
        curve.append((len(curve) + 1, spent, best))
        return row

    run_plain(source, step)
    return {"curve": curve, "best": best, "seconds": spent, "stats": source.stats.as_dict(),
            "taus": list(getattr(source.screen, "taus", []))}


def main(argv: list[str] | None = None) -> int:
    p = harness.parser(__doc__)
    p.add_argument("--supernet", required=True, help="a phase-2 checkpoint (e.g. bench_small_recipes --supernet-only)")
    p.add_argument("--data", required=True, help="GOT-10k-layout root: its val split scores, its train split recalibrates")
    p.add_argument("--out", type=Path, required=True, help="the two evaluation caches (kept: a rerun reuses them)")
    p.add_argument("--config", default=str(ROOT / "configs/search_small.yaml"))
    p.add_argument("--budget", default="600M,2M")
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--evaluations", type=int, default=30, help="candidates (halving) or tracked evaluations")
    p.add_argument("--retest", type=int, default=30, help="architectures measured again for the noise ceiling")
    p.add_argument("--set", action="extend", nargs="+", default=[], metavar="KEY=VALUE")
    args = p.parse_args(argv)
    cfg = load(SearchConfig, args.config, [f"eval.val_root={args.data}", f"eval.recalibrate_root={args.data}",
                                           "eval.val_sequences=0", f"optimizer.evaluations={args.evaluations}",
                                           *args.set])
    report = harness.Report("bench_search_scale", args)
    costs = CostModel()
    check = BudgetCheck(Budget.parse(args.budget), costs)
    net, sid = load_supernet(args.supernet)
    ev = CandidateEvaluator(net, sid, cfg.eval, costs)
    whole = CachedEvaluator(ev, EvalCache(str(args.out / "whole")))
    rung = CachedEvaluator(ev, EvalCache(str(args.out / "rungs")))
    f = cfg.fidelity
    sizes = rungs(ev.num_sequences, f.min_sequences, f.reduction)
    report.record("setup", {"sequences": ev.num_sequences, "frames": ev.val.frames, "rungs": sizes,
                            "supernet_id": sid, "settings_id": ev.settings_id, "backend": ev.backend,
                            "population": cfg.optimizer.population, "topk": cfg.optimizer.topk,
                            "predictor": vars(cfg.predictor)}, echo=True)

    def full(arch):
        row = whole(arch, "bench", args.budget)
        return row, row["seconds"]

    def halving_run():
        h = Halving(sizes, f.reduction)

        def one(arch):
            rows = []  # the rungs it reached, each charged

            def at(k: int) -> dict:
                rows.append(rung(arch, "bench", args.budget, sequences=k))
                return rows[-1]

            return evaluate_halving(at, h), sum(r["seconds"] for r in rows)
        return one

    runs: dict[str, list[dict]] = {"full": [], "halving": [], "predictor": []}
    pred_cfg = replace(cfg, predictor=replace(cfg.predictor, enabled=True))
    for seed in range(args.seeds):
        t0 = time.perf_counter()
        runs["full"].append(search(cfg, check, seed, full))
        runs["halving"].append(search(cfg, check, seed, halving_run()))
        runs["predictor"].append(search(pred_cfg, check, seed, full))
        report.record("runs", runs)
        print(f"seed {seed}: " + ", ".join(f"{k} best {v[-1]['best']:.4f} in {v[-1]['seconds']:.0f} s"
                                           for k, v in runs.items()) + f" ({time.perf_counter() - t0:.0f} s)",
              flush=True)

    def stat(values):
        return float(np.mean(values)), float(np.std(values))

    n = args.evaluations
    rate = {k: [len(r["curve"]) / r["seconds"] * 60 for r in v] for k, v in runs.items()}
    for k in ("full", "halving"):
        m, s = stat(rate[k])
        report.figure(f"candidates per minute, {k}", m, "/min", spread=s)
        m, s = stat([r["best"] for r in runs[k]])
        report.figure(f"found fitness after {n} candidates, {k}", m, spread=s)
    m, s = stat([h / w for h, w in zip(rate["halving"], rate["full"])])
    report.figure("halving / full candidates per minute", m, "x", spread=s, note="seed by seed")
    # full's best by the evaluation seconds the halving search took, seed by seed
    at_time = [max([b for _, t, b in fr["curve"] if t <= hr["seconds"]], default=-1.0)
               for fr, hr in zip(runs["full"], runs["halving"])]
    m, s = stat(at_time)
    report.figure("full's found fitness at halving's seconds", m, spread=s)
    m, s = stat([h["best"] - w["best"] for h, w in zip(runs["halving"], runs["full"])])
    report.figure("found fitness, halving - full (equal candidates)", m, spread=s, note="seed by seed")

    needed = []
    for fr, pr in zip(runs["full"], runs["predictor"]):
        target = fr["best"]
        needed.append(next((c for c, _, b in pr["curve"] if b >= target - 1e-12), None))
    first_best = [next(c for c, _, b in fr["curve"] if b >= fr["best"]) for fr in runs["full"]]
    m, s = stat(first_best)
    report.figure("full: evaluations until its best at N first came", m, spread=s,
                  note=f"the predictor's search shares its first asks (same seed): {first_best}")
    reached = [x for x in needed if x is not None]
    report.figure("predictor: evaluations to full's fitness at N", np.mean(reached) if reached else "never",
                  spread=float(np.std(reached)) if reached else None,
                  note=f"N = {n}; reached in {len(reached)} of {len(needed)} seeds: {needed}")
    report.figure("predictor: evaluations to that fitness / N",
                  float(np.mean([(x if x is not None else float('inf')) / n for x in needed])),
                  note="inf where it was not reached within N")
    m, s = stat([r["best"] for r in runs["predictor"]])
    report.figure(f"found fitness after {n} evaluations, predictor", m, spread=s)
    m, s = stat([r["stats"]["screened"] for r in runs["predictor"]])
    report.figure("asks the predictor ruled out a search", m, spread=s)

    rows = EvalCache(str(args.out / "whole")).rows(sid, ev.settings_id) + EvalCache(str(args.out / "rungs")).rows(
        sid, ev.settings_id)
    rows = list({r["arch"]: r for r in rows}.values())
    report.figure("whole-split rows", len(rows))
    for kind in ("gp", "gbm"):
        for size, taus in heldout_tau(rows, [50, 200], PAPER, kind, repeats=5).items():
            report.figure(f"predictor {kind} held-out tau at {size} rows", float(np.mean(taus)),
                          spread=float(np.std(taus)), note=f"5 random splits, {len(rows) - size} held out, "
                          f"min {min(taus):+.3f} max {max(taus):+.3f}")
    if args.retest:
        again = CandidateEvaluator(net, sid, replace(cfg.eval, seed=cfg.eval.seed + 1), costs)
        picked = random.Random(0).sample(rows, min(args.retest, len(rows)))
        second = [again.evaluate(parse(r["arch"]))["fitness"] for r in picked]
        report.figure("noise ceiling: tau of two recalibration draws", kendall_tau([r["fitness"] for r in picked], second),
                      note=f"{len(picked)} architectures")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
