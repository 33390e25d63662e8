"""Data at real scale: start-up with and without the index, and the loader's pairs per CPU-second.

    python bench/bench_data_scale.py [--work DIR] [--parts startup,loader,s3] [--lasot]
        [--pairs 300] [--repeats 1] [--json out.json]

startup: writes a GOT-10k train split of the real size (9,335 sequences x 150 frames; with
  ``--lasot`` also LaSOT's 1,400 x 2,500) whose frames are hard links to a few 1280x720
  JPEGs made from scikit-image's photographs (``real_size``), then, each in a fresh
  process, the time and peak memory to the first pair: today's path (every annotation
  read, every frame stat-ed) against the index; and the index build (``lighttrack data
  index --workers 2``).
loader: pairs per CPU-second in one process at one thread, side by side: the processing
  this issue replaced (float colour jitter and normalisation, full-size decode) and
  today's, on the embedded 320x240 frames and on the 1280x720 frames (``--pairs`` pairs,
  the median of ``--repeats`` passes); then how many loader processes one GPU step needs
  (``--gpu-step-ms`` for a batch of ``--batch``).
s3: the same pairs read from an S3-compatible server on 127.0.0.1 (moto), index included.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

import harness
from real_size import write_got10k, write_lasot  # write_got10k: also scripts/gpu_check.py's, from here

ROOT = Path(__file__).resolve().parents[1]

from lighttrack.data.processing import PairProcessor, ProcessingConfig
from lighttrack.data.sampling import PairDataConfig, PairDataset, PairSource, SourceConfig, build_pair_dataset
from lighttrack import geometry


# ------------------------------------------------------------------ start-up, each in a fresh process

_PROBE = r"""
import json, resource, sys, time, tracemalloc
import pyarrow.parquet  # its code is loaded by the imports either way
from lighttrack.data.sampling import PairDataConfig, SourceConfig, build_pair_dataset
root, kind, index, heap = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] == "heap"
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
if heap:  # a run of its own: tracemalloc slows what it watches
    tracemalloc.start()
t = time.perf_counter()
ds = build_pair_dataset(PairDataConfig(sources=[SourceConfig(root=root, kind=kind, index=index, pairs_per_epoch=100)]))
ds[0]
dt = time.perf_counter() - t
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"seconds": dt, "peak_mb": peak / 1024, "added_mb": (peak - base) / 1024,
                  "python_mb": tracemalloc.get_traced_memory()[1] / 1e6 if heap else float("nan"),
                  "reader": type(ds.sources[0].reader).__name__}))
