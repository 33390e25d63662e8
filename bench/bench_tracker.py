"""Full-frame tracking speed of LightTrack-Mobile on CPU: PyTorch eager vs ONNX Runtime.

Every backend tracks the same synthetic video side by side in one process (whole passes
in turn, ``--repeats`` rounds, so drift of the machine's speed hits all backends alike) at
1 and 2 threads. Per backend it prints fps (crop + network + post-processing per frame,
from the median frame and from the mean) and where the time goes. The eager tracker feeds
normalised float crops to the torch module; the deployed trackers feed the raw uint8 crop
to the exported graphs (BN, normalisation folded; SE gates tiled). int8 (ONNX Runtime static QDQ) is
included with ``--int8``; its AO change needs trained weights and a split
(``--checkpoint``, ``--dataset``), otherwise it is reported as not measured.

    python bench/bench_tracker.py [--frames 60] [--size 1280x720] [--threads 1 2] [--int8]
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from lighttrack.arch import resolve
from lighttrack.tracker import PRESETS, Tracker
from lighttrack.tracker.export import calibration_crops, export_tracker, quantize_int8, write_card
from lighttrack.tracker.runtime import ExportedNet, load_torch_net


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
        per = np.array(times[name])
        n = len(per)
        out[name] = {"fps_median": 1.0 / float(np.median(per)), "fps_mean": n / float(per.sum()),
                     **{f"{k}_ms": 1e3 * v / n for k, v in t.timings.items()}}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="lighttrack-mobile")
    ap.add_argument("--checkpoint", default=None)
    ap.add_argument("--frames", type=int, default=60)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--size", default="1280x720")
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--int8", action="store_true", help="also benchmark the int8 graphs")
    ap.add_argument("--export-dir", default=None, help="reuse/write the export here")
    ap.add_argument("--json", default=None, help="also write the figures to this file")
    args = ap.parse_args()

    size = tuple(int(v) for v in args.size.split("x"))
    arch = resolve(args.arch)
    net = load_torch_net(arch, args.checkpoint)
    frames, boxes = synthetic_video(args.frames, size)
    out_dir = Path(args.export_dir or tempfile.mkdtemp(prefix="bench-tracker-"))
    if not (out_dir / "model_card.json").is_file():
        files = export_tracker(net, out_dir, torch_export=False)
        if args.int8:
            files["onnx_int8"] = quantize_int8(out_dir, files, calibration_crops(zip(frames[::4], boxes[::4])))
        write_card(out_dir, arch=arch, files=files, params=PRESETS["vot2019"])
    cv2.setNumThreads(1)
    results = {}
    for threads in args.threads:
        torch.set_num_threads(threads)
        trackers = {"torch-eager": Tracker(net), "onnxruntime": Tracker(ExportedNet(out_dir, "onnxruntime", threads))}
        if args.int8:
            trackers["onnxruntime-int8"] = Tracker(ExportedNet(out_dir, "onnxruntime", threads, int8=True))
        res = run(trackers, frames, boxes[0], args.repeats)
        base = res["torch-eager"]["fps_median"]
        print(f"\n{arch.to_released()}  frames {size[0]}x{size[1]}  threads {threads}")
        print(f"{'backend':18s} {'fps(med)':>9s} {'fps(mean)':>9s} {'x eager':>8s} "
              f"{'crop ms':>8s} {'net ms':>8s} {'post ms':>8s}")
        for name, r in res.items():
            print(f"{name:18s} {r['fps_median']:9.1f} {r['fps_mean']:9.1f} {r['fps_median'] / base:8.2f} "
                  f"{r['crop_ms']:8.2f} {r['network_ms']:8.2f} {r['post_ms']:8.2f}")
        results[threads] = res
    if args.int8:
        print("\nint8 AO change: not measured here (needs trained weights and a split: "
              "lighttrack export --int8 --dataset DIR reports it in the model card)")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
