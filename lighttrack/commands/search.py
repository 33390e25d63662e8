"""``lighttrack search``: what the evaluation cache of a search knows.

    lighttrack search predictor --cache runs/.../eval_cache [--rows 50,200] [--kind gp,gbm]

``predictor`` fits the accuracy predictor (``lighttrack.search.predictor``) on N random
whole-split rows of one supernet and settings and reports its Kendall tau on the rows it
did not see, over ``--repeats`` random splits (mean, standard deviation, min and max).
"""
from __future__ import annotations

import argparse
import json
from collections import Counter

import numpy as np

from lighttrack.commands.argtypes import positive_int

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("search", help="inspect a search's evaluation cache")
    sub = parser.add_subparsers(dest="search_command", required=True)
    p = sub.add_parser("predictor", help="held-out Kendall tau of the accuracy predictor fitted on the cache")
    p.add_argument("--cache", required=True, help="evaluation cache directory or URI (s3://..., file://...)")
    p.add_argument("--supernet-id", help="whose rows (default: the supernet and settings with the most rows)")
    p.add_argument("--settings-id", help="evaluation settings id (with --supernet-id)")
    p.add_argument("--rows", default="50,200", help="training rows, comma-separated (each below the rows there)")
    p.add_argument("--kind", default="gp,gbm", help="models to fit: gp, gbm or both (comma-separated)")
    p.add_argument("--repeats", type=positive_int, default=5, help="random train/held-out splits per size")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=_predictor)


def _predictor(args) -> int:
    from lighttrack.arch import PAPER, SPACES, parse
    from lighttrack.search.cache import EvalCache
    from lighttrack.search.predictor import heldout_tau

    cache = EvalCache(args.cache)
    rows = cache.rows()
    if not rows:
        raise ValueError(f"{args.cache}: no whole-split rows in this evaluation cache")
    groups = Counter((r["supernet_id"], r["settings_id"]) for r in rows)
    if args.supernet_id:
        key = next((k for k, _ in groups.most_common() if k[0] == args.supernet_id
                    and (not args.settings_id or k[1] == args.settings_id)), None)
        if key is None:
            raise ValueError(f"{args.cache}: no rows of supernet {args.supernet_id}"
                             f"{' and settings ' + args.settings_id if args.settings_id else ''}; it has "
                             + ", ".join(f"{s}/{e} ({n} rows)" for (s, e), n in groups.most_common()))
    else:
        key = groups.most_common(1)[0][0]
    rows = [r for r in rows if (r["supernet_id"], r["settings_id"]) == key]
    try:
        sizes = [int(n) for n in args.rows.split(",")]
    except ValueError:
        raise ValueError(f"--rows {args.rows!r}: give numbers, e.g. 50,200") from None
    kinds = args.kind.split(",")
    space = PAPER if all(PAPER.contains(parse(r["arch"])) for r in rows) else SPACES["wide"]
    out = {"cache": args.cache, "supernet_id": key[0], "settings_id": key[1], "rows": len(rows),
           "space": space.name, "repeats": args.repeats, "tau": {}}
    for kind in kinds:
        taus = heldout_tau(rows, sizes, space, kind, args.repeats, args.seed)
        out["tau"][kind] = {n: {"mean": float(np.mean(t)), "std": float(np.std(t)), "min": float(np.min(t)),
                                "max": float(np.max(t)), "heldout": len(rows) - n} for n, t in taus.items()}
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    print(f"{args.cache}: {len(rows)} whole-split rows of supernet {key[0]}, settings {key[1]}")
    for kind, by_n in out["tau"].items():
        for n in sizes:
            t = by_n.get(n)
            print(f"  {kind:>3} fitted on {n:>4} rows: " + (
                f"held-out tau {t['mean']:+.3f} +- {t['std']:.3f} (min {t['min']:+.3f}, max {t['max']:+.3f}; "
                f"{t['heldout']} held out, {args.repeats} splits)" if t else f"not enough rows (has {len(rows)})"))
    return 0
