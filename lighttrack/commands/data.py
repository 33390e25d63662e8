"""``lighttrack data synth`` (write the embedded dataset) and ``lighttrack data check`` (validate one)."""
from __future__ import annotations

import argparse
import os
import sys
import time

__all__ = ["register"]


def _synth(args: argparse.Namespace) -> int:
    from lighttrack.data import synth
    if args.size not in synth.SIZES:
        raise ValueError(f"--size must be one of {sorted(synth.SIZES)}, got {args.size!r}")
    start = time.perf_counter()
    summary = synth.write(args.out, args.seed, args.size, args.workers)
    s = summary["size"]
    print(f"wrote {args.out}: got10k train/val/test {s['train']}/{s['val']}/{s['test']} sequences "
          f"({s['frames'][0]}-{s['frames'][1]} frames), imagenet {len(summary['classes'])} classes x "
          f"{s['cls_train']}/{s['cls_val']} images in {time.perf_counter() - start:.1f} s")
    return 0


def _check(args: argparse.Namespace) -> int:
    from lighttrack.data.check import check_dataset
    problems = check_dataset(args.root, decode=not args.quick)
    for p in problems:
        print(p)
    if problems:
        print(f"{args.root}: {len(problems)} problem(s)", file=sys.stderr)
        return 1
    print(f"{args.root}: ok")
    return 0


def register(subparsers) -> None:
    parser = subparsers.add_parser("data", help="write the embedded dataset or check a dataset")
    sub = parser.add_subparsers(dest="data_command", required=True)
    p = sub.add_parser("synth", help="write the embedded GOT-10k-layout and ImageNet-layout datasets")
    p.add_argument("--out", required=True, help="output folder (gets got10k/ and imagenet/)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--size", default="default", help="default or tiny")
    p.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1), help="processes")
    p.set_defaults(func=_synth)
    p = sub.add_parser("check", help="report every problem in a dataset (exit 1 if any)")
    p.add_argument("root", help="dataset folder or pyarrow.fs URI")
    p.add_argument("--quick", action="store_true", help="do not decode every image")
    p.set_defaults(func=_check)
