"""``lighttrack data synth`` (write the embedded dataset) and ``lighttrack data check`` (validate one)."""
from __future__ import annotations

import argparse
import os
import sys
import time
from lighttrack.commands.argtypes import count, positive_int

__all__ = ["register"]


def _unlike(args: argparse.Namespace) -> int:
    from lighttrack.data.synth_unlike import write_unlike
    root = write_unlike(args.out, args.seed, args.sequences)
    print(f"wrote {root}/val: {args.sequences} sequences unlike the embedded set (photographed objects, "
          "procedural backgrounds, straight runs with turns)")
    return 0


def _synth(args: argparse.Namespace) -> int:
    from lighttrack.data import synth
    if args.size not in synth.SIZES:
        raise ValueError(f"--size must be one of {sorted(synth.SIZES)}, got {args.size!r}")
    start = time.perf_counter()
    summary = synth.write(args.out, args.seed, args.size, args.workers, args.difficulty)
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


def _index(args: argparse.Namespace) -> int:
    from lighttrack.data import fs, index
    start = time.perf_counter()
    if args.kind == "imagenet":
        splits = [args.split] if args.split else ["train", "val"]  # both unless one is named
        for split in splits:
            table = index.build_class_index(fs.join(args.root, split))
            out = args.out if args.out and len(splits) == 1 else index.default_index(args.root, "imagenet", split)
            index.write_index(table, out)
            print(f"{out}: {table.num_rows} images in {len(set(table['label'].to_pylist()))} classes")
    else:
        split = args.split or "train"
        table = index.build_index(args.kind, args.root, split, args.workers, args.skip_bad, progress=not args.quiet)
        out = args.out or index.default_index(args.root, args.kind, split)
        index.write_index(table, out)
        meta = index.table_meta(table)
        print(f"{out}: {table.num_rows} tracks from {meta['units']} units, {meta['frames']} frames"
              + (f", {len(meta['skipped'])} unit(s) skipped" if meta["skipped"] else ""))
    print(f"indexed in {time.perf_counter() - start:.1f} s")
    return 0


def register(subparsers) -> None:
    parser = subparsers.add_parser("data", help="write the embedded dataset or check a dataset")
    sub = parser.add_subparsers(dest="data_command", required=True)
    p = sub.add_parser("synth", help="write the embedded GOT-10k-layout and ImageNet-layout datasets")
    p.add_argument("--out", required=True, help="output folder (gets got10k/ and imagenet/)")
    p.add_argument("--seed", type=count, default=0)
    p.add_argument("--size", default="default", help="default, tiny or small")
    p.add_argument("--difficulty", default=None,
                   help="easy, medium, hard or mixed (by turns in every split); default: the size's (medium)")
    p.add_argument("--workers", type=positive_int, default=min(4, os.cpu_count() or 1), help="processes")
    p.set_defaults(func=_synth)
    p = sub.add_parser("unlike", help="write check sequences built unlike the embedded set (GOT-10k val layout)")
    p.add_argument("--out", required=True, help="output folder (gets got10k/val)")
    p.add_argument("--seed", type=count, default=0)
    p.add_argument("--sequences", type=positive_int, default=10)
    p.set_defaults(func=_unlike)
    p = sub.add_parser("check", help="report every problem in a dataset (exit 1 if any)")
    p.add_argument("root", help="dataset folder or pyarrow.fs URI")
    p.add_argument("--quick", action="store_true", help="do not decode every image")
    p.set_defaults(func=_check)
    from lighttrack.data.index import TRACKING_KINDS
    p = sub.add_parser("index", help="build the Parquet index of a dataset split (read by every job)")
    p.add_argument("root", help="dataset root: local path or pyarrow.fs URI")
    p.add_argument("--kind", default="got10k", choices=(*TRACKING_KINDS, "imagenet"))
    p.add_argument("--split", default="",
                   help="split (GOT-10k/VID/DET: train (default), val; COCO: train2017; crop511: the JSON's name; "
                        "imagenet: train or val, both by default)")
    p.add_argument("--out", default="", help="index location (default <root>/.index/<kind>-<split>.parquet)")
    p.add_argument("--workers", type=positive_int, default=min(8, os.cpu_count() or 1), help="parser processes")
    p.add_argument("--skip-bad", action="store_true", help="leave out units with problems (listed) instead of failing")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_index)
