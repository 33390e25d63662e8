"""Per-frame tracking latency of the found tracker and LightTrack-Mobile on every deployment
runtime installed here, at 1 and 2 threads, beside eager PyTorch, with each runtime's parity.

Every tracker tracks the same synthetic 1280x720 video side by side in one process (whole
passes in turn, ``--repeats`` rounds, so drift of the machine's speed hits all of them
alike). Per tracker it prints ms per frame (crop + network + post-processing; median frame)
and its ratio to eager PyTorch, where the time goes, and the runtime's parity with eager
(tracker/parity.py: heads relative error on real crops, boxes in px over a rendered
sequence). The eager tracker feeds normalised float crops to the torch module; the
deployed ones feed the raw uint8 crop to their runtime's graphs (BN and normalisation
folded). ``--latency-table RUNTIME=table.json`` adds that table's estimate of the search
branch beside the measured one (same threads as the table). ``--int8`` adds ONNX Runtime's
static int8 graphs; their AO change needs trained weights and a split
(``lighttrack export --int8 --dataset``).

    python bench/bench_runtimes.py [--arch found lighttrack-mobile] [--checkpoint C ...] \\
        [--runtimes onnxruntime openvino ncnn executorch] [--threads 1 2] [--json out.json]
"""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

import harness

from lighttrack.arch import resolve
from lighttrack.tracker import PRESETS, Tracker
from lighttrack.tracker.export import calibration_crops, export_tracker, quantize_int8, write_card
from lighttrack.tracker.parity import RenderedSequence, check_parity, latency_ms
from lighttrack.tracker.runtime import ExportedNet, load_torch_net
from lighttrack.tracker.runtimes import RUNTIMES

# The quick start's found tracker (docs/notes/results-notebook.md, "search must rank" section).
FOUND = ("bb:k7e6,k7e4/k5e6,k5e4,k5e6,k5e4/k7e4+cls:128:k3,skip,k5,k3,k3,k3,skip,k5"
         "+reg:192:k5,skip,k5,k5,k3,k5,k5,skip")


def synthetic_video(n: int, size: tuple[int, int], seed: int = 0) -> tuple[list[np.ndarray], np.ndarray]:
    """A textured box drifting over a noisy background; returns frames and boxes (N, 4)."""
    w, h = size
    rng = np.random.default_rng(seed)
    background = cv2.GaussianBlur(rng.integers(0, 255, (h, w, 3), dtype=np.uint8), (0, 0), 3)
    patch = rng.integers(0, 255, (90, 120, 3), dtype=np.uint8)
    frames, boxes = [], []
    for k in range(n):
        x, y = w * 0.3 + 4 * k, h * 0.4 + 20 * np.sin(k / 8)
        img = background.copy()
        img[int(y):int(y) + 90, int(x):int(x) + 120] = patch
        frames.append(img)
        boxes.append((int(x), int(y), 120, 90))
    return frames, np.array(boxes, np.float64)


def run(trackers: dict[str, Tracker], frames, box, repeats: int) -> dict[str, dict]:
    """Each tracker runs the whole video in turn, ``repeats`` rounds; per-frame seconds and
    stage totals. Whole passes rather than frame-by-frame interleaving: a runtime's pool
    threads (torch's OpenMP ones spin-wait after a parallel region) would otherwise spin
    into the other backend's next frame; alternating passes still spreads drift of the
    machine's speed over all backends."""
    times = {name: [] for name in trackers}
    for t in trackers.values():  # warm-up pass, not timed
        t.initialize(frames[0], box)
        for image in frames[1:4]:
            t.track(image)
        t.timings = dict.fromkeys(t.timings, 0.0)
    for _ in range(repeats):
        for name, t in trackers.items():
            t.initialize(frames[0], box)
            for image in frames[1:]:
                start = time.perf_counter()
                t.track(image)
                times[name].append(time.perf_counter() - start)
    out = {}
    for name, t in trackers.items():
        per, n = harness.Timing(tuple(times[name])), len(times[name])
        out[name] = {"ms_median": 1e3 * per.median, "fps_median": 1.0 / per.median,
                     "fps_mean": n / sum(per.wall), **{f"{k}_ms": 1e3 * v / n for k, v in t.timings.items()}}
    return out


def _export(net, arch, runtimes: list[str], out_dir: Path, int8_crops=None) -> Path:
    if not (out_dir / "model_card.json").is_file():
        files = export_tracker(net, out_dir, torch_export=False, runtimes=runtimes)
        if int8_crops is not None:
            files["onnx_int8"] = quantize_int8(out_dir, files, int8_crops)
        write_card(out_dir, arch=arch, files=files, params=PRESETS["vot2019"])
    return out_dir


