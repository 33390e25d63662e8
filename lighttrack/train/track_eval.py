"""Validation of fixed architectures during phase 2 / 4 (the tracker's own evaluation).

Each path is tracked on the first ``max_sequences`` validation sequences by the config's
metric (``tracker.validation``: GOT-10k AO or VOT EAO) after re-estimating its BN
statistics on training pairs (the supernet's statistics are restored afterwards). Logged
as ``val_<metric>...`` beside ``val_baseline_<metric>``, the tracker that stays at its
start box on the same frames.
"""
from __future__ import annotations

from typing import Callable, Iterable, Sequence

import torch
from torch import nn

from lighttrack.arch import Arch
from lighttrack.models.bn import recalibrated
from lighttrack.tracker.params import load_params
from lighttrack.tracker.validation import Validation, open_validation, score
from lighttrack.train.common import pair_batch, unwrap
from lighttrack.train.config import SupernetConfig, TrackEvalConfig

__all__ = ["open_val", "track_scores", "supernet_evaluator", "static_evaluator"]


def eval_archs(cfg: SupernetConfig) -> list[Arch]:
    """The fixed paths whose validation is tracked every epoch of phase 2: ``cfg.eval.paths``
    (checked against ``cfg.space``: a stride-8 path on a paper-space supernet fails in the
    job's driver, before training), else ``cfg.eval.num_paths`` drawn from ``cfg.run.seed``."""
    from lighttrack.arch import get_space, resolve
    from lighttrack.train.sampling import PathSampler

    if cfg.eval.paths:
        return [get_space(cfg.space).check(resolve(p)) for p in cfg.eval.paths]
    return PathSampler(cfg.run.seed, cfg.space).eval_archs(cfg.eval.num_paths)


def open_val(cfg: TrackEvalConfig) -> Validation:
    """The validation sequences (first ``max_sequences``), read and checked once."""
    return open_validation(cfg.root, cfg.split, cfg.metric, cfg.max_sequences)


def track_scores(net: nn.Module, val: Validation, cfg: TrackEvalConfig) -> dict:
    """Scores (``fitness``, ``baseline_fitness``, the protocol's figures) of ``net``
    (template/search module, eval mode) on ``val``."""
    with torch.no_grad():
        return score(net, val, load_params(cfg.tracker))


def _pair_forward(net: Callable, arch: Arch | None, device: torch.device) -> Callable[[dict], object]:
    def fwd(batch: dict):
        b = pair_batch(batch, device)
        return net(b["template"], b["search"], arch) if arch is not None else net(b["template"], b["search"])
    return fwd


def supernet_evaluator(cfg: TrackEvalConfig, archs: Sequence[Arch], recal_batches: Iterable[dict] | None,
                       device: torch.device) -> Callable[[nn.Module, int], dict]:
    """``evaluate(supernet, epoch) -> {"val_<m>/path<i>": ..., "val_<m>/mean": ...}`` (m = ao | eao)."""
    val, m = open_val(cfg), cfg.metric

    def evaluate(model: nn.Module, epoch: int) -> dict:
        model = unwrap(model)
        out = {}
        for i, arch in enumerate(archs):
            with recalibrated(model, _pair_forward(model, arch, device), recal_batches, cfg.recalibrate_batches):
                scores = track_scores(model.path(arch), val, cfg)
            out[f"val_{m}/path{i}"] = scores["fitness"]
        out[f"val_{m}/mean"] = sum(out.values()) / max(len(archs), 1)
        out[f"val_baseline_{m}"] = scores["baseline_fitness"]  # stays at the first box, same frames
        return out
    return evaluate


def static_evaluator(cfg: TrackEvalConfig) -> Callable[[nn.Module, int], dict]:
    """``evaluate(static_tracker, epoch) -> {"val_ao": ao, "val_sr50": ...}`` or, by VOT,
    ``{"val_eao", "val_accuracy", "val_failures", ...}`` (own BN statistics)."""
    val, m = open_val(cfg), cfg.metric
    figures = ("sr50",) if m == "ao" else ("accuracy", "failures")

    def evaluate(model: nn.Module, epoch: int) -> dict:
        model = unwrap(model)
        was = model.training
        model.eval()
        scores = track_scores(model, val, cfg)
        model.train(was)
        return {f"val_{m}": scores["fitness"], **{f"val_{k}": float(scores.get(k, float("nan"))) for k in figures},
                f"val_baseline_{m}": scores["baseline_fitness"]}
    return evaluate
