"""The small size's training recipe against variants of it, on one device, without Ray.

    python bench/bench_small_recipes.py --out DIR [--device cuda] [--data data/synth_small]
        [--recipes base,noretrain,p2x2] [--budget-s 480] [--json PATH]

Phase 1 runs once (configs/pretrain_small.yaml). Each recipe then trains phase 2 for its
multiple of configs/supernet_small.yaml's epochs (one supernet per multiple, shared by the
recipes that use it) and phase 4 (configs/retrain_small.yaml plus the recipe's overrides) on
one fixed architecture (``--arch``: by default the small run's found tracker), and tracks
all val sequences of the embedded small set. Every AO stands beside the AO of a tracker that
stays at the first box on the same frames, per difficulty level too. A recipe is skipped
when what is left of ``--budget-s`` is less than its phases took so far. Every figure is
printed as it comes and goes at once to DIR/recipes.json (or ``--json PATH``): ``device``,
``torch``, ``arch``, ``phase1``, ``recipes`` (name -> phase2, phase4, overrides, val), beside
the bench's machine and arguments.

On the CPU here a recipe takes about as long as the small pipeline's phases 2 and 4 (about
an hour); on one GPU, minutes. Without Ray and MLflow, so a bare GPU machine can run it.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # a bare machine: the checkout, not an installed package

import harness  # noqa: E402
from lighttrack.arch import resolve  # noqa: E402
from lighttrack.config import load  # noqa: E402
from lighttrack.train.common import Dist  # noqa: E402

# The small pipeline's found tracker (session 11, docs/notes/results-notebook.md).
FOUND = ("bb:k5e6,k5e6/k3e4,k3e4,k7e6,k3e4/k7e6,k7e4,k5e4+cls:128:k3,k3,skip,skip,k5,k3,k3,k5"
         "+reg:256:k3,skip,k5,k3,skip,k5,k5,k5")

# name -> (multiple of phase 2's epochs, phase-4 overrides)
RECIPES = {
    "base": (1, []),
    "noretrain": (1, ["retrain.enabled=false"]),
    "p2x2": (2, []),
    "p2x2-noretrain": (2, ["retrain.enabled=false"]),
    "p2x4": (4, []),
    "p2x4-noretrain": (4, ["retrain.enabled=false"]),
}


class Last:
    """A ``report`` callback keeping the last epoch's metrics and checkpoint state."""

    def __init__(self) -> None:
        self.metrics: dict = {}
        self.state: dict | None = None
        self.steps = 0

    def __call__(self, metrics: dict, state: dict | None = None) -> None:
        if state is None:
            self.steps += "step" in metrics
            return
        self.metrics, self.state = metrics, state


@dataclass(frozen=True)
class Setup:
    """Where the recipes run; ``steps`` (a dry run) replaces every stage's steps_per_epoch."""

    device: torch.device
    workers: int  # loader workers
    steps: int = 0
    amp: str = ""  # run.amp; "" = auto on CUDA, off on the CPU
    batch: int = 0  # every stage's batch_size instead of the config's (0 = the config's)
    log_every: int = 0  # run.log_every (steps between reads off the device; 0 = the config's)
    channels_last: bool = False  # run.channels_last

    def overrides(self, *stages: str) -> list[str]:
        amp = self.amp or ("auto" if self.device.type == "cuda" else "off")
        steps = [f"{s}steps_per_epoch={self.steps}" for s in stages] if self.steps else []
        batch = [f"{s}batch_size={self.batch}" for s in stages] if self.batch else []
        log = ([f"run.log_every={self.log_every}"] if self.log_every else []) + (
            ["run.channels_last=true"] if self.channels_last else [])
        return [f"run.amp={amp}", f"run.loader_workers={self.workers}", *steps, *batch, *log]


def _reroot(pairs, data: Path) -> None:
    """The config's pair sources, read from ``data``'s GOT-10k folder (its other settings kept)."""
    pairs.sources = [replace(src, root=str(data / "got10k")) for src in pairs.sources]


