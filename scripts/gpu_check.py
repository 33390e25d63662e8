"""The library's own code on an accelerator, without Ray or MLflow (a bare GPU machine).

    python scripts/gpu_check.py --out OUT_DIR [--parts eval,agree,train,runtimes,parallel]
        [--devices cuda cpu] [--steps 20] [--budget-s 450]

Parts, in this order, each on its own (a failure is recorded and the next part runs):

- ``eval`` (issue 18): one candidate (LightTrack-Mobile's path of a random-init supernet)
  over a GOT-10k-val-sized split (180 x 150 frames at 1280x720, bench/bench_eval.py's)
  by the lockstep evaluator with decode, crops and post-processing on the GPU, beside the
  one-sequence tracker and the lockstep loop with host decode and crops;
- ``agree``: the GPU loop's boxes and AO against the CPU host loop's on the embedded val,
  with the random-init path and, after ``train``, with the tracker fine-tuned there;
- ``train``: per device, side by side, a few training steps of phases 1, 2 and 4 (bf16
  autocast on CUDA), BN recalibration and one search trial, the tracker on a 1280x720
  video and an ONNX export of the weights trained there, checked under ONNX Runtime
  (tracker/parity.py);
- ``runtimes`` (issue 34): the tracker trained there (else LightTrack-Mobile, seeded)
  exported to every deployment runtime installed (TensorRT on the GPU), each checked
  against eager and timed; the runtimes that are not installed, with the reason;
- ``parallel``: candidates per minute with 1, 2 and 4 evaluator processes on one GPU (the
  search's fractional GPUs), sized to what is left of ``--budget-s``.

Every figure is written to OUT_DIR/gpu_check.json as soon as it is measured.
``scripts/gpu_check.sh`` is the entry point.
"""
from __future__ import annotations

import argparse
import copy
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
    from lighttrack.train import pretrain
    from lighttrack.train.config import PretrainConfig

    cfg = load(PretrainConfig, ROOT / "configs/pretrain_micro.yaml",
               [f"data_root={data / 'imagenet'}", "epochs=1", f"steps_per_epoch={steps}", f"batch_size={batch}",
                "model.image_size=128", "run.loader_workers=2", f"run.amp={'bf16' if device.type == 'cuda' else 'off'}"])
    torch.manual_seed(0)
    rep = Steps()
    model = pretrain.run(cfg, Dist(device=device), rep, evaluate=False)
    _sync(device)
    return {"step_ms": rep.step_ms(), "images_per_s": batch / rep.step_ms() * 1000, "batch": batch}, model


def phase2(data: Path, device: torch.device, steps: int, batch: int, backbone) -> tuple[dict, torch.nn.Module]:
    from lighttrack.train.config import SupernetConfig
    from lighttrack.train.tracking import run_supernet

    got10k = data / "got10k"
    cfg = load(SupernetConfig, ROOT / "configs/supernet_micro.yaml",
               [f"data.sources=[{{root: {got10k}, kind: got10k, split: train, pairs_per_epoch: {steps * batch}}}]",
                "epochs=1", f"steps_per_epoch={steps}", f"batch_size={batch}", "backbone_freeze_epochs=0",
                "eval.num_paths=0", "eval.before_training=false", "run.loader_workers=2",
                f"run.amp={'bf16' if device.type == 'cuda' else 'off'}"])
    torch.manual_seed(0)
    rep = Steps()
    model = run_supernet(cfg, Dist(device=device), rep, init=backbone.state_dict())
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
    frames = ev.val.frames
    return {"seconds": time.perf_counter() - t0, "ao": row["ao"], "val_frames": frames,
            "recal_pairs": cfg.recalibrate_batches * cfg.recalibrate_batch_size}


def _timed(net, reader, out: Path, device: torch.device, **kw) -> dict:
    """One candidate over ``reader`` by ``evaluate_split``: wall seconds, fps, AO beside the
    stay-at-first-box AO on the same frames."""
    from lighttrack.tracker import PRESETS
    from lighttrack.tracker.evaluation import evaluate_split

    _sync(device)
    t0 = time.perf_counter()
    s = evaluate_split(net, reader, out, PRESETS["vot2019"], protocol="got10k", plot=False, **kw)
    _sync(device)
    sec = time.perf_counter() - t0
    return {"seconds": round(sec, 3), "frames": s["frames"], "fps": round(s["frames"] / sec, 1),
            "ao": round(s["ao"], 4), "baseline_ao": round(s["baseline_ao"], 4)}


