"""``lighttrack export``: a found tracker as deployable graphs with a model card.

    lighttrack export --arch lighttrack-mobile --checkpoint ckpt.pt --out export/ \\
        [--runtime onnxruntime openvino ncnn executorch tensorrt] \\
        [--dataset DATA --split val] [--int8] [--supernet NAME --run RUN_ID]

Writes template/search graphs (torch.export ``.pt2`` and ONNX), BN and normalisation
folded, each ``--runtime``'s own graphs in a subfolder, and ``model_card.json``. Every
runtime's graphs are checked against eager PyTorch before the export is kept
(tracker/parity.py: heads within 1e-3 relative on real crops, boxes within 1 px over a
whole sequence: the dataset's first, or one rendered): a failed check is an error and
leaves nothing behind. The card gives each runtime's version, parity figures and
latency at ``--threads``. With ``--dataset`` every runtime's export is evaluated on the
split (AO in the card); ``--int8`` adds ONNX Runtime int8 graphs calibrated on crops
of that split, and their AO change. With ``--vot`` it also runs the VOT supervised
experiment on a VOT sequences folder (EAO, accuracy, failures in the card's
``scores.vot``), each figure beside the stay-at-start tracker's.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from lighttrack.commands.argtypes import count, positive_int

__all__ = ["register"]


def _ao(net, dataset, sequences: list, params) -> dict:
    """The card's figures of ``net`` on ``dataset`` (its ``sequences`` read once), scored in memory."""
    from lighttrack.tracker.evaluation import evaluate_split

    s = evaluate_split(net, dataset, None, params, plot=False, sequences=sequences)
    keep = ("ao", "sr50", "sr75", "success_auc", "precision", "baseline_ao", "baseline_success_auc",
            "beats_baseline", "fps")
    return {k: s[k] for k in keep if k in s}


VOT_KEEP = ("eao", "accuracy", "robustness", "failures", "baseline_eao", "baseline_accuracy", "baseline_failures",
            "beats_baseline", "sequences", "eao_interval", "eao_interval_covered")


