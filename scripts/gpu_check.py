"""The library's own code on an accelerator, without Ray or MLflow (a bare GPU machine).

    python scripts/gpu_check.py --devices cuda cpu --out OUT_DIR [--steps 20]

For each device, side by side in one run, on the embedded data set (written to a
temporary folder): a few training steps of phase 1 (backbone supernet), phase 2 (tracking
supernet) and phase 4 (retrain + fine-tune of LightTrack-Mobile), with bf16 autocast on
CUDA; BN recalibration and one candidate evaluation (the search's trial); on CUDA, one
candidate over a GOT-10k-val-sized split (180 x 150 frames at 1280x720) by the lockstep
evaluator with the whole loop on the device, beside the one-sequence tracker; the tracker on
a 1280x720 synthetic video; and an ONNX export of the weights trained on that device,
checked against the torch outputs under ONNX Runtime. Prints one line per figure and
writes them all to OUT_DIR/gpu_check.json. ``scripts/gpu_check.sh`` is the entry point.
"""
from __future__ import annotations

import argparse
import os
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # a bare machine: the checkout, not an installed package

from lighttrack.arch import resolve  # noqa: E402
from lighttrack.config import load  # noqa: E402
from lighttrack.train.common import Dist, make_loader  # noqa: E402

MOBILE = resolve("lighttrack-mobile")


