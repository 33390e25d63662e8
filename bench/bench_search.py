"""Search throughput (issue 7; printed, never asserted).

    .venv/bin/python bench/bench_search.py [--supernet CKPT] [--config configs/search_tiny.yaml]
        [--evaluations 8] [--workers 1 2] [--set eval.val_frames=10 ...]

Candidates evaluated per minute by

* a plain in-process loop: ask -> BN recalibration + tracking (the evaluator class the
  actors run, in this process) -> tell;
* the real search (``ray_jobs.search.run_search``: Ray Tune + ``LightTrackSearcher`` +
  long-lived evaluator actors) with 1 and 2 workers, each on an empty cache, timed from
  ``Tuner.fit`` start to end (actors already loaded, as the plain loop's evaluator is);

with the same seed (so the same candidates), and how many times the supernet weights were
loaded (should equal the number of workers). Goal: Tune with 1 worker >= 0.8 x the plain loop.
Without ``--supernet`` a randomly initialised supernet is used (speed does not depend on
the weights much; tracking a random net may lose the target sooner, the rate barely moves).
"""
from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import torch

import harness
from lighttrack.config import load
from lighttrack.search.budget import Budget, BudgetCheck, CostModel
from lighttrack.search.cache import CachedEvaluator, EvalCache
from lighttrack.search.config import SearchConfig
from lighttrack.search.evaluate import CandidateEvaluator, load_supernet
from lighttrack.search.searcher import open_search, run_plain


def plain(cfg: SearchConfig, ckpt: str, budget: Budget, costs: CostModel, n: int,
          cache: str) -> tuple[float, int, float]:
    """The actors' evaluator (:class:`CachedEvaluator` around a loaded supernet), in this process."""
    net, sid = load_supernet(ckpt)
    ev = CachedEvaluator(CandidateEvaluator(net, sid, cfg.eval, costs), EvalCache(cache))
    source = open_search(cfg, BudgetCheck(budget, costs), [])
    t0 = time.perf_counter()
    run_plain(source, lambda a: ev(a, "plain", budget.label))
    busy = sum(h["seconds"] for h in source.history)  # inside the evaluations themselves
    return time.perf_counter() - t0, source.stats.trials, busy


def tune(cfg: SearchConfig, ckpt: str, budget: Budget, costs: CostModel, workers: int, cache: str,
         tmp: Path) -> tuple[float, int, int, float]:
    import mlflow

    from ray_jobs.search import run_search

    cfg.workers = workers
    with mlflow.start_run():
        res = run_search(cfg, [budget], costs, ckpt, cache, f"bench-w{workers}", str(tmp / "ray"))
    b = res["budgets"][budget.label]
    busy = sum(h["seconds"] for h in b["history"] if h["source"] == "trial")
    return b["seconds"], b["stats"]["trials"], res["supernet_loads"], busy


def main() -> None:
    p = harness.parser(__doc__)
    p.add_argument("--supernet", help="checkpoint.pt (default: a random-init supernet)")
    p.add_argument("--config", default="configs/search_tiny.yaml")
    p.add_argument("--set", dest="overrides", action="extend", nargs="+", default=[])
    p.add_argument("--evaluations", type=int, default=8)
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    p.add_argument("--budget", default="600M,2M")
    args = p.parse_args()
    report = harness.Report("bench_search", args)
    torch.set_num_threads(1)
    tmp = Path(tempfile.mkdtemp(prefix="lt-bench-search-"))
    cfg = load(SearchConfig, args.config, [*args.overrides, f"optimizer.evaluations={args.evaluations}"])
    ckpt = args.supernet
    if not ckpt:
        from lighttrack.models import TrackSupernet
        torch.manual_seed(0)
        ckpt = str(tmp / "checkpoint.pt")
        torch.save({"model": TrackSupernet().state_dict()}, ckpt)
    budget, costs = Budget.parse(args.budget), CostModel()
    n = args.evaluations
    load0 = os.getloadavg()[0]
    print(f"{n} evaluations per run, config {args.config}, budget {budget.label}, supernet {ckpt}")

    import mlflow
    import ray

    secs, trials, busy = plain(cfg, ckpt, budget, costs, n, str(tmp / "cache-plain"))
    base, base_share = trials / secs * 60, busy / secs
    report.figure("plain loop", base, "evaluations/min", f"{trials} in {secs:.1f} s; evaluator busy {base_share:.0%}")

    os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{tmp / 'mlflow.db'}")
    mlflow.set_tracking_uri(os.environ["MLFLOW_TRACKING_URI"])
    mlflow.set_experiment("bench-search")
    ray.init(num_cpus=max(2, max(args.workers)), include_dashboard=False, log_to_driver=False)
    rates = {}
    for w in args.workers:
        secs, trials, loads, busy = tune(cfg, ckpt, budget, costs, w, str(tmp / f"cache-tune{w}"), tmp)
        rates[w], share = trials / secs * 60, busy / (w * secs)
        # Under a varying load the raw rates drift; the busy share (time inside
        # evaluations / wall time per worker) is the part the search machinery controls.
        report.compare(f"Ray Tune, {w} worker(s)", ("tune", rates[w]), ("plain", base), "evaluations/min",
                       f"{trials} in {secs:.1f} s; evaluators busy {share:.0%} ({share / base_share:.2f}x plain's); "
                       f"supernet loaded {loads} time(s)")
    if 1 in rates and 2 in rates:
        report.compare("scaling 1 -> 2 workers", ("2 workers", rates[2]), ("1 worker", rates[1]), "evaluations/min",
                       f"on {os.cpu_count()} CPUs")
    ray.shutdown()
    load1 = os.getloadavg()[0]
    report.figure("load average", load1, "", f"{load0:.2f} before" + ("; CONTENDED: > 2, other jobs share the CPUs"
                                                                      if max(load0, load1) > 2 else ""))


if __name__ == "__main__":
    main()
