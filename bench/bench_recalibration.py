"""AO of random architectures with and without BN recalibration (issue 7; printed only).

    .venv/bin/python bench/bench_recalibration.py --supernet CKPT [--archs 10] \
        [--config configs/search_tiny.yaml] [--budget 600M,2M] [--set eval.val_frames=20 ...]

The same ``--archs`` random in-budget architectures (seed 0) are scored by the search's
trial (``CandidateEvaluator``) twice on one supernet: with the checkpoint's stored BN
statistics (``eval.recalibrate=false``) and with the statistics re-estimated for each
path on the recalibration batches. Prints both AOs per arch, mean +- std, and the rank
correlation between the two (``--json PATH``: every figure printed, to a file).
"""
from __future__ import annotations

import dataclasses
import time

import numpy as np
import torch

import harness

from lighttrack.arch import sample
from lighttrack.config import load
from lighttrack.search.budget import Budget, BudgetCheck, CostModel
from lighttrack.search.config import SearchConfig
from lighttrack.search.evaluate import CandidateEvaluator, load_supernet


def _ranks(x: np.ndarray) -> np.ndarray:
    return np.argsort(np.argsort(x)).astype(float)


def main() -> None:
    p = harness.parser(__doc__)
    p.add_argument("--supernet", required=True)
    p.add_argument("--config", default="configs/search_tiny.yaml")
    p.add_argument("--set", dest="overrides", action="extend", nargs="+", default=[])
    p.add_argument("--archs", type=int, default=10)
    p.add_argument("--budget", default="600M,2M")
    args = p.parse_args()
    report = harness.Report("bench_recalibration", args)
    torch.set_num_threads(1)
    cfg = load(SearchConfig, args.config, args.overrides)
    net, sid = load_supernet(args.supernet)
    check = BudgetCheck(Budget.parse(args.budget), CostModel())
    rng = np.random.default_rng(0)
    archs = []
    while len(archs) < args.archs:
        a = sample(rng)
        if check(a):
            archs.append(a)
    t0 = time.perf_counter()
    with_recal = CandidateEvaluator(net, sid, cfg.eval)
    without = CandidateEvaluator(net, sid, dataclasses.replace(cfg.eval, recalibrate=False))
    print(f"supernet {args.supernet} (id {sid}); {args.archs} random archs in {args.budget}; "
          f"{cfg.eval.recalibrate_batches} recalibration batches of {cfg.eval.recalibrate_batch_size}; "
          f"val {cfg.eval.val_sequences or 'all'} seqs x {cfg.eval.val_frames or 'all'} frames")
    a0, a1 = [], []
    for i, a in enumerate(archs):
        a0.append(without.evaluate(a)["ao"])  # stored statistics (evaluate restores them first)
        a1.append(with_recal.evaluate(a)["ao"])
        report.compare(f"AO arch {i}", ("recalibrated", a1[-1]), ("stored BN", a0[-1]), note=str(a))
    a0, a1 = np.array(a0), np.array(a1)
    rho = np.corrcoef(_ranks(a0), _ranks(a1))[0, 1] if len(a0) > 1 else float("nan")
    print()
    report.compare("mean AO", ("recalibrated", float(a1.mean())), ("stored BN", float(a0.mean())),
                   note=f"std {a1.std():.4f} / {a0.std():.4f}")
    report.figure("recalibrated better", f"{int((a1 > a0).sum())}/{len(a0)}", "archs")
    report.figure("Spearman rho, stored BN vs recalibrated", float(rho), note=f"{time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
