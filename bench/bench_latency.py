"""Latency table vs measured end-to-end latency (issue 8; printed, never asserted).

    .venv/bin/python bench/bench_latency.py [--backend torch|onnxruntime] [--threads 1]
        [--clock wall|thread] [--repeats 30] [--archs 20] [--table table.json] [--json out.json]

Profiles this machine (or loads ``--table``), then for ``--archs`` random architectures
prints the latency estimated from the table against the measured median latency of the
static network's search branch (eval, inference mode, batch 1, same backend and threads).
The archs are measured round-robin, so a busy moment of a shared machine hits them all
alike. Goal: every estimate within 10%. The table's ``overhead_ms`` is a constant
calibrated once during profiling on its covering archs (never on these).
"""
from __future__ import annotations

import os
import time

import numpy as np
import torch

import harness

from lighttrack.arch import sample
from lighttrack.search.latency import LatencyTable
from lighttrack.search.profiler import _clock, _Prepared, profile


def main() -> None:
    p = harness.parser(__doc__, repeats=30)
    p.add_argument("--backend", default="torch", choices=("torch", "onnxruntime"))
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--clock", default="wall", choices=("wall", "thread"))
    p.add_argument("--archs", type=int, default=20)
    p.add_argument("--contexts", type=int, default=16, help="random archs profiled besides the covers")
    p.add_argument("--seed", type=int, default=123)
    p.add_argument("--table", help="use this table instead of profiling now")
    p.add_argument("--save-table", help="write the table profiled now here")
    args = p.parse_args()
    report = harness.Report("bench_latency", args)
    torch.set_num_threads(args.threads)
    load0 = os.getloadavg()
    t0 = time.perf_counter()
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
    report.figure("table overhead", table.overhead_ms, "ms", note=f"{args.backend}, {args.threads} thread(s), "
                  f"{args.clock} clock, calibrated on {len(table.calibration)} archs, {time.perf_counter() - t0:.0f} s")
    nets = [_Prepared(a, args.backend, args.threads, table.search_size, with_steps=False) for a in archs]
    tick = _clock(args.clock, args.threads)
    times: list[list[float]] = [[] for _ in nets]
    with torch.inference_mode():  # round-robin, the profiler's own clock: 3 rounds of warm-up
        for r in range(3 + args.repeats):
            for j, n in enumerate(nets):
                ms = n.run_whole(tick)
                if r >= 3:
                    times[j].append(ms)
    rows, errs, errs_i = [], [], []
    for j, (a, ts) in enumerate(zip(archs, times)):
        t = harness.Timing(tuple(ts))  # in ms
        est = table.estimate(a)
        errs.append(est / t.median - 1)
        row = {"#": j, "estimated_ms": est, "measured_ms": t.median, "error": errs[-1], "iqr/median": t.iqr / t.median}
        if interleaved:
            errs_i.append(est / interleaved[str(a)] - 1)
            row.update({"interleaved_ms": interleaved[str(a)], "interleaved_error": errs_i[-1]})
        rows.append({**row, "arch": str(a)})
    print()
    report.table("archs", rows, estimated_ms=".2f", measured_ms=".2f", interleaved_ms=".2f", error="+.1%",
                 interleaved_error="+.1%", **{"iqr/median": ".1%"})
    load1 = os.getloadavg()
    for name, e in (("measured after profiling", errs), ("measured interleaved with profiling", errs_i)):
        if e:
            e = np.abs(e)
            report.figure(f"|error| {name}, mean", round(100 * float(e.mean()), 1), "%",
                          note=f"median {np.median(e):.1%}, max {e.max():.1%}; within 10%: "
                          f"{int((e <= 0.10).sum())}/{len(e)}", median=float(np.median(e)), max=float(e.max()),
                          within_10=int((e <= 0.10).sum()), archs=len(e))
    contended = max(load0[0], load1[0]) > 2
    report.figure("load average at the end", load1[0], note=f"{load0[0]:.2f} at the start, {os.cpu_count()} CPUs"
                  + ("; CONTENDED: > 2, figures disturbed by other jobs" if contended else ""))


if __name__ == "__main__":
    main()
