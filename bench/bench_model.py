"""Model speed figures (printed, never asserted).

    .venv/bin/python bench/bench_model.py [--archs 50] [--iters 20]

1. ComplexityTable lookup per candidate vs one full fvcore count (and agreement on N archs).
2. CPU forward time of the LightTrack-Mobile static search branch (256x256, template
   features precomputed), at 1 and 2 threads: eager (train-time module, eval mode) vs
   deployment (eval + BN folded + channels_last + inference_mode).
"""
from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import torch

from lighttrack.arch import resolve, sample
from lighttrack.models import StaticTracker, fold_bn
from lighttrack.models.complexity import ComplexityTable, count
from lighttrack.search.budget import CostModel


def bench_lut(n_archs: int) -> None:
    table = ComplexityTable.default()
    rng = np.random.default_rng(0)
    archs = [sample(rng) for _ in range(20000)]
    # process CPU time: robust to other jobs sharing the machine (both parts are single-threaded)
    t = time.process_time()
    for a in archs:
        table.cost(a)
    lut_us = (time.process_time() - t) / len(archs) * 1e6
    costs, t = CostModel(table), time.process_time()  # what the search calls: MACs + params, keys read once
    for a in archs:
        costs(a)
    model_us = (time.process_time() - t) / len(archs) * 1e6
    mismatches, t = 0, time.process_time()
    for a in archs[:n_archs]:
        c = count(a)
        mismatches += table.cost(a) != (c.params, c.macs, c.conv_macs)
    fv_ms = (time.process_time() - t) / n_archs * 1e3
    print(f"LUT check: {lut_us:.1f} us/candidate (search CostModel, first call: {model_us:.1f} us); fvcore count: {fv_ms:.0f} ms/candidate "
          f"({fv_ms * 1e3 / lut_us:.0f}x); LUT == fvcore on {n_archs - mismatches}/{n_archs} random archs")


def _time(fn, iters: int) -> float:
    """Median wall time in ms (the median resists other jobs on a shared machine)."""
    for _ in range(3):
        fn()
    times = []
    for _ in range(iters):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times)) * 1e3


def bench_forward(iters: int) -> None:
    a = resolve("lighttrack-mobile")
    net = StaticTracker.build(a).eval()
    zf, x = torch.randn(1, a.out_channels, 8, 8), torch.randn(1, 3, 256, 256)
    folded = fold_bn(net)
    deploy = fold_bn(net).to(memory_format=torch.channels_last)
    zf_cl, x_cl = zf.contiguous(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        ref, out = net.search(zf, x), deploy.search(zf_cl, x_cl)
    diff = max((r - o).abs().max().item() for r, o in zip(ref, out))
    print(f"folded+channels_last max abs diff vs eager: {diff:.2e}")
    for threads in (1, 2):
        torch.set_num_threads(threads)

        def eager() -> None:
            with torch.no_grad():
                net.search(zf, x)

        def folded_only() -> None:
            with torch.inference_mode():
                folded.search(zf, x)

        def deployed() -> None:
            with torch.inference_mode():
                deploy.search(zf_cl, x_cl)

        print(f"LightTrack-Mobile search branch, {threads} thread(s), wall ms/frame: "
              f"eager eval {_time(eager, iters):.1f}; folded+inference_mode {_time(folded_only, iters):.1f}; "
              f"folded+channels_last+inference_mode {_time(deployed, iters):.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", type=int, default=50, help="random archs for the fvcore comparison")
    parser.add_argument("--iters", type=int, default=20, help="timed forward passes")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s) for the LUT part")
    bench_lut(args.archs)
    bench_forward(args.iters)


if __name__ == "__main__":
    main()
