"""Latency table vs measured end-to-end latency (issue 8; printed, never asserted).

    .venv/bin/python bench/bench_latency.py [--backend torch|onnxruntime] [--threads 1]
        [--clock wall|thread] [--repeats 30] [--archs 20] [--table table.json]

Profiles this machine (or loads ``--table``), then for ``--archs`` random architectures
prints the latency estimated from the table against the measured median latency of the
static network's search branch (eval, inference mode, batch 1, same backend and threads).
The archs are measured round-robin, so a busy moment of a shared machine hits them all
alike. Goal: every estimate within 10%. The table's ``overhead_ms`` is a constant
calibrated once during profiling on its covering archs (never on these).
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch

from lighttrack.arch import sample
from lighttrack.search.latency import LatencyTable
from lighttrack.search.profiler import _clock, _Prepared, profile


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backend", default="torch", choices=("torch", "onnxruntime"))
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--clock", default="wall", choices=("wall", "thread"))
    p.add_argument("--repeats", type=int, default=30)
    p.add_argument("--archs", type=int, default=20)
    p.add_argument("--contexts", type=int, default=16, help="random archs profiled besides the covers")
    p.add_argument("--seed", type=int, default=123)
    p.add_argument("--table", help="use this table instead of profiling now")
    p.add_argument("--save-table", help="write the table profiled now here")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    load0 = os.getloadavg()
    t0 = time.time()
    if args.table:
        table = LatencyTable.load(args.table)
        if (table.backend, table.threads, table.clock) != (args.backend, args.threads, args.clock):
            raise SystemExit(f"table is {table.backend}/{table.threads} threads/{table.clock} clock; "
                             "pass the same --backend/--threads/--clock")
    rng = np.random.default_rng(args.seed)
    archs = [sample(rng) for _ in range(args.archs)]
    interleaved: dict[str, float] = {}
    if not args.table:
        # The 20 archs' end-to-end times are also taken inside the profiling loop (after
        # the covers, every repeat), so that they see the same machine load as the table.
        table = profile(args.backend, args.threads, args.repeats, search_size=256, clock=args.clock,
                        log=print, probes=archs, probe_ms=interleaved, contexts=args.contexts)
        if args.save_table:
            table.save(args.save_table)
    print(f"table: {args.backend}, {args.threads} thread(s), {args.clock} clock, overhead "
          f"{table.overhead_ms:+.2f} ms (calibrated on {len(table.calibration)} archs), "
          f"{time.time() - t0:.0f} s")
    nets = [_Prepared(a, args.backend, args.threads, table.search_size, with_steps=False) for a in archs]
    tick = _clock(args.clock, args.threads)
    times: list[list[float]] = [[] for _ in nets]
    with torch.inference_mode():
        for r in range(3 + args.repeats):
            for j, n in enumerate(nets):
                ms = n.run_whole(tick)
                if r >= 3:
                    times[j].append(ms)
    print(f"\n{'#':>3} {'estimated':>10} {'measured':>10} {'error':>8} {'IQR/med':>8}"
          + (f" {'interleaved':>12} {'error':>8}" if interleaved else "") + "  arch")
    errs, errs_i = [], []
    for j, (a, ts) in enumerate(zip(archs, times)):
        est, meas = table.estimate(a), float(np.median(ts))
        q1, q3 = np.percentile(ts, [25, 75])
        errs.append(est / meas - 1)
        line = f"{j:>3} {est:>8.2f}ms {meas:>8.2f}ms {errs[-1]:>+7.1%} {(q3 - q1) / meas:>7.1%}"
        if interleaved:
            errs_i.append(est / interleaved[str(a)] - 1)
            line += f" {interleaved[str(a)]:>10.2f}ms {errs_i[-1]:>+7.1%}"
        print(f"{line}  {a}")
    load1 = os.getloadavg()
    for name, e in (("measured after profiling", errs), ("measured interleaved with profiling", errs_i)):
        if e:
            e = np.abs(e)
            print(f"|error| {name}: mean {e.mean():.1%}, median {np.median(e):.1%}, max {e.max():.1%}; "
                  f"within 10%: {int((e <= 0.10).sum())}/{len(e)}")
    contended = max(load0[0], load1[0]) > 2
    print(f"load average {load0[0]:.2f} -> {load1[0]:.2f} on {os.cpu_count()} CPUs"
          + ("  (CONTENDED: > 2, figures disturbed by other jobs)" if contended else ""))


if __name__ == "__main__":
    main()