def phase1(data: Path, run: Setup, epochs: int = 0) -> tuple[dict, dict]:
    """configs/pretrain_small.yaml (``epochs``: that many instead); (figures, the supernet's state)."""
    from lighttrack.train import pretrain
    from lighttrack.train.config import PretrainConfig

    cfg = load(PretrainConfig, ROOT / "configs/pretrain_small.yaml",
               [f"data_root={data / 'imagenet'}", *run.overrides(""), *([f"epochs={epochs}"] if epochs else [])])
    rep = Last()
    t0 = time.perf_counter()
    pretrain.run(cfg, Dist(device=run.device), rep, evaluate=False)
    return {"seconds": time.perf_counter() - t0, "steps": rep.steps, "batch": cfg.batch_size,
            "train_loss": rep.metrics.get("train_loss")}, rep.state["model"]


def phase2(data: Path, run: Setup, mult: int, backbone: dict, overrides: list[str] = (), curve: bool = False,
           on_step=None) -> tuple[dict, torch.nn.Module]:
    """configs/supernet_small.yaml (plus ``overrides``) at ``mult`` x its epochs; ``curve``:
    (step, loss) of every logged step in the figures; ``on_step()`` after every step (a profiler's)."""
    from lighttrack.train.config import SupernetConfig
    from lighttrack.train.tracking import run_supernet

    cfg = load(SupernetConfig, ROOT / "configs/supernet_small.yaml",
               ["eval.paths=[]", "eval.num_paths=0", *run.overrides(""), *overrides])
    cfg = replace(cfg, epochs=cfg.epochs * mult)
    _reroot(cfg.data, data)
    rep, losses = Last(), []

    def report(metrics: dict, state: dict | None = None) -> None:
        rep(metrics, state)
        if state is None and "loss" in metrics:  # the logged steps (run.log_every)
            losses.append((int(metrics["global_step"]), round(float(metrics["loss"]), 4)))
        if state is None and on_step is not None:  # every step
            on_step()

    t0 = time.perf_counter()
    model = run_supernet(cfg, Dist(device=run.device), report, init=backbone)
    return {"seconds": time.perf_counter() - t0, "steps": rep.steps, "epochs": cfg.epochs, "batch": cfg.batch_size,
            "train_cls": rep.metrics.get("train_cls"), "train_reg": rep.metrics.get("train_reg"),
            **({"curve": losses} if curve else {})}, model


def phase4(data: Path, run: Setup, arch, supernet, overrides: list[str]) -> tuple[dict, torch.nn.Module]:
    from lighttrack.models import StaticTracker
    from lighttrack.train.config import RetrainConfig
    from lighttrack.train.retrain import retrain_tracker

    cfg = load(RetrainConfig, ROOT / "configs/retrain_small.yaml",
               [f"retrain.data_root={data / 'imagenet'}", f"finetune.eval.root={data / 'got10k'}",
                "finetune.eval.max_sequences=1",  # the loop's own check; the bench tracks every sequence after
                "finetune.eval.before_training=false", *run.overrides("retrain.", "finetune."), *overrides])
    _reroot(cfg.finetune.data, data)
    reports: dict[str, Last] = {}

    def reporter(stage: str, epochs: int) -> Last:
        return reports.setdefault(stage, Last())

    t0 = time.perf_counter()
    retrain_tracker(cfg, arch, supernet, reporter, Dist(device=run.device))
    tracker = StaticTracker.build(arch)
    tracker.load_state_dict(reports["finetune"].state["model"])
    return {"seconds": time.perf_counter() - t0, "retrain_steps": reports["retrain"].steps if "retrain" in reports else 0,
            "finetune_steps": reports["finetune"].steps, "train_cls": reports["finetune"].metrics.get("train_cls"),
            "train_reg": reports["finetune"].metrics.get("train_reg")}, tracker


def track(data: Path, tracker: torch.nn.Module, device: torch.device) -> dict:
    """AO on every val sequence beside the stay-put AO, per difficulty level too."""
    from lighttrack.tracker.params import load_params
    from lighttrack.tracker.validation import open_validation, score

    val = open_validation(str(data / "got10k"), "val", "ao")
    t0 = time.perf_counter()
    with torch.no_grad():
        s = score(tracker.to(device).eval(), val, load_params("vot2019"))
    return {"ao": s["ao"], "baseline_ao": s["baseline_ao"], "sequences": s["sequences"],
            "by_difficulty": s.get("by_difficulty"), "seconds": time.perf_counter() - t0}


