"""``lighttrack evaluate``: track every sequence of a split and score it.

    lighttrack evaluate --dataset DATA --split val --arch lighttrack-mobile \\
        [--checkpoint ckpt.pt] [--runtime torch|onnxruntime|openvino|ncnn|executorch|tensorrt] \\
        [--batch auto|1|K] --out results/

``--checkpoint`` is a local file (StaticTracker or TrackSupernet weights, bare or under
``model``) or, for a deployment runtime, an export directory (``lighttrack export``); a
checkpoint is exported for that runtime on the fly. Without it the weights are fresh.
The sequences are tracked in lockstep, ``--batch`` at a time (an export directory's graphs
take one crop, so its sequences run one at a time, still with frames read ahead).
MLflow run/artifact URIs are resolved to a local path by ``ray_jobs`` before calling this.
"""
from __future__ import annotations

import argparse
import json

from lighttrack.commands.argtypes import count, positive_int

__all__ = ["register", "add_net_arguments", "build_net", "tracker_params"]


def add_net_arguments(p: argparse.ArgumentParser) -> None:
    """--arch, --checkpoint, --runtime, --device, --threads, --int8, --tracker, --set."""
    from lighttrack.tracker.runtimes import RUNTIMES

    p.add_argument("--arch", required=True, help="preset name (lighttrack-mobile, ...) or architecture string")
    p.add_argument("--checkpoint", default=None,
                   help="local weights file, or an export directory for a --runtime other than torch "
                        "(none: fresh weights)")
    # --backend: the name before runtimes other than ONNX Runtime existed
    p.add_argument("--runtime", "--backend", dest="backend", choices=("torch", *RUNTIMES), default="torch",
                   help="torch (eager) or a deployment runtime (default torch)")
    p.add_argument("--device", default="cpu", help="torch backend: cpu, cuda or cuda:N")
    p.add_argument("--threads", type=positive_int, default=1, help="CPU threads for the network")
    p.add_argument("--int8", action="store_true", help="onnxruntime: use the int8 graphs of the export")
    p.add_argument("--tracker", default="vot2019", help="tracker preset (vot2019, released) or YAML file")
    p.add_argument("--set", action="extend", nargs="+", default=[], metavar="KEY=VALUE",
                   help="tracker parameter overrides (several after one --set, or --set repeated)")


def build_net(args: argparse.Namespace):
    import torch

    from lighttrack.arch import resolve
    from lighttrack.tracker.runtime import load_net

    torch.set_num_threads(args.threads)
    if args.backend != "torch" and args.device != "cpu":
        raise SystemExit(f"error: --device {args.device} needs --runtime torch (the deployment runtimes pick "
                         "their own device)")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit(f"error: --device {args.device}: this machine has no CUDA device")
    return load_net(resolve(args.arch), args.checkpoint, args.backend, args.threads, args.int8, device=args.device)


def tracker_params(args: argparse.Namespace):
    from lighttrack.tracker.params import load_params

    return load_params(args.tracker, args.set)


def batch_size(text: str) -> int | str:
    """argparse type of --batch: ``auto`` or a positive number of sequences."""
    if text == "auto":
        return text
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected 'auto' or a positive number of sequences, got {text!r}")
    return value


def _run_vot(args: argparse.Namespace) -> int:
    from lighttrack.tracker import Tracker
    from lighttrack.tracker.vot import evaluate_vot, open_vot, vot_line

    dataset = open_vot(args.dataset, args.max_sequences)
    tracker = Tracker(build_net(args), tracker_params(args))

    def report(info: dict) -> None:
        print(f"[{info['index'] + 1}/{len(dataset)}] {info['sequence']}: {info['frames']} frames, "
              f"{info['failures']} failures", flush=True)

    scores = evaluate_vot(tracker, dataset, args.out, report=report)
    print(json.dumps({k: v for k, v in scores.items() if "curve" not in k}, indent=2))
    print(vot_line(scores))
    return 0


def _run(args: argparse.Namespace) -> int:
    from lighttrack.tracker.evaluation import evaluate_split, open_split

    if args.protocol == "vot":
        return _run_vot(args)
    dataset = open_split(args.dataset, args.split, args.layout, args.max_sequences)
    net = build_net(args)

    done = []

    def report(info: dict) -> None:  # sequences finish out of order in lockstep
        done.append(info["sequence"])
        print(f"[{len(done)}/{len(dataset)}] {info['sequence']}: {info['frames']} frames", flush=True)

    scores = evaluate_split(net, dataset, args.out, tracker_params(args), report=report, batch=args.batch)
    from lighttrack.tracker.evaluation import baseline_line

    shown = {k: v for k, v in scores.items() if k != "success_curve"}
    print(json.dumps(shown, indent=2))
    if scores.get("scored"):
        print(baseline_line(scores))
        for level, g in scores.get("by_difficulty", {}).items():
            print(f"  {level:<8} AO {g['ao']:.4f} (stays at the first box: {g['baseline_ao']:.4f}), "
                  f"{g['sequences']} sequence(s)")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("evaluate", help="track a split and write GOT-10k results + scores.json")
    p.add_argument("--dataset", required=True, help="dataset root (GOT-10k, embedded, LaSOT or folders)")
    p.add_argument("--split", default="val", help="GOT-10k split (train, val, test)")
    p.add_argument("--layout", choices=("got10k", "lasot", "folder"), default=None,
                   help="dataset layout (detected when omitted)")
    p.add_argument("--max-sequences", type=count, default=0, help="only the first N sequences (0: all)")
    p.add_argument("--protocol", choices=("auto", "vot"), default="auto",
                   help="auto: one pass, GOT-10k (AO) or OTB (AUC) by layout; vot: VOT-layout sequences, "
                        "supervised experiment with re-initialisation (accuracy, failures, EAO)")
    p.add_argument("--out", required=True, help="results directory")
    p.add_argument("--batch", type=batch_size, default="auto",
                   help="sequences tracked in lockstep: auto (as many as memory and the device suit), 1 or K")
    add_net_arguments(p)
    p.set_defaults(func=_run)
