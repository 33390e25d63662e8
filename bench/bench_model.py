"""Model speed figures (printed, never asserted).

    .venv/bin/python bench/bench_model.py [--archs 50] [--repeats 20] [--json out.json]

1. ComplexityTable lookup per candidate vs one full fvcore count (and agreement on N archs).
2. CPU forward time of the LightTrack-Mobile static search branch (256x256, template
   features precomputed), at 1 and 2 threads: eager (train-time module, eval mode) vs
   deployment (eval + BN folded + channels_last + inference_mode), ``--repeats`` timed passes
   after 3 of warm-up (``--iters``: the same flag's former name).
"""
from __future__ import annotations

import argparse
import warnings

import numpy as np
import torch

import harness

from lighttrack.arch import resolve, sample
from lighttrack.models import StaticTracker, fold_bn
from lighttrack.models.complexity import ComplexityTable, count
from lighttrack.search.budget import CostModel


def bench_lut(n_archs: int, report: harness.Report) -> None:
    table = ComplexityTable.default()
    rng = np.random.default_rng(0)
    archs = [sample(rng) for _ in range(20000)]
    # process CPU time: robust to other jobs sharing the machine (all three are single-threaded);
    # no warm-up: the CostModel's figure is its first call on each arch, as the search meets them
    lut_us = harness.timeit(lambda: [table.cost(a) for a in archs], warmup=0).cpu_median / len(archs) * 1e6
    costs = CostModel(table)  # what the search calls: MACs + params, keys read once
    model_us = harness.timeit(lambda: [costs(a) for a in archs], warmup=0).cpu_median / len(archs) * 1e6

    def agrees(a) -> bool:  # one full fvcore count, and the table's answer beside it
        c = count(a)
        return table.cost(a) == (c.params, c.macs, c.conv_macs)

    fv = harness.timeit(lambda: [agrees(a) for a in archs[:n_archs]], warmup=0)
    fv_us = fv.cpu_median / n_archs * 1e6
    report.compare("cost per candidate, CPU time", ("LUT", lut_us), ("fvcore count", fv_us), "us", old_over_new=True)
    report.figure("search CostModel, first call", model_us, "us")
    report.figure("LUT == fvcore", f"{sum(fv.result)}/{n_archs}", "random archs")


def bench_forward(repeats: int, report: harness.Report) -> None:
    a = resolve("lighttrack-mobile")
    net = StaticTracker.build(a).eval()
    zf, x = torch.randn(1, a.out_channels, 8, 8), torch.randn(1, 3, 256, 256)  # template features, search crop
    folded = fold_bn(net)
    deploy = fold_bn(net).to(memory_format=torch.channels_last)
    zf_cl, x_cl = zf.contiguous(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        ref, out = net.search(zf, x), deploy.search(zf_cl, x_cl)
    diff = max((r - o).abs().max().item() for r, o in zip(ref, out))
    report.figure("folded+channels_last max abs diff vs eager", diff)
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

        # median wall time: the median resists other jobs on a shared machine
        t = {name: harness.timeit(fn, repeats, warmup=3) for name, fn in
             (("eager", eager), ("folded", folded_only), ("deployed", deployed))}
        name = f"LightTrack-Mobile search branch, {threads} thread(s), wall ms/frame"
        report.figure(f"{name}, folded+inference_mode", t["folded"].median * 1e3, "ms",
                      spread=t["folded"].iqr * 1e3)
        report.compare(name, ("deployed", t["deployed"].median * 1e3), ("eager eval", t["eager"].median * 1e3), "ms",
                       old_over_new=True, note=f"deployed: folded+channels_last+inference_mode; IQR "
                       f"{t['deployed'].iqr * 1e3:.1f} / {t['eager'].iqr * 1e3:.1f} ms")


def main() -> None:
    parser = harness.parser(__doc__, repeats=20)
    parser.add_argument("--iters", dest="repeats", type=int, default=argparse.SUPPRESS,
                        help="the same as --repeats (its former name)")
    parser.add_argument("--archs", type=int, default=50, help="random archs for the fvcore comparison")
    args = parser.parse_args()
    report = harness.Report("bench_model", args)
    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s) for the LUT part")
    bench_lut(args.archs, report)
    bench_forward(args.repeats, report)


if __name__ == "__main__":
    main()