def main(argv: list[str] | None = None) -> int:
    p = harness.parser(__doc__)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--data", type=Path, help="the embedded small set (default: written to a temporary folder)")
    p.add_argument("--arch", default=FOUND)
    p.add_argument("--recipes", default="base,noretrain,p2x2-noretrain,p2x2,p2x4-noretrain,p2x4")
    p.add_argument("--workers", type=int, default=min(6, max(0, (os.cpu_count() or 1) - 2)), help="loader workers")
    p.add_argument("--budget-s", type=float, default=1e9)
    p.add_argument("--steps", type=int, default=0, help=argparse.SUPPRESS)  # every stage's steps_per_epoch: a dry run
    p.add_argument("--supernet-only", action="store_true",
                   help="train and save the recipes' phase-2 supernets (OUT/supernet_x<multiple>.pt), no phase 4")
    args = p.parse_args(argv)
    names = args.recipes.split(",")
    unknown = [n for n in names if n not in RECIPES]
    if unknown:
        p.error(f"unknown recipes {unknown}; known: {', '.join(RECIPES)}")
    args.out.mkdir(parents=True, exist_ok=True)
    begin, device, arch = time.perf_counter(), torch.device(args.device), resolve(args.arch)
    run = Setup(device, args.workers, args.steps)
    report = harness.Report("bench_small_recipes", args, device, path=args.json or args.out / "recipes.json")
    results: dict = {}  # name -> figures, recorded again after each recipe
    report.data.update({"device": str(device), "torch": torch.__version__, "arch": str(arch), "recipes": results,
                        **({"gpu": torch.cuda.get_device_name(0)} if device.type == "cuda" else {})})
    report.save()

    with tempfile.TemporaryDirectory(prefix="lt-recipes-") as tmp:
        data = args.data
        if data is None:
            from lighttrack.data.synth import write

            t0 = time.perf_counter()
            data = Path(tmp) / "synth_small"
            write(data, seed=0, size="small", workers=max(1, os.cpu_count() or 1))
            report.record("data_seconds", time.perf_counter() - t0, echo=True)
        p1, backbone = phase1(data, run)
        report.record("phase1", p1, echo=True)
        supernets: dict[int, tuple[dict, torch.nn.Module]] = {}
        spent: dict[str, float] = {}  # what each recipe took, for the budget
        for name in names:
            mult, overrides = RECIPES[name]
            need = (0 if mult in supernets else spent.get("p2", 0) * mult) + spent.get("p4", 0)
            left = args.budget_s - (time.perf_counter() - begin)
            if need > left:
                results[name] = {"skipped": f"{need:.0f} s needed, {left:.0f} s left"}
                report.figure(f"{name} val AO", "skipped", note=results[name]["skipped"])
                report.record("recipes", results)
                continue
            if mult not in supernets:
                supernets[mult] = phase2(data, run, mult, backbone)
                spent["p2"] = supernets[mult][0]["seconds"] / mult
                # a checkpoint as phase 2 writes it, for `lighttrack` and the search benches
                torch.save({"model": supernets[mult][1].state_dict(), "phase": "supernet"},
                           args.out / f"supernet_x{mult}.pt")
            p2, supernet = supernets[mult]
            if args.supernet_only:
                results[name] = {"phase2": p2, "supernet": str(args.out / f"supernet_x{mult}.pt")}
                report.record("recipes", results)
                continue
            p4, tracker = phase4(data, run, arch, supernet, overrides)
            t0 = time.perf_counter()
            try:
                v = track(data, tracker, device)
            except Exception:  # noqa: BLE001: the trained recipes' figures are kept
                import traceback

                v = {"error": traceback.format_exc(), "ao": float("nan"), "baseline_ao": float("nan"),
                     "by_difficulty": None}
            spent["p4"] = max(spent.get("p4", 0), p4["seconds"] + time.perf_counter() - t0)
            results[name] = {"phase2": p2, "phase4": p4, "overrides": overrides, "val": v}
            report.figure(f"{name} val AO", v["ao"], note=f"stays at the first box: {v['baseline_ao']:.4f}; by "
                          f"difficulty {json.dumps(v['by_difficulty'])}; phase2 {p2['seconds']:.0f} s, phase4 {p4['seconds']:.0f} s",
                          baseline_ao=v["baseline_ao"], by_difficulty=v["by_difficulty"])
            report.record("recipes", results)
    report.figure("seconds", time.perf_counter() - begin, "s", note=f"figures in {report.path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
