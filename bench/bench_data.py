"""Data figures: processed pairs per second per CPU core, and the embedded dataset's bars.

    python bench/bench_data.py [--root DIR] [--size default|tiny] [--parts pairs,stats,classify]
        [--repeats 1] [--json out.json]

Without ``--root`` the embedded dataset is generated into a temporary folder first.
- pairs: single process, 1 thread: OpenCV JPEG decode + crops + augmentation + labels per pair
  (300 pairs, ``--repeats`` times: the median pass).
- stats: on GOT-10k val, AO of a tracker that stays at the first box, computed by the official
  ``got10k`` toolkit (ExperimentGOT10k + IdentityTracker); fraction of frames partly covered
  (cover 1..7) and absent over train+val.
- classify: validation accuracy of a linear classifier on raw pixels vs a small CNN, same
  budget of epochs, on ``imagenet/`` at 64 px.
"""
from __future__ import annotations

import contextlib
import io
import os
import tempfile
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

import harness

from lighttrack.data import synth
from lighttrack.data.classification import ImageFolderCV, eval_transform
from lighttrack.data.readers import Got10k
from lighttrack.data.sampling import PairDataset, PairSource


def bench_pairs(root: Path, report: harness.Report, repeats: int = 1, n: int = 300) -> float:
    ds = PairDataset([PairSource(Got10k(root / "got10k", "train"), 100, n, "got10k")], seed=0)
    ds[0]  # warm caches (imports, first file reads)
    t = harness.timeit(lambda: [ds[i] for i in range(n)], repeats, warmup=0)
    cpu_rate = n / t.cpu_median  # per CPU-second: robust to a shared machine
    report.figure("pairs", cpu_rate, "pairs per CPU-second", wall_per_s=n / t.median,
                  note=f"{n / t.median:.1f}/s wall; one process, 1 thread: JPEG decode + crop + augment + labels, "
                  f"{n} pairs")
    return cpu_rate


def bench_stats(root: Path, report: harness.Report) -> dict:
    from got10k.experiments import ExperimentGOT10k
    from got10k.trackers import IdentityTracker
    with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(io.StringIO()):
        exp = ExperimentGOT10k(str(root / "got10k"), subset="val", result_dir=f"{tmp}/results",
                               report_dir=f"{tmp}/reports")
        exp.run(IdentityTracker())
        overall = exp.report(["IdentityTracker"])["IdentityTracker"]["overall"]
    covers = []
    for split in ("train", "val"):
        r = Got10k(root / "got10k", split)
        covers += [r.meta(i)["cover"] for i in range(len(r))]
    c = np.concatenate(covers)
    out = {"identity_ao": overall["ao"], "identity_sr50": overall["sr"] if "sr" in overall else None,
           "partly_covered": float(((c > 0) & (c < 8)).mean()), "absent": float((c == 0).mean()),
           "frames": int(len(c))}
    report.figure("stats: val AO of a tracker staying at the first box (got10k toolkit)", out["identity_ao"],
                  note="bar <= 0.35", sr50=out["identity_sr50"])
    report.figure("stats: partly covered frames, train+val", 100 * out["partly_covered"], "%",
                  note=f"of {out['frames']}; bar >= 10%")
    report.figure("stats: absent frames, train+val", 100 * out["absent"], "%", note=f"of {out['frames']}; bar >= 2%")
    return out


def _tensors(folder: Path, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    ds = ImageFolderCV(str(folder), eval_transform(size))
    xs, ys = zip(*(ds[i] for i in range(len(ds))))
    return torch.stack(xs), torch.tensor(ys)


def _fit(model: nn.Module, x, y, xv, yv, epochs: int, lr: float, seed: int = 0) -> float:
    torch.manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    for _ in range(epochs):
        model.train()
        perm = torch.randperm(len(x))
        for k in range(0, len(x), 64):
            idx = perm[k:k + 64]
            xb = x[idx]
            if torch.rand(()) < 0.5:
                xb = xb.flip(-1)
            loss = nn.functional.cross_entropy(model(xb), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        return float((model(xv).argmax(1) == yv).float().mean())


def bench_classify(root: Path, report: harness.Report, size: int = 64, epochs: int = 15) -> tuple[float, float]:
    x, y = _tensors(root / "imagenet" / "train", size)
    xv, yv = _tensors(root / "imagenet" / "val", size)
    k = int(y.max()) + 1
    linear = nn.Sequential(nn.Flatten(), nn.Linear(3 * size * size, k))
    cnn = nn.Sequential(
        nn.Conv2d(3, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(64, 96, 3, padding=1), nn.BatchNorm2d(96), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(96, 128, 3, padding=1), nn.BatchNorm2d(128), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(128, k))
    t = harness.timeit(lambda: (_fit(linear, x, y, xv, yv, epochs, 1e-3), _fit(cnn, x, y, xv, yv, epochs, 3e-3)),
                       warmup=0)
    acc_lin, acc_cnn = t.result
    report.compare("classify: validation accuracy", ("small CNN", 100 * acc_cnn),
                   ("linear on raw pixels", 100 * acc_lin), "%", note=f"{k} classes, {len(x)} train / {len(xv)} val images at {size}px, {epochs} epochs; "
                   f"chance {1 / k:.0%}; {t.median:.0f} s")
    return acc_lin, acc_cnn


def main() -> None:
    p = harness.parser(__doc__, repeats=1)
    p.add_argument("--root", help="embedded dataset folder (default: generate one)")
    p.add_argument("--size", default="default")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--parts", default="pairs,stats,classify")
    p.add_argument("--epochs", type=int, default=15)
    args = p.parse_args()
    report = harness.Report("bench_data", args)
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.root) if args.root else Path(tmp)
        if not args.root:
            t = harness.timeit(lambda: synth.write(root, args.seed, args.size, workers=1), warmup=0)
            report.figure(f"synth: {args.size} dataset written", t.median, "s",
                          note=f"1 process, {os.cpu_count()} CPUs visible")
        parts = args.parts.split(",")
        if "pairs" in parts:
            bench_pairs(root, report, args.repeats)
        if "stats" in parts:
            bench_stats(root, report)
        if "classify" in parts:
            bench_classify(root, report, epochs=args.epochs)


if __name__ == "__main__":
    main()