"""


def _probe(root: Path, kind: str, index: str = "", heap: bool = False) -> dict:
    out = subprocess.run([sys.executable, "-c", _PROBE, str(root), kind, index, "heap" if heap else "-"],
                         capture_output=True, text=True,
                         cwd=ROOT, env=os.environ | {"PYTHONPATH": str(ROOT)})
    if out.returncode:
        raise RuntimeError(out.stderr[-3000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def bench_startup(work: Path, lasot: bool, report: harness.Report) -> None:
    sets = [("got10k", write_got10k, (9335, 150))] + ([("lasot", write_lasot, (1400, 2500))] if lasot else [])
    for kind, write, (n, f) in sets:
        root = work / f"{kind}-{n}x{f}"
        t = harness.timeit(lambda: write(root, n, f), warmup=0)
        print(f"startup[{kind}]: {n} sequences x {f} frames at {root} (written in {t.median:.0f} s)")
        index = root / ".index" / f"{kind}-train.parquet"
        index.unlink(missing_ok=True)
        direct = _probe(root, kind)
        built = harness.timeit(lambda: subprocess.run(
            [sys.executable, "-m", "lighttrack.cli", "data", "index", str(root), "--kind", kind, "--workers", "2",
             "--quiet"], check=True, cwd=ROOT, capture_output=True), warmup=0).median
        indexed = _probe(root, kind, str(index))
        indexed["python_mb"] = _probe(root, kind, str(index), heap=True)["python_mb"]
        report.compare(f"startup[{kind}]: to the first pair", ("index", indexed["seconds"]),
                       ("direct", direct["seconds"]), "s", old_over_new=True, note="goal <= 2 s")
        report.compare(f"startup[{kind}]: peak RSS over the imports", ("index", indexed["added_mb"]),
                       ("direct", direct["added_mb"]), "MB", old_over_new=True,
                       note=f"goal <= 200 MB; peak RSS {indexed['peak_mb']:.0f} / {direct['peak_mb']:.0f} MB; index's "
                       f"Python heap peak {indexed['python_mb']:.0f} MB")
        report.figure(f"startup[{kind}]: index build", built, "s",
                      note=f"2 workers, {index.stat().st_size / 1e6:.1f} MB on disk")
        report.record(f"startup[{kind}]", {"direct": direct, "index": indexed, "index_build_s": built,
                                           "index_mb": index.stat().st_size / 1e6, "written_s": t.median})


# ------------------------------------------------------------------ loader speed

class LegacyProcessor(PairProcessor):
    """The per-pair work this issue replaced: float32 colour jitter over the whole crop and
    float normalisation on the CPU (the crops themselves are the same)."""

    def crops(self, z_img, z_box, x_img, x_box, rng):
        from lighttrack.data import processing as P
        c = self.cfg
        z, zb = P.augmented_crop(z_img, z_box, c.template_size, 1.0, c.template, rng, c.context, P._mean(z_img))
        x, xb = P.augmented_crop(x_img, x_box, c.search_size, c.search_size / c.template_size, c.search, rng,
                                 c.context, P._mean(x_img))
        if rng.random() < c.flip:
            (z, zb), (x, xb) = P._flip(z, zb), P._flip(x, xb)
        return self._photometric(z, c.template, rng), zb, self._photometric(x, c.search, rng), xb

    @staticmethod
    def _photometric(img, aug, rng):
        do_color, do_blur, do_gray = rng.random(3) < (aug.color, aug.blur, aug.gray)
        gains = rng.uniform(0.75, 1.25, 3)
        brightness, contrast = rng.uniform(-25, 25), rng.uniform(0.75, 1.25)
        sigma = rng.uniform(0.5, 2.0)
        if do_color:
            f = img.astype(np.float32) * gains
            f = (f - f.mean()) * contrast + f.mean() + brightness
            img = np.clip(f, 0, 255).astype(np.uint8)
        if do_blur:
            img = cv2.GaussianBlur(img, (0, 0), sigma)
        if do_gray:
            img = np.repeat(cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)[..., None], 3, axis=2)
        return img

    def __call__(self, z_img, z_box, x_img, x_box, rng):
        import torch
        item = super().__call__(z_img, z_box, x_img, x_box, rng)
        for k in ("template", "search"):  # normalised on the CPU by the float formula
            hwc = item[k].numpy().transpose(1, 2, 0)
            x = (hwc.astype(np.float32) / 255.0 - geometry.IMAGENET_MEAN) / geometry.IMAGENET_STD
            item[k] = torch.from_numpy(np.ascontiguousarray(np.moveaxis(x, -1, -3)))
        return item


def _rate(ds, n: int, repeats: int = 1) -> tuple[float, float]:
    """Pairs per CPU-second and per wall second over items 1..n (item 0 warms up), median pass."""
    ds[0]
    t = harness.timeit(lambda: [ds[i] for i in range(1, n + 1)], repeats, warmup=0)
    return n / t.cpu_median, n / t.median


def _dataset(reader, processor, n: int) -> PairDataset:
    return PairDataset([PairSource(reader, 100, n + 1, "bench")], processor, seed=0)


def bench_loader(work: Path, n: int, gpu_step_ms: float, batch: int, repeats: int, report: harness.Report) -> dict:
    import torch
    from lighttrack.data import synth
    from lighttrack.data.readers import Got10k
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    embedded = work / "embedded"
    if not (embedded / "got10k").exists():
        synth.write(embedded, seed=0, size="default", workers=2)
    big = write_got10k(work / "got10k-200x150", 200, 150, seed=3)
    rows = {}
    for name, root in (("embedded 320x240", embedded / "got10k"), ("1280x720", big)):
        reader = Got10k(root, "train")
        legacy = _dataset(reader, LegacyProcessor(ProcessingConfig(reduced_decode=False)), n)
        today = _dataset(reader, PairProcessor(ProcessingConfig()), n)
        full = _dataset(reader, PairProcessor(ProcessingConfig(reduced_decode=False)), n)
        (lc, lw), (tc, tw), (fc, fw) = _rate(legacy, n, repeats), _rate(today, n, repeats), _rate(full, n, repeats)
        rows[name] = tc
        report.compare(f"loader[{name}]: pairs per CPU-second at 1 thread", ("today", tc), ("replaced", lc),
                       note=f"full-size decode {fc:.1f}; goal >= 2x")
        report.record(f"loader[{name}] full-size decode", {"cpu_rate": fc, "wall_rates": [tw, lw, fw]})
    per_step = batch / (gpu_step_ms / 1000)
    worst = min(rows.values())
    report.figure("loader: processes one GPU step needs", int(np.ceil(per_step / worst)),
                  note=f"a step of {gpu_step_ms:.0f} ms for a batch of {batch} eats {per_step:.0f} pairs/s; 1 core "
                  f"each at {worst:.0f} pairs/s (pass --gpu-step-ms from a GPU run; scripts/gpu_check.sh measures it)")
    return rows


def bench_s3(work: Path, n: int, report: harness.Report) -> None:
    import torch
    from lighttrack.data.index import build_index, default_index, write_index
    sys.path.insert(0, str(ROOT))  # devcluster/ is the checkout's, not installed
    from devcluster.services import LocalS3
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    small = write_got10k(work / "got10k-12x40", 12, 40, seed=4)
    # hard links upload as separate objects: 480 frames of 1280x720 (about 100 kB each)
    server = LocalS3(work / "s3").start()
    try:
        os.environ.update(server.env)
        uri = server.upload(small, "got10k")
        built = harness.timeit(lambda: write_index(build_index("got10k", uri, "train"),
                                                   default_index(uri, "got10k", "train")), warmup=0).median
        for label, index in (("direct", None), ("index", default_index(uri, "got10k", "train"))):
            def first_pair():
                if index is None:
                    from lighttrack.data.readers import open_tracking
                    from lighttrack.data.check import check_reader
                    r = open_tracking("got10k", uri, "train")
                    check_reader(r, decode=False)
                ds = build_pair_dataset(PairDataConfig(sources=[SourceConfig(root=uri, index=index or "",
                                                                             pairs_per_epoch=n + 1)]))
                ds[0]
                return ds

            t = harness.timeit(first_pair, warmup=0)
            cpu, wall = _rate(t.result, n)
            report.figure(f"s3[{label}]: first pair after", t.median, "s", pairs_per_cpu_s=cpu, pairs_per_s=wall,
                          note=f"then {cpu:.1f} pairs per CPU-second, {wall:.1f} pairs/s wall in one process "
                          "(1280x720 frames from 127.0.0.1)")
        report.figure("s3: index built", built, "s", note="12 sequences")
    finally:
        server.stop()


def main() -> None:
    ap = harness.parser(__doc__, repeats=1)
    ap.add_argument("--work", default="", help="folder for the written layouts (default: a temporary one)")
    ap.add_argument("--parts", default="startup,loader,s3")
    ap.add_argument("--lasot", action="store_true", help="also the LaSOT-size layout (3.5M hard links)")
    ap.add_argument("--pairs", type=int, default=300)
    ap.add_argument("--gpu-step-ms", type=float, default=50.0)
    ap.add_argument("--batch", type=int, default=32)
    args = ap.parse_args()
    report = harness.Report("bench_data_scale", args)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.work) if args.work else Path(tmp)  # --work keeps the layouts for a rerun
        work.mkdir(parents=True, exist_ok=True)
        parts = args.parts.split(",")
        if "startup" in parts:
            bench_startup(work, args.lasot, report)
        if "loader" in parts:
            bench_loader(work, args.pairs, args.gpu_step_ms, args.batch, args.repeats, report)
        if "s3" in parts:
            bench_s3(work, min(args.pairs, 100), report)


if __name__ == "__main__":
    main()