def main() -> None:
    ap = harness.parser(__doc__, repeats=3)
    ap.add_argument("--arch", nargs="+", default=["found", "lighttrack-mobile"],
                    help="architectures ('found': the quick start's found tracker)")
    ap.add_argument("--checkpoint", nargs="*", default=[], help="weights per --arch, in order (none: fresh)")
    ap.add_argument("--runtimes", nargs="+", default=[r for r in RUNTIMES if RUNTIMES[r].missing() is None],
                    choices=sorted(RUNTIMES), help="default: every runtime that runs here")
    ap.add_argument("--frames", type=int, default=60)
    ap.add_argument("--size", default="1280x720")
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--int8", action="store_true", help="also benchmark ONNX Runtime's int8 graphs")
    ap.add_argument("--latency-table", nargs="*", default=[], metavar="RUNTIME=TABLE",
                    help="latency tables whose estimate of the search branch to print beside the measured one")
    ap.add_argument("--export-dir", default=None, help="reuse/write the exports here (one folder per arch)")
    args = ap.parse_args()
    report = harness.Report("bench_runtimes", args)
    report.machine.update({r: RUNTIMES[r].version() for r in RUNTIMES if RUNTIMES[r].missing() is None})

    from lighttrack.search.latency import LatencyTable

    tables = {}
    for spec in args.latency_table:
        runtime, _, path = spec.partition("=")
        tables[runtime] = LatencyTable.load(path)
    size = tuple(int(v) for v in args.size.split("x"))
    frames, boxes = synthetic_video(args.frames, size)
    sequence = RenderedSequence.render(seed=0, frames=40)
    crops = calibration_crops([(sequence.read_frame(k), sequence.boxes[k]) for k in range(0, 40, 5)])
    root = Path(args.export_dir or tempfile.mkdtemp(prefix="bench-runtimes-"))
    cv2.setNumThreads(1)
    results: dict = {}
    for i, name in enumerate(args.arch):
        arch = resolve(FOUND if name == "found" else name)
        checkpoint = args.checkpoint[i] if i < len(args.checkpoint) else None
        net = load_torch_net(arch, checkpoint)
        export = harness.timeit(lambda: _export(net, arch, args.runtimes, root / f"arch{i}", calibration_crops(
            zip(frames[::4], boxes[::4])) if args.int8 else None), warmup=0)
        out_dir = export.result
        print(f"\n{name}: {arch.to_released()} ({'weights ' + checkpoint if checkpoint else 'fresh weights'}); "
              f"exported for {', '.join(args.runtimes)} in {export.median:.0f} s")
        parity = {r: check_parity(net, ExportedNet(out_dir, r), sequence, PRESETS["vot2019"], crops, r,
                                  raise_error=False) for r in args.runtimes}
        per_threads = {}
        for threads in args.threads:
            torch.set_num_threads(threads)
            nets = {r: ExportedNet(out_dir, r, threads) for r in args.runtimes}
            trackers = {"torch-eager": Tracker(net), **{r: Tracker(n) for r, n in nets.items()}}
            if args.int8:
                trackers["onnxruntime-int8"] = Tracker(ExportedNet(out_dir, "onnxruntime", threads, int8=True))
            res = run(trackers, frames, boxes[0], args.repeats)
            for r, n in nets.items():  # the search branch alone, against a latency table's estimate
                res[r]["search_ms"] = latency_ms(n, repeats=20)["search_256"]
                table = tables.get(r)
                if table is not None and table.threads == threads:
                    res[r]["table_estimate_ms"] = table.estimate(arch)
            base = res["torch-eager"]["ms_median"]
            print(f"  threads {threads}, frames {size[0]}x{size[1]}")
            rows = []
            for r, v in res.items():
                p = parity.get(r) or {}  # eager is the reference; int8's parity is not checked here
                rows.append({"runtime": r, "ms/frame": v["ms_median"], "x eager": base / v["ms_median"],
                             "crop": v["crop_ms"], "net": v["network_ms"], "post": v["post_ms"],
                             "heads rel": p.get("heads_rel_max", "ref" if r == "torch-eager" else None),
                             "boxes px": p.get("boxes_px"), "search": v.get("search_ms"),
                             "table": v.get("table_estimate_ms")})
            report.table(f"{name}, {threads} thread(s), ms", rows, **dict.fromkeys(
                ("ms/frame", "x eager", "crop", "net", "post", "search", "table"), ".2f"),
                **{"heads rel": ".1e", "boxes px": ".3f"})
            per_threads[threads] = res
        results[name] = {"arch": str(arch), "checkpoint": checkpoint, "parity": parity, "threads": per_threads}
        report.record("archs", results)
    print("\nFor reference, not a ratio (another machine): the OpenVINO port of LightTrack publishes 3.4 ms "
          "per frame on an i7-11700K.")


if __name__ == "__main__":
    main()