def _run(args: argparse.Namespace) -> int:
    import torch

    from lighttrack.arch import resolve
    from lighttrack.atomic import atomic_dir
    from lighttrack.commands.evaluate import tracker_params
    from lighttrack.models.complexity import count
    from lighttrack.tracker.evaluation import open_split, read_split
    from lighttrack.tracker.export import (calibration_crops, dataset_samples, export_tracker, quantize_int8,
                                           write_card)
    from lighttrack.tracker.parity import RenderedSequence, check_parity, latency_ms
    from lighttrack.tracker.runtime import ExportedNet, load_torch_net
    from lighttrack.tracker.runtimes import get_runtime
    from lighttrack.tracker.validation import open_validation, score

    torch.set_num_threads(args.threads)
    arch = resolve(args.arch)
    params = tracker_params(args)
    runtimes = list(dict.fromkeys(["onnxruntime", *args.runtime]))  # ONNX is the interchange: always
    for r in runtimes:  # a runtime that cannot run here stops the export before it starts
        get_runtime(r).require()
    if args.int8 and not args.dataset:
        raise ValueError("--int8 needs --dataset (calibration crops and the AO change come from it)")
    dataset = open_split(args.dataset, args.split, None, args.max_sequences) if args.dataset else None
    # a broken split stops here, before anything is exported; its sequences score every runtime
    sequences = read_split(dataset) if dataset is not None else None
    vot = open_validation(args.vot, metric="eao", max_sequences=args.max_sequences) if args.vot else None
    net = load_torch_net(arch, args.checkpoint)
    sequence = sequences[0] if dataset is not None else RenderedSequence.render(seed=0)
    crops = calibration_crops(dataset_samples(dataset, args.calibration) if dataset is not None else
                              [(sequence.read_frame(k), sequence.boxes[k]) for k in range(0, len(sequence), 6)
                               if not sequence.absent[k]])
    out = Path(args.out)
    # Everything is written and scored in a hidden folder inside `out` and moved in at the end:
    # a failure leaves no graphs and no model card that look like a finished export.
    with atomic_dir(out) as tmp:
        files = export_tracker(net, tmp, torch_export=not args.no_torch_export, runtimes=runtimes)
        if args.int8:
            files["onnx_int8"] = quantize_int8(tmp, files, crops)
        c = count(arch)
        card = write_card(tmp, arch=arch, files=files, params=params,
                          complexity={"params": c.params, "macs": c.macs},
                          source={"checkpoint": args.checkpoint, "supernet": args.supernet, "run": args.run})
        info, scores = {}, {}
        for r in runtimes:
            exported = ExportedNet(tmp, r, args.threads)
            parity = check_parity(net, exported, sequence, params, crops, runtime=r)
            info[r] = {"version": get_runtime(r).version(), "threads": args.threads,
                       "image_input": "float (1, 3, H, W), 0-255" if get_runtime(r).planar else "uint8 (1, H, W, 3)",
                       "parity": parity, "latency_ms": latency_ms(exported)}
            print(f"{r}: heads within {parity['heads_rel_max']:.1e} of eager, boxes within {parity['boxes_px']:.3f} "
                  f"px over {parity['frames']} frames; search {info[r]['latency_ms']['search_256']:.2f} ms "
                  f"at {args.threads} thread(s)")
            if dataset is not None:
                scores[r] = _ao(exported, dataset, sequences, params)
        if dataset is not None:
            scores = {"dataset": str(args.dataset), "split": args.split, "sequences": len(dataset),
                      **scores["onnxruntime"], "runtimes": scores}
            if args.int8:
                q = _ao(ExportedNet(tmp, "onnxruntime", args.threads, int8=True), dataset, sequences, params)
                scores["int8"] = q
                if "ao" in q:
                    scores["ao_change_int8"] = q["ao"] - scores["ao"]
        if vot is not None:
            s = score(ExportedNet(tmp, "onnxruntime", args.threads), vot, params)
            scores["vot"] = {"dataset": str(args.vot), **{k: s[k] for k in VOT_KEEP}}
        data = json.loads(card.read_text())
        data["runtimes"], data["scores"] = info, scores
        card.write_text(json.dumps(data, indent=2))
    print(f"exported {arch.to_released()} to {out} for {', '.join(runtimes)}: "
          f"{sum(len(g) for g in files.values())} graphs")
    print(f"model card: {out / card.name}")
    return 0


def register(subparsers) -> None:
    from lighttrack.tracker.runtimes import RUNTIMES

    p = subparsers.add_parser("export", help="export a tracker for deployment runtimes, checked against eager, with a model card")
    p.add_argument("--arch", required=True, help="preset name or architecture string")
    p.add_argument("--checkpoint", default=None, help="local weights file (none: fresh weights)")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--runtime", nargs="+", default=["onnxruntime"], choices=sorted(RUNTIMES), metavar="RUNTIME",
                   help=f"runtimes to export for, besides ONNX Runtime: {', '.join(sorted(RUNTIMES))}")
    p.add_argument("--int8", action="store_true", help="also write ONNX Runtime int8 graphs (needs --dataset)")
    p.add_argument("--dataset", default=None, help="evaluate the export on this dataset's split")
    p.add_argument("--split", default="val")
    p.add_argument("--vot", default=None, metavar="SEQUENCES",
                   help="also score the export by the VOT supervised experiment on this VOT sequences folder")
    p.add_argument("--max-sequences", type=count, default=0, help="only the first N sequences (0: all)")
    p.add_argument("--calibration", type=positive_int, default=32, help="int8 calibration crops")
    p.add_argument("--supernet", default=None, help="supernet the weights came from (model card)")
    p.add_argument("--run", default=None, help="training/search run id (model card)")
    p.add_argument("--tracker", default="vot2019", help="tracker preset or YAML written into the card")
    p.add_argument("--set", action="extend", nargs="+", default=[], metavar="KEY=VALUE",
                   help="tracker parameter overrides (several after one --set, or --set repeated)")
    p.add_argument("--threads", type=positive_int, default=1)
    p.add_argument("--no-torch-export", action="store_true", help="ONNX only (skip the .pt2 programs)")
    p.set_defaults(func=_run)
