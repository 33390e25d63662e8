"""Val AO of fixed architectures during phase 2 / 4 (the tracker's own evaluation).

Each path is tracked on the first ``max_sequences`` val sequences with
``lighttrack.tracker.evaluation.evaluate_split`` after re-estimating its BN statistics
on training pairs (the supernet's statistics are restored afterwards).
"""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Callable, Iterable, Sequence

import torch
from torch import nn

from lighttrack.arch import Arch
from lighttrack.train.bn import path_bn_recalibrated
from lighttrack.train.common import pair_batch, unwrap
from lighttrack.train.config import TrackEvalConfig

__all__ = ["open_val", "track_ao", "supernet_evaluator", "static_evaluator"]


def open_val(cfg: TrackEvalConfig):
    """The GOT-10k-layout reader of the val sequences (first ``max_sequences``)."""
    from lighttrack.data.readers import Got10k
    reader = Got10k(cfg.root, cfg.split)
    if cfg.max_sequences:
        reader = Got10k(cfg.root, cfg.split, names=list(reader.sequence_names)[:cfg.max_sequences])
    return reader


def track_ao(net: nn.Module, reader, cfg: TrackEvalConfig, out_dir: str | Path) -> dict:
    """Scores (``ao``, ``sr50``, ...) of ``net`` (template/search module, eval mode) on ``reader``."""
    from lighttrack.tracker.evaluation import evaluate_split
    from lighttrack.tracker.params import load_params
    with torch.no_grad():
        return evaluate_split(net, reader, out_dir, load_params(cfg.tracker), plot=False)


def _pair_forward(net: Callable, arch: Arch | None, device: torch.device) -> Callable[[dict], object]:
    def fwd(batch: dict):
        b = pair_batch(batch, device)
        return net(b["template"], b["search"], arch) if arch is not None else net(b["template"], b["search"])
    return fwd


def supernet_evaluator(cfg: TrackEvalConfig, archs: Sequence[Arch], recal_batches: Iterable[dict] | None,
                       device: torch.device) -> Callable[[nn.Module, int], dict]:
    """``evaluate(supernet, epoch) -> {"val_ao/path<i>": ao, "val_ao/mean": ...}``."""
    reader = open_val(cfg)

    def evaluate(model: nn.Module, epoch: int) -> dict:
        model = unwrap(model)
        out = {}
        for i, arch in enumerate(archs):
            with path_bn_recalibrated(model, _pair_forward(model, arch, device), recal_batches,
                                      cfg.recalibrate_batches), tempfile.TemporaryDirectory() as tmp:
                model.eval()
                scores = track_ao(model.path(arch), reader, cfg, tmp)
            out[f"val_ao/path{i}"] = float(scores["ao"])
        out["val_ao/mean"] = sum(out.values()) / max(len(archs), 1)
        out["val_baseline_ao"] = float(scores["baseline_ao"])  # stays at the first box, same frames
        return out
    return evaluate


def static_evaluator(cfg: TrackEvalConfig) -> Callable[[nn.Module, int], dict]:
    """``evaluate(static_tracker, epoch) -> {"val_ao": ao, "val_sr50": ...}`` (own BN statistics)."""
    reader = open_val(cfg)

    def evaluate(model: nn.Module, epoch: int) -> dict:
        model = unwrap(model)
        was = model.training
        model.eval()
        with tempfile.TemporaryDirectory() as tmp:
            scores = track_ao(model, reader, cfg, tmp)
        model.train(was)
        return {"val_ao": float(scores["ao"]), "val_sr50": float(scores.get("sr50", float("nan"))),
                "val_baseline_ao": float(scores["baseline_ao"])}
    return evaluate