class Steps:
    """A ``report`` callback that keeps each step's wall time (the first two are warm-up)."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self.last = time.perf_counter()
        self.metrics: dict = {}

    def __call__(self, metrics: dict, state: dict | None = None) -> None:
        now = time.perf_counter()
        if state is None and "step" in metrics:
            self.times.append(now - self.last)
        self.metrics |= {k: v for k, v in metrics.items() if isinstance(v, (int, float))}
        self.last = now

    def step_ms(self) -> float:
        t = self.times[2:] or self.times
        return 1000 * float(np.median(t)) if t else float("nan")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def phase1(data: Path, device: torch.device, steps: int, batch: int) -> tuple[dict, torch.nn.Module]:
    from lighttrack.models import ClassSupernet
    from lighttrack.train.class_data import class_dataset
    from lighttrack.train.config import PretrainConfig
    from lighttrack.train.pretrain import train_backbone_supernet

    cfg = load(PretrainConfig, ROOT / "configs/pretrain_micro.yaml",
               [f"data_root={data / 'imagenet'}", "epochs=1", f"steps_per_epoch={steps}", f"batch_size={batch}",
                "model.image_size=128", f"run.amp={'bf16' if device.type == 'cuda' else 'off'}"])
    torch.manual_seed(0)
    model = ClassSupernet(cfg.model.num_classes, cfg.model.dropout)
    train = make_loader(class_dataset(cfg.data_root, "train", 128, train=True), batch, Dist(device=device),
                        shuffle=True, workers=2)
    rep = Steps()
    train_backbone_supernet(model, train, None, cfg, rep, Dist(device=device))
    _sync(device)
    return {"step_ms": rep.step_ms(), "images_per_s": batch / rep.step_ms() * 1000, "batch": batch}, model


def phase2(data: Path, device: torch.device, steps: int, batch: int, backbone) -> tuple[dict, torch.nn.Module]:
    from lighttrack.data.sampling import build_pair_dataset
    from lighttrack.models import TrackSupernet
    from lighttrack.train.config import SupernetConfig
    from lighttrack.train.tracking import train_supernet

    got10k = data / "got10k"
    cfg = load(SupernetConfig, ROOT / "configs/supernet_micro.yaml",
               [f"data.sources=[{{root: {got10k}, kind: got10k, split: train, pairs_per_epoch: {steps * batch}}}]",
                "epochs=1", f"steps_per_epoch={steps}", f"batch_size={batch}", "backbone_freeze_epochs=0",
                "eval.num_paths=0", "eval.before_training=false",
                f"run.amp={'bf16' if device.type == 'cuda' else 'off'}"])
    torch.manual_seed(0)
    model = TrackSupernet()
    model.load_backbone(backbone.state_dict())
    loader = make_loader(build_pair_dataset(cfg.data), batch, Dist(device=device), shuffle=True, workers=2)
    rep = Steps()
    train_supernet(model, loader, cfg, rep, Dist(device=device))
    _sync(device)
    return {"step_ms": rep.step_ms(), "pairs_per_s": batch / rep.step_ms() * 1000, "batch": batch,
            "loss": rep.metrics.get("train_loss")}, model


def candidate(data: Path, device: torch.device, supernet) -> dict:
    from lighttrack.search.cache import supernet_id
    from lighttrack.search.evaluate import CandidateEvaluator, EvalConfig

    cfg = EvalConfig(val_root=str(data / "got10k"), recalibrate_root=str(data / "got10k"), recalibrate_batches=4,
                     recalibrate_batch_size=16)
    ev = CandidateEvaluator(supernet.to(device).eval(), supernet_id(supernet.state_dict()), cfg)
    ev.evaluate(MOBILE)  # warm-up (cudnn autotuning, allocator)
    _sync(device)
    t0 = time.perf_counter()
    row = ev.evaluate(MOBILE)
    _sync(device)
    frames = sum(len(ev.val.sequence(i).frames) for i in range(len(ev.val)))
    return {"seconds": time.perf_counter() - t0, "ao": row["ao"], "val_frames": frames,
            "recal_pairs": cfg.recalibrate_batches * cfg.recalibrate_batch_size}


def eval_split(data: Path, out: Path, sequences: int = 180, frames: int = 150) -> Path:
    """A GOT-10k-val-sized split: ``sequences`` x ``frames`` hard links to four 1280x720 JPEGs
    (embedded frames scaled up), a box walking over each."""
    import cv2
    import numpy as np

    split = out / "val"
    split.mkdir(parents=True, exist_ok=True)
    src = sorted((data / "got10k" / "train").glob("*/00000001.jpg"))[:4]
    photos = []
    for k, f in enumerate(src):
        photos.append(split / f"photo{k}.jpg")
        cv2.imwrite(str(photos[-1]), cv2.resize(cv2.imread(str(f)), (1280, 720)), [cv2.IMWRITE_JPEG_QUALITY, 90])
    rng = np.random.default_rng(0)
    names = [f"GOT-10k_Val_{i + 1:06d}" for i in range(sequences)]
    for i, name in enumerate(names):
        d = split / name
        d.mkdir(exist_ok=True)
        for f in range(frames):
            os.link(photos[i % len(photos)], d / f"{f + 1:08d}.jpg")
        c = rng.uniform(200, 600) + np.cumsum(rng.normal(0, 5, (frames, 2)), 0)
        (d / "groundtruth.txt").write_text("".join(f"{x:.2f},{y:.2f},120,90\n" for x, y in c))
    (split / "list.txt").write_text("\n".join(names) + "\n")
    return out


def lockstep(split_root: Path, device: torch.device, supernet, serial_sequences: int = 4) -> dict:
    """One candidate over the whole GOT-10k-val-sized split by the lockstep evaluator (on a
    GPU: decode, crops and post-processing on the device), against the one-sequence
    tracker on its first ``serial_sequences`` sequences; seconds per candidate."""
    from lighttrack.data.readers import Got10k
    from lighttrack.tracker import PRESETS, Tracker
    from lighttrack.tracker.evaluation import evaluate_split
    from lighttrack.tracker.runtime import TorchNet

    path = supernet.to(device).eval().path(MOBILE).eval()
    full = Got10k(str(split_root), "val")
    head = Got10k(str(split_root), "val", full.sequence_names[:serial_sequences])
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, net, reader in (("serial", Tracker(TorchNet(path), PRESETS["vot2019"]), head),
                                  ("lockstep", path, head), ("lockstep_full", path, full)):
            _sync(device)
            t0 = time.perf_counter()
            s = evaluate_split(net, reader, Path(tmp) / name, PRESETS["vot2019"], plot=False)
            _sync(device)
            sec = time.perf_counter() - t0
            out[name] = {"seconds": sec, "frames": s["frames"], "fps": s["frames"] / sec, "ao": s["ao"]}
    out["speedup_on_head"] = out["serial"]["seconds"] / out["lockstep"]["seconds"]
    out["candidate_seconds_full_split"] = out["lockstep_full"]["seconds"]
    return out


def phase4(data: Path, device: torch.device, steps: int, batch: int, supernet) -> tuple[dict, torch.nn.Module]:
    from lighttrack.data.sampling import build_pair_dataset
    from lighttrack.models import extract
    from lighttrack.models.static import StaticClassifier
    from lighttrack.train.class_data import class_dataset
    from lighttrack.train.config import RetrainConfig
    from lighttrack.train.retrain import copy_backbone, train_classifier
    from lighttrack.train.tracking import finetune

    got10k = data / "got10k"
    amp = "bf16" if device.type == "cuda" else "off"
    cfg = load(RetrainConfig, ROOT / "configs/retrain_micro.yaml",
               [f"retrain.data_root={data / 'imagenet'}", f"retrain.steps_per_epoch={steps}",
                f"retrain.batch_size={batch}", "retrain.model.image_size=128", f"finetune.steps_per_epoch={steps}",
                f"finetune.batch_size={batch}", f"run.amp={amp}",
                f"finetune.data.sources=[{{root: {got10k}, kind: got10k, split: train, "
                f"pairs_per_epoch: {steps * batch}}}]"])
    dist = Dist(device=device)
    supernet = supernet.cpu()
    classifier = StaticClassifier(MOBILE.backbone, cfg.retrain.model.num_classes, 0.0)
    copy_backbone(classifier, extract(supernet.eval(), MOBILE))
    train = make_loader(class_dataset(cfg.retrain.data_root, "train", 128, True, cfg.retrain.autoaugment),
                        batch, dist, shuffle=True, workers=2)
    rep_r = Steps()
    _, backbone = train_classifier(classifier, train, None, cfg.retrain, cfg.run, rep_r, dist)
    tracker = extract(supernet, MOBILE)
    copy_backbone(tracker, backbone)
    loader = make_loader(build_pair_dataset(cfg.finetune.data), batch, dist, shuffle=True, workers=2)
    rep_f = Steps()
    finetune(tracker, loader, cfg.finetune, cfg.run, rep_f, dist)
    _sync(device)
    return {"retrain_step_ms": rep_r.step_ms(), "finetune_step_ms": rep_f.step_ms(),
            "finetune_pairs_per_s": batch / rep_f.step_ms() * 1000, "batch": batch}, tracker


def tracker_fps(device: torch.device, tracker: torch.nn.Module, frames: int = 60) -> dict:
    sys.path.insert(0, str(ROOT / "bench"))
    from bench_tracker import synthetic_video

    from lighttrack.tracker import PRESETS, Tracker

    video, boxes = synthetic_video(frames, (1280, 720))
    t = Tracker(tracker.to(device).eval(), PRESETS["vot2019"])
    t.initialize(video[0], boxes[0])
    for f in video[1:6]:  # warm-up
        t.track(f)
    _sync(device)
    t0 = time.perf_counter()
    for f in video[6:]:
        t.track(f)
    _sync(device)
    return {"fps": (len(video) - 6) / (time.perf_counter() - t0), "frames": len(video) - 6}


def export_check(tracker: torch.nn.Module, out: Path) -> dict:
    """ONNX export of weights trained on the device; ORT against torch on the same crops."""
    from lighttrack.tracker.export import export_tracker, write_card
    from lighttrack.tracker.params import TrackerParams
    from lighttrack.tracker.runtime import OrtNet, TorchNet

    net = tracker.cpu().eval()
    files = export_tracker(net, out, torch_export=False)
    write_card(out, arch=MOBILE, files=files, params=TrackerParams(), source={"gpu_check": True})
    rng = np.random.default_rng(0)
    z = rng.integers(0, 255, (1, 128, 128, 3), dtype=np.uint8)
    x = rng.integers(0, 255, (1, 256, 256, 3), dtype=np.uint8)
    ort = OrtNet(out, 1)
    cls_o, reg_o = ort.search(ort.template(z), x)
    from lighttrack.geometry import IMAGENET_MEAN, IMAGENET_STD

    def norm(a):  # the eager tracker's input: normalised float NCHW
        a = (a.astype(np.float32) / 255.0 - IMAGENET_MEAN) / IMAGENET_STD
        return np.ascontiguousarray(a.transpose(0, 3, 1, 2), np.float32)

    tn = TorchNet(net)
    cls_t, reg_t = tn.search(tn.template(norm(z)), norm(x))
    return {"max_abs_diff_cls": float(np.abs(cls_o - cls_t).max()),
            "max_abs_diff_reg": float(np.abs(reg_o - reg_t).max()), "files": sorted(files)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--devices", nargs="+", default=["cuda", "cpu"])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--steps", type=int, default=20, help="training steps per phase and device")
    p.add_argument("--batch", type=int, default=32)
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    from lighttrack.data.synth import write

    report = {"torch": torch.__version__, "python": platform.python_version(), "cpu_threads": torch.get_num_threads(),
              "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None, "devices": {}}
    with tempfile.TemporaryDirectory(prefix="lt-gpu-check-") as tmp:
        data = Path(tmp) / "synth"
        write(data, seed=0, size="tiny", workers=2)
        for name in args.devices:
            if name.startswith("cuda") and not torch.cuda.is_available():
                print(f"[gpu_check] {name}: no CUDA device here, skipped", flush=True)
                continue
            device = torch.device(name)
            if device.type == "cuda":
                torch.backends.cudnn.benchmark = True
            r: dict = {}
            t0 = time.perf_counter()
            r["phase1"], backbone = phase1(data, device, args.steps, args.batch)
            r["phase2"], supernet = phase2(data, device, args.steps, args.batch, backbone)
            r["candidate"] = candidate(data, device, supernet)
            if device.type == "cuda":  # the CPU's figures come from bench/bench_eval.py
                r["lockstep"] = lockstep(eval_split(data, Path(tmp) / "got10k-val-size"), device, supernet)
            r["phase4"], tracker = phase4(data, device, args.steps, args.batch, supernet)
            r["tracker"] = tracker_fps(device, tracker)
            r["export"] = export_check(tracker, args.out / f"export-{device.type}")
            r["seconds"] = time.perf_counter() - t0
            if device.type == "cuda":
                r["max_memory_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
            report["devices"][name] = r
            for section, vals in r.items():
                print(f"[gpu_check] {name} {section}: {json.dumps(vals)}", flush=True)
    (args.out / "gpu_check.json").write_text(json.dumps(report, indent=2))
    print(f"[gpu_check] wrote {args.out / 'gpu_check.json'}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