def _random_path(device: torch.device):
    """LightTrack-Mobile's path of a random-init supernet (seed 0), as bench/bench_eval.py."""
    from lighttrack.models import TrackSupernet

    torch.manual_seed(0)
    return TrackSupernet("paper").to(device).eval().path(MOBILE).eval()


def got10k_val_size(work: Path, sequences: int = 180, frames: int = 150) -> Path:
    """bench/bench_eval.py's GOT-10k-val-sized split: hard links to four 1280x720 JPEGs."""
    sys.path.insert(0, str(ROOT / "bench"))
    from bench_data_scale import write_got10k

    return write_got10k(work / f"got10k-val-{sequences}x{frames}", sequences, frames, split_name="val")


def lockstep(root: Path, device: torch.device, work: Path, save) -> dict:
    """Issue 18 on the GPU: one candidate over the GOT-10k-val-sized split by the lockstep
    evaluator with decode, crops and post-processing on the device, beside the one-sequence
    tracker (crops on the host, network on the GPU) and the lockstep loop with host decode
    and crops, each on the first sequences of the same split."""
    from lighttrack.data.readers import Got10k
    from lighttrack.tracker import PRESETS, Tracker

    path = _random_path(device)
    names = Got10k(str(root), "val").sequence_names

    def head(n):
        return Got10k(str(root), "val", names[:n])

    frames = len(head(1).sequence(0).frames)
    r: dict = {"split": f"{len(names)} sequences x {frames} frames at 1280x720", "arch": "lighttrack-mobile",
               "supernet": "random init, seed 0"}
    runs = [("serial_4seq", lambda: _timed(Tracker(path, PRESETS["vot2019"]), head(4), work / "s", device)),
            ("lockstep_device_4seq", lambda: _timed(path, head(4), work / "d4", device)),
            ("lockstep_host_16seq", lambda: _timed(path, head(16), work / "h16", device, device_crops=False)),
            ("lockstep_device_full", lambda: _timed(path, head(len(names)), work / "df", device)),
            ("lockstep_device_full_again", lambda: _timed(path, head(len(names)), work / "df2", device))]
    for name, fn in runs:
        r[name] = fn()
        save()
    best = min(r["lockstep_device_full"]["seconds"], r["lockstep_device_full_again"]["seconds"])
    r["candidate_seconds_full_split"] = best
    r["serial_seconds_full_split_at_its_fps"] = round(len(names) * frames / r["serial_4seq"]["fps"], 1)
    r["speedup_vs_serial"] = round(r["serial_seconds_full_split_at_its_fps"] / best, 2)
    if device.type == "cuda":
        r["max_memory_mb"] = round(torch.cuda.max_memory_allocated(device) / 2**20)
    return r


def agree(data: Path, device: torch.device, work: Path, make=None) -> dict:
    """The GPU loop's boxes against the CPU host loop's on the embedded val split, the same
    network on each (``make(device)``; default: the random-init path): AO of each and the
    box differences in px."""
    from lighttrack.data.readers import Got10k
    from lighttrack.tracker.evaluation import read_results

    reader = Got10k(str(data / "got10k"), "val")
    make = make or _random_path
    out = {"gpu": _timed(make(device), reader, work / "gpu", device),
           "cpu": _timed(make(torch.device("cpu")), reader, work / "cpu", torch.device("cpu"))}
    diffs = np.concatenate([np.abs(read_results(work / "gpu", n)[0] - read_results(work / "cpu", n)[0]).ravel()
                            for n in reader.sequence_names])
    out["box_diff_px"] = {"median": float(np.median(diffs)), "p95": float(np.percentile(diffs, 95)),
                          "max": float(diffs.max())}
    return out


def _candidate_worker(root: str, sequences: int, device: str, threads: int, barrier, queue) -> None:
    """One search evaluator process (a Ray actor with a fraction of the GPU): warm up, wait
    for the others, then one candidate over ``sequences`` sequences."""
    from lighttrack.data.readers import Got10k

    device = torch.device(device)
    torch.backends.cudnn.benchmark = True
    torch.set_num_threads(threads)  # n processes' OpenMP pools on the host's cores, not n times them
    try:
        path = _random_path(device)
        names = Got10k(root, "val").sequence_names
        with tempfile.TemporaryDirectory() as tmp:
            _timed(path, Got10k(root, "val", names[:4]), Path(tmp) / "warm", device)
            barrier.wait(timeout=300)
            start = time.time()
            r = _timed(path, Got10k(root, "val", names[:sequences]), Path(tmp) / "run", device)
            queue.put({"start": start, "end": time.time(), **r})
    except Exception as e:  # noqa: BLE001: reported by the parent
        queue.put({"error": repr(e)})


