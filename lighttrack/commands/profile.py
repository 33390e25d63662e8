"""``lighttrack arch profile``: measure this machine's latency table for latency budgets.

    lighttrack arch profile --runtime torch --threads 1 --out table.json
    lighttrack arch profile --runtime openvino --threads 2 --repeats 50 --out table.json

Run it once on the target device, for the runtime the tracker will be deployed on (each
block is built with that runtime's converter, as ``lighttrack export`` builds the whole
network); then ``python -m ray_jobs.search --budget 600M,2M,8ms@openvino --latency-table
table.json`` estimates every candidate's latency from the table.

    lighttrack arch latency --table table.json --arch ARCH [ARCH ...]

measures the architectures' whole search branch on the same device as the table was
(its runtime and threads) beside the table's estimate: the check of a found tracker's
latency budget (goal within 10 %).
"""
from __future__ import annotations

import argparse
from pathlib import Path
from lighttrack.commands.argtypes import count, positive_int

__all__ = ["add_profile_parser", "add_latency_parser"]


def add_profile_parser(arch_subparsers: argparse._SubParsersAction) -> None:
    p = arch_subparsers.add_parser("profile", help="measure per-block latencies into a table (latency budgets)")
    from lighttrack.search.profiler import BACKENDS

    p.add_argument("--runtime", "--backend", dest="backend", choices=BACKENDS, default="torch",
                   help="runtime to time (default torch; --backend is its older name)")
    p.add_argument("--threads", type=positive_int, default=1, help="intra-op threads, as deployed (default 1)")
    p.add_argument("--out", required=True, help="table JSON to write")
    p.add_argument("--repeats", type=positive_int, default=30, help="timed forwards per entry (median taken); on a shared "
                   "or noisy machine use ~100 (a 2-core VM with a 20-30%% spread needed it for 20/20 within 10%%)")
    p.add_argument("--warmup", type=count, default=3, help="untimed forwards first")
    p.add_argument("--search-size", type=positive_int, default=256, help="search crop side (multiple of 16)")
    p.add_argument("--contexts", type=positive_int, default=16,
                   help="random archs timed block by block besides the covering ones (default 16)")
    p.add_argument("--clock", choices=("wall", "thread"), default="wall",
                   help="wall time, or the thread's CPU time (1 thread; robust on a shared machine)")
    p.add_argument("--space", choices=("paper", "wide"), default="paper",
                   help="'wide' also times the stride-8 (stage-2 output) neck and heads")
    p.set_defaults(func=_profile)


def _profile(args: argparse.Namespace) -> int:
    from lighttrack.arch import resolve
    from lighttrack.search.profiler import profile

    out = Path(args.out)
    if not out.parent.is_dir():
        raise FileNotFoundError(f"--out {out}: directory {out.parent} does not exist")
    table = profile(args.backend, args.threads, args.repeats, args.warmup, args.search_size,
                    args.clock, log=print, contexts=args.contexts, space=args.space)
    table.save(out)
    load = table.machine.get("load_average")
    for name in ("smallest", "lighttrack-mobile", "largest"):
        print(f"{name:<18} estimated {table.estimate(resolve(name)):8.2f} ms")
    print(f"wrote {out} ({args.backend}, {args.threads} thread(s), {args.clock} clock, "
          f"overhead {table.overhead_ms:+.2f} ms)")
    if load and load[0] > 2:
        print(f"note: load average {load[0]} > 2: the figures are contended by other processes")
    return 0


def add_latency_parser(arch_subparsers: argparse._SubParsersAction) -> None:
    p = arch_subparsers.add_parser("latency", help="measured latency of architectures beside a table's estimate")
    p.add_argument("--table", required=True, help="latency table JSON (lighttrack arch profile)")
    p.add_argument("--arch", nargs="+", required=True, help="preset names or architecture strings")
    p.add_argument("--repeats", type=positive_int, default=30, help="timed forwards per arch (median taken)")
    p.add_argument("--tolerance", type=float, default=0.10, help="relative error called within (default 0.10)")
    p.set_defaults(func=_latency)


def _latency(args: argparse.Namespace) -> int:
    from lighttrack.arch import resolve
    from lighttrack.search.latency import LatencyTable
    from lighttrack.search.profiler import check_latency, latency_line, not_here

    table = LatencyTable.load(args.table)
    why = not_here(table)
    if why:
        print(f"note: {why}: the check means something only on the table's device")
    for r in check_latency(table, [resolve(a) for a in args.arch], args.repeats, tolerance=args.tolerance):
        print(f"{r['arch']}: {latency_line(r, table, args.tolerance)}")
    return 0
