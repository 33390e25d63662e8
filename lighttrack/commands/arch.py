"""``lighttrack arch``: inspect and sample architectures of the search space.

    lighttrack arch info lighttrack-mobile            # params, MACs, per-layer table
    lighttrack arch info 'bb:...+cls:...+reg:...' --json
    lighttrack arch sample --n 5 --flops-max 600M --params-max 2M --seed 0
    lighttrack arch profile --backend torch --threads 1 --out table.json   # latency table
    lighttrack arch latency --table table.json --arch lighttrack-mobile    # measured vs table
"""
from __future__ import annotations

import argparse
import json

import numpy as np

from lighttrack.arch import PRESETS, resolve, sample
from lighttrack.commands.argtypes import count, positive_int

__all__ = ["register"]

MAX_TRIES = 20_000  # rejection-sampling attempts before a budget is declared infeasible


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("arch", help="inspect and sample architectures")
    sub = parser.add_subparsers(dest="arch_command", required=True)

    info = sub.add_parser("info", help="params, MACs and a per-layer table (fvcore)")
    info.add_argument("arch", help=f"a preset ({', '.join(PRESETS)}) or an architecture string")
    info.add_argument("--json", action="store_true", help="print one JSON object")
    info.set_defaults(func=_info)

    smp = sub.add_parser("sample", help="random architectures within budgets")
    smp.add_argument("--n", type=positive_int, default=1, help="how many")
    smp.add_argument("--flops-max", default=None, help="MAC budget, e.g. 600M (paper 'FLOPs')")
    smp.add_argument("--params-max", default=None, help="parameter budget, e.g. 2M")
    smp.add_argument("--seed", type=count, default=None, help="random seed")
    smp.add_argument("--space", choices=("paper", "wide"), default="paper",
                     help="output layers: the paper's last 8 blocks, or also stage 2 (stride 8)")
    smp.add_argument("--json", action="store_true", help="one JSON object per line")
    smp.set_defaults(func=_sample)

    from lighttrack.commands.profile import add_latency_parser, add_profile_parser  # latency tables (search)
    add_profile_parser(sub)
    add_latency_parser(sub)


def _info(args: argparse.Namespace) -> int:
    from lighttrack.models.complexity import count, format_quantity

    arch = resolve(args.arch)
    c = count(arch)
    if args.json:
        print(json.dumps({
            "arch": str(arch), "released": arch.to_released(), "params": c.params, "macs": c.macs,
            "conv_macs": c.conv_macs, "out_channels": arch.out_channels, "stride": arch.stride,
            "layers": [{"name": r.name, "params": r.params, "macs": r.macs, "conv_macs": r.conv_macs}
                       for r in c.table]}))
        return 0
    print(f"arch:      {arch}")
    print(f"released:  {arch.to_released()}")
    print(f"output:    block {arch.out_block + 1}, {arch.out_channels} channels, stride {arch.stride}"
          f"{'' if arch.stride == 16 else ' (wide space only)'}")
    print(f"params:    {c.params:,} ({format_quantity(c.params)})")
    print(f"MACs:      {c.macs:,} ({format_quantity(c.macs)}; fvcore total, search branch at 256x256)")
    print(f"conv MACs: {c.conv_macs:,} ({format_quantity(c.conv_macs)}; convolutions + correlation matmul)")
    print()
    print(c.format_table())
    return 0


def _sample(args: argparse.Namespace) -> int:
    from lighttrack.models.complexity import ComplexityTable, format_quantity, parse_quantity

    if args.n < 1:
        raise ValueError(f"--n must be >= 1, got {args.n}")
    macs_max = None if args.flops_max is None else parse_quantity(args.flops_max)
    params_max = None if args.params_max is None else parse_quantity(args.params_max)
    table = ComplexityTable.default()
    min_params, min_macs, _ = table.cost(resolve("smallest"))  # every cost is >= the smallest's
    if (macs_max is not None and macs_max < min_macs) or (params_max is not None and params_max < min_params):
        raise ValueError(f"the budget is too tight: the smallest architecture has {min_macs:,} MACs "
                         f"and {min_params:,} params")
    rng = np.random.default_rng(args.seed)
    found, tries = 0, 0
    while found < args.n:
        if tries >= MAX_TRIES:
            raise ValueError(f"no architecture within --flops-max {args.flops_max} --params-max "
                             f"{args.params_max} in {MAX_TRIES} random draws; the budget is too tight")
        tries += 1
        arch = sample(rng, args.space)
        params, macs, conv_macs = table.cost(arch)
        if (macs_max is not None and macs > macs_max) or (params_max is not None and params > params_max):
            continue
        found += 1
        if args.json:
            print(json.dumps({"arch": str(arch), "params": params, "macs": macs, "conv_macs": conv_macs}))
        else:
            print(f"{arch}  params={format_quantity(params)} macs={format_quantity(macs)}")
    return 0