def parallel(root: Path, sequences: int, device: torch.device, counts=(1, 2, 4)) -> dict:
    """Candidates per minute with 1, 2, 4 evaluator processes sharing the GPU, each one
    candidate over the first ``sequences`` sequences of the split, started together."""
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    out: dict = {"sequences": sequences}
    for n in counts:
        barrier, queue = ctx.Barrier(n), ctx.Queue()
        threads = max(1, (os.cpu_count() or 1) // n)
        procs = [ctx.Process(target=_candidate_worker, args=(str(root), sequences, str(device), threads, barrier, queue))
                 for _ in range(n)]
        for pr in procs:
            pr.start()
        rows = [queue.get(timeout=600) for _ in procs]
        for pr in procs:
            pr.join(timeout=60)
        errors = [r["error"] for r in rows if "error" in r]
        if errors:
            out[f"x{n}"] = {"errors": errors}
            continue
        wall = max(r["end"] for r in rows) - min(r["start"] for r in rows)
        out[f"x{n}"] = {"wall_s": round(wall, 2), "candidates_per_min": round(60 * n / wall, 2),
                        "each_s": [r["seconds"] for r in rows], "ao": rows[0]["ao"]}
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
    from bench_runtimes import synthetic_video

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


def runtimes_check(tracker: torch.nn.Module | None, arch: str, runtimes: list[str], out: Path) -> dict:
    """The tracker (the GPU-trained one, or ``arch`` with seeded weights) exported to every
    runtime of ``runtimes`` that runs here (TensorRT on the GPU), each checked against eager
    (tracker/parity.py) and timed; the others with the reason they cannot run."""
    from lighttrack.tracker import PRESETS
    from lighttrack.tracker.export import calibration_crops, export_tracker, write_card
    from lighttrack.tracker.parity import RenderedSequence, check_parity, latency_ms
    from lighttrack.tracker.runtime import ExportedNet, load_torch_net
    from lighttrack.tracker.runtimes import RUNTIMES

    torch.manual_seed(0)
    a = resolve(arch) if tracker is None else tracker.arch
    net = (load_torch_net(a) if tracker is None else tracker).cpu().eval()
    here = [r for r in runtimes if RUNTIMES[r].missing() is None]
    result: dict = {"arch": str(a), "trained": tracker is not None,
                    "missing": {r: RUNTIMES[r].missing() for r in runtimes if r not in here}}
    t0 = time.perf_counter()
    files = export_tracker(net, out, torch_export=False, runtimes=here)
    write_card(out, arch=a, files=files, params=PRESETS["vot2019"], source={"gpu_check": True})
    result["export_s"] = time.perf_counter() - t0
    seq = RenderedSequence.render(seed=0, frames=40)
    crops = calibration_crops([(seq.read_frame(k), seq.boxes[k]) for k in range(0, 40, 5)])
    for r in here:
        exported = ExportedNet(out, r)
        p = check_parity(net, exported, seq, PRESETS["vot2019"], crops, r, raise_error=False)
        result[r] = {"version": RUNTIMES[r].version(), "heads_rel": p["heads_rel_max"], "boxes_px": p["boxes_px"],
                     "passed": p["passed"], "latency_ms": latency_ms(exported, repeats=20)}
    return result


def train(data: Path, device: torch.device, steps: int, batch: int, keep: dict) -> dict:
    """Training steps of phases 1, 2 and 4, a candidate, the tracker and the export on
    ``device``; the fine-tuned tracker goes to ``keep["tracker"]``."""
    r: dict = {}
    t0 = time.perf_counter()
    r["phase1"], backbone = phase1(data, device, steps, batch)
    r["phase2"], supernet = phase2(data, device, steps, batch, backbone)
    r["candidate"] = candidate(data, device, supernet)
    r["phase4"], tracker = phase4(data, device, steps, batch, supernet)
    r["tracker"] = tracker_fps(device, tracker)
    keep["tracker"] = tracker  # agree_trained copies it to each device
    with tempfile.TemporaryDirectory() as tmp:  # only gpu_check.json goes back
        r["export"] = runtimes_check(tracker, "", ["onnxruntime"], Path(tmp) / f"export-{device.type}")
    r["seconds"] = time.perf_counter() - t0
    if device.type == "cuda":
        r["max_memory_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    return r


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--devices", nargs="+", default=["cuda", "cpu"], help="devices of the training part")
    p.add_argument("--parts", default="eval,agree,train,runtimes,parallel",
                   help="comma-separated: eval (issue 18's GPU loop), agree (GPU vs CPU boxes), train, "
                        "runtimes (deployment runtimes against eager), parallel (candidates per GPU)")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--steps", type=int, default=20, help="training steps per phase and device")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--sequences", type=int, default=180, help="of the GOT-10k-val-sized split")
    p.add_argument("--frames", type=int, default=150, help="per sequence of that split")
    p.add_argument("--budget-s", type=float, default=450, help="optional parts are skipped past this")
    p.add_argument("--runtimes", nargs="+", default=["onnxruntime", "openvino", "ncnn", "executorch", "tensorrt"],
                   help="runtimes of the 'runtimes' part (those not installed are reported with the reason)")
    p.add_argument("--runtime-arch", default="lighttrack-mobile", help="'runtimes' part: arch when none was trained")
    p.add_argument("--eval-device", default="cuda", help=argparse.SUPPRESS)  # cpu: a dry run of the GPU parts
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    parts = set(args.parts.split(","))
    begin = time.perf_counter()
    from lighttrack.data.synth import write

    cuda = torch.device(args.eval_device) if args.eval_device == "cpu" or torch.cuda.is_available() else None
    report = {"torch": torch.__version__, "python": platform.python_version(), "cpu_threads": torch.get_num_threads(),
              "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None, "devices": {}}

    def save() -> None:  # after every figure: a run cut short still returns what it measured
        (args.out / "gpu_check.json").write_text(json.dumps(report, indent=2, default=str))

    def section(key: str, fn, into: dict | None = None) -> None:
        into = report if into is None else into
        t0 = time.perf_counter()
        print(f"[gpu_check] {key} ...", flush=True)
        try:
            into[key] = fn()
        except Exception:  # noqa: BLE001: one part's failure must not lose the others'
            import traceback

            into[key] = {"error": traceback.format_exc()}
        print(f"[gpu_check] {key} ({time.perf_counter() - t0:.0f} s): {json.dumps(into[key], default=str)}", flush=True)
        save()

    with tempfile.TemporaryDirectory(prefix="lt-gpu-check-") as tmp:
        work = Path(tmp)
        data = work / "synth"
        write(data, seed=0, size="tiny", workers=4)
        if cuda is not None:
            torch.backends.cudnn.benchmark = True
            split = got10k_val_size(work, args.sequences, args.frames)
            if "eval" in parts:
                section("lockstep", lambda: lockstep(split, cuda, work / "eval", save))
            if "agree" in parts:
                section("agree", lambda: agree(data, cuda, work / "agree"))
        else:
            print("[gpu_check] no CUDA device here: only the training part runs", flush=True)
        devices = [d for d in args.devices if cuda is not None or not d.startswith("cuda")] if "train" in parts else []
        trained: dict = {}
        if devices and devices[0].startswith("cuda"):  # the GPU's figures before the CPU's
            section(devices[0], lambda: train(data, torch.device(devices[0]), args.steps, args.batch, trained),
                    report["devices"])
            devices = devices[1:]
            if "agree" in parts and "tracker" in trained:  # boxes that depend on the pixels
                section("agree_trained", lambda: agree(data, cuda, work / "agree-trained",
                                                       lambda d: copy.deepcopy(trained["tracker"]).to(d).eval()))
        if "runtimes" in parts:  # TensorRT on the GPU beside the CPU runtimes, in bench_runtimes' terms
            section("runtimes", lambda: runtimes_check(trained.get("tracker"), args.runtime_arch, args.runtimes,
                                                       work / "runtimes"))
        left = args.budget_s - (time.perf_counter() - begin)
        if cuda is not None and "parallel" in parts and left > 120:
            full = report.get("lockstep", {}).get("candidate_seconds_full_split", 60.0)
            # 1 + 2 + 4 candidates, each about a full split's time at worst, plus process starts
            n = args.sequences if 7 * full + 90 < left else max(8, int(args.sequences * (left - 90) / (7 * full)))
            section("parallel", lambda: parallel(split, min(n, args.sequences), cuda))
        for name in devices:
            if time.perf_counter() - begin > args.budget_s - 120:
                print(f"[gpu_check] train on {name}: skipped, past the budget", flush=True)
                continue
            section(name, lambda: train(data, torch.device(name), args.steps, args.batch, {}), report["devices"])
    print(f"[gpu_check] wrote {args.out / 'gpu_check.json'} ({time.perf_counter() - begin:.0f} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
