"""Learning-rate schedules and optimisers of the three training phases.

A schedule maps training time ``t`` in (fractional) epochs to the global learning rate:
a linear warm-up ``warmup_start_lr -> peak`` over ``warmup_epochs``, then a decay
``peak -> final_lr`` that reaches ``final_lr`` at ``t = epochs``:

* ``linear``   phase 1 (lr 0.5 annealed linearly to 0),
* ``log``      phase 2 (3e-2 -> 1e-4) and phase-4 fine-tune (1e-1 -> 2e-4): geometric interpolation,
* ``cosine``   phase-4 ImageNet retrain (0.064, half cosine),
* ``constant`` for debugging.

Each optimiser param group carries ``lr_mult``; :func:`set_lr` writes ``lr * lr_mult``
into every group at every step (phase 2: the backbone group runs at 0.1x).
"""
from __future__ import annotations

import math
from typing import Iterable

import torch
from torch import nn

from lighttrack.train.config import OptimConfig, ScheduleConfig

__all__ = ["lr_at", "set_lr", "build_optimizer", "param_groups", "DECAYS"]

DECAYS = ("linear", "log", "cosine", "constant")


def lr_at(t: float, peak: float, epochs: float, sched: ScheduleConfig) -> float:
    """Global learning rate at time ``t`` epochs of a run of ``epochs`` epochs."""
    if sched.decay not in DECAYS:
        raise ValueError(f"schedule.decay = {sched.decay!r}; expected one of {DECAYS}")
    if epochs <= 0:
        raise ValueError(f"epochs = {epochs}; must be > 0")
    w = min(float(sched.warmup_epochs), float(epochs))
    if t < w:
        return sched.warmup_start_lr + (peak - sched.warmup_start_lr) * t / w
    span = epochs - w
    f = 1.0 if span <= 0 else min(max((t - w) / span, 0.0), 1.0)  # decay progress in [0, 1]
    if sched.decay == "constant":
        return peak
    if sched.decay == "linear":
        return peak + (sched.final_lr - peak) * f
    if sched.decay == "cosine":
        return sched.final_lr + (peak - sched.final_lr) * 0.5 * (1.0 + math.cos(math.pi * f))
    if sched.final_lr <= 0 or peak <= 0:
        raise ValueError(f"log decay needs peak and final_lr > 0, got {peak} -> {sched.final_lr}")
    return math.exp(math.log(peak) + (math.log(sched.final_lr) - math.log(peak)) * f)


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Write ``lr * group['lr_mult']`` into every param group."""
    for g in optimizer.param_groups:
        g["lr"] = lr * g.get("lr_mult", 1.0)


def param_groups(model: nn.Module, backbone_lr_mult: float | None = None) -> list[dict]:
    """One group for everything, or (backbone, rest) when ``backbone_lr_mult`` is given.

    The backbone is the submodule named ``backbone`` (TrackSupernet, StaticTracker).
    """
    if backbone_lr_mult is None:
        return [{"params": list(model.parameters()), "lr_mult": 1.0, "name": "all"}]
    backbone = getattr(model, "backbone", None)
    if backbone is None:
        raise ValueError(f"{type(model).__name__} has no 'backbone' submodule for a separate lr")
    ids = {id(p) for p in backbone.parameters()}
    rest = [p for p in model.parameters() if id(p) not in ids]
    return [{"params": list(backbone.parameters()), "lr_mult": backbone_lr_mult, "name": "backbone"},
            {"params": rest, "lr_mult": 1.0, "name": "head"}]


def build_optimizer(groups: Iterable[dict], cfg: OptimConfig) -> torch.optim.Optimizer:
    """SGD (phases 1, 2, fine-tune: the paper's), RMSProp (ImageNet retrain) or AdamW (the
    small-compute configs: a fixed path learned from 2k-6k pairs with it, docs/results.md
    "fixed-path ceiling"; torch's betas and eps, not the RMSProp fields) over ``groups``."""
    groups = list(groups)
    if cfg.name == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum,
                               weight_decay=cfg.weight_decay, nesterov=cfg.nesterov)
    if cfg.name == "rmsprop":
        return torch.optim.RMSprop(groups, lr=cfg.lr, alpha=cfg.alpha, eps=cfg.eps,
                                   momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    if cfg.name == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
    raise ValueError(f"optim.name = {cfg.name!r}; expected 'sgd', 'rmsprop' or 'adamw'")
