"""Phase 2 (tracking supernet) and phase-4b (fine-tune of one found architecture) loops.

Both train on tracking pairs with ``cls + reg`` loss (losses.py) and the same schedule
shape (warm-up, then logarithmic decay); they differ in what runs:

* phase 2: a ``TrackSupernet``; every step one uniformly random path (``PathSampler``,
  identical on every rank), optionally after a warm-up on the largest architecture
  (``largest_warmup_epochs``, as phase 1); or, with ``sandwich: n``, the largest plus n
  uniform paths per step, each path distilled from the largest's score map;
* phase 4b: a ``StaticTracker``; always the same network.

Frozen backbone (phase 2, first ``backbone_freeze_epochs``): the backbone's parameters
get ``requires_grad=False`` (so SGD, weight decay and momentum never touch them) and its
BatchNorm layers stay in eval mode, so the phase-1 running statistics are frozen too —
a frozen backbone is a fixed function. When it thaws, the model is re-wrapped for DDP
(DDP only syncs parameters that required grad when it was built) and trains at
``backbone_lr_mult`` x the global lr.
"""
from __future__ import annotations

import time
from typing import Callable

import torch
from torch import nn
from torch.utils.data import DataLoader

from lighttrack.arch import Arch, resolve
from lighttrack.train.common import (
    Amp, Dist, EtaClock, Report, cycle_epochs, pair_batch, restore, set_loader_epoch, unwrap,
)
from lighttrack.train.config import RunConfig
from lighttrack.train.losses import TrackingLoss, score_distillation, tracking_loss
from lighttrack.train.sampling import LargestWarmup, PathSampler
from lighttrack.train.schedules import build_optimizer, lr_at, param_groups, set_lr

__all__ = ["train_tracking", "set_backbone_frozen"]

LARGEST = resolve("largest")  # k7e6 everywhere, both heads 256 channels of k5 layers

# (model, epoch) -> epoch metrics; run on rank 0 only.
Evaluate = Callable[[nn.Module, int], dict]


def set_backbone_frozen(model: nn.Module, frozen: bool) -> None:
    """Freeze/thaw ``model.backbone`` parameters (BN mode is set per epoch by the loop)."""
    for p in unwrap(model).backbone.parameters():
        p.requires_grad_(not frozen)


def _train_mode(model: nn.Module, frozen: bool) -> None:
    model.train()
    if frozen:
        unwrap(model).backbone.eval()  # frozen BN statistics too


def train_tracking(model: nn.Module, train_loader: DataLoader, cfg, run: RunConfig, report: Report,
                   dist: Dist = Dist(), wrap=lambda m: m, state: dict | None = None,
                   sampler: PathSampler | None = None, evaluate: Evaluate | None = None) -> dict:
    """Train for ``cfg.epochs`` (cfg: SupernetConfig or FinetuneStageConfig).

    ``sampler`` given: ``model`` is a supernet called as ``model(z, x, arch)`` with the
    step's path; otherwise ``model(z, x)``. ``evaluate(model, epoch)`` adds epoch metrics
    (rank 0). Resumes from ``state`` (a dict this function reported) when given.
    """
    model.to(dist.device)
    optimizer = build_optimizer(param_groups(model, cfg.backbone_lr_mult), cfg.optim)
    amp = Amp(dist.device, run.amp)
    start_epoch, global_step = restore(state, model, optimizer, amp)
    if state is None and evaluate is not None and cfg.eval.before_training:
        # the same fixed paths untrained: the baseline the trained supernet must beat
        pre = evaluate(model, -1) if dist.is_main else {}
        report({f"untrained/{k}": v for k, v in pre.items()} | {"global_step": 0})
    # optional warm-up on the largest architecture (phase 2 only; see SupernetConfig)
    warmup = LargestWarmup(getattr(cfg, "largest_warmup_epochs", 0.0), LARGEST,
                           lambda: unwrap(model).inherit_from_largest_(backbone=not cfg.init),
                           done=bool(state and state.get("inherited")))
    sandwich = getattr(cfg, "sandwich", 0) if sampler is not None else 0
    distill_weight = getattr(cfg, "distill_weight", 0.0)
    frozen = start_epoch < cfg.backbone_freeze_epochs
    set_backbone_frozen(model, frozen)
    net = wrap(model)
    steps = cfg.steps_per_epoch or len(train_loader)
    clock = EtaClock(cfg.epochs * steps, start_epoch * steps)
    metrics: dict = {}
    for epoch in range(start_epoch, cfg.epochs):
        if frozen and epoch >= cfg.backbone_freeze_epochs:
            frozen = False
            set_backbone_frozen(model, False)
            net = wrap(unwrap(net))
        set_loader_epoch(train_loader, epoch)
        _train_mode(net, frozen)
        t_epoch, seen, sums = time.perf_counter(), 0, {"loss": 0.0, "cls": 0.0, "reg": 0.0}
        for step, batch in enumerate(cycle_epochs(train_loader, steps)):
            t0 = time.perf_counter()
            batch = pair_batch(batch, dist.device)
            lr = lr_at(epoch + step / steps, cfg.optim.lr, cfg.epochs, cfg.schedule)
            set_lr(optimizer, lr)
            arch: Arch | None = None
            if sampler is not None:
                arch = warmup.pick(epoch + step / steps, lambda: sampler.arch(epoch, step))
            optimizer.zero_grad(set_to_none=True)
            if sandwich and arch is not LARGEST:
                paths = [arch] + [sampler.arch(epoch, step, k) for k in range(1, sandwich)]  # arch: k = 0
                loss, arch = _sandwich_step(net, batch, amp, distill_weight, paths)
            else:
                with amp.autocast():
                    args = (batch["template"], batch["search"]) + ((arch,) if arch is not None else ())
                    cls, reg = net(*args)
                loss = tracking_loss(cls, reg, batch)
            amp.step(loss.total, optimizer, list(model.parameters()), cfg.grad_clip)
            global_step += 1
            vals = {"loss": loss.total.item(), "cls": loss.cls.item(), "reg": loss.reg.item()}
            sums = {k: sums[k] + vals[k] for k in sums}
            seen += 1
            dt = time.perf_counter() - t0
            report(vals | {"lr": lr, "pairs_per_s": batch["template"].shape[0] * dist.world_size / dt,
                           "epoch": epoch, "step": step, "global_step": global_step,
                           "backbone_frozen": float(frozen), "eta_s": clock.eta_s(global_step),
                           **({"arch": str(arch)} if arch is not None else {})})
        metrics = {f"train_{k}": v / max(seen, 1) for k, v in sums.items()}
        metrics |= {"epoch": epoch, "lr": lr, "epoch_time_s": time.perf_counter() - t_epoch,
                    "eta_s": clock.eta_s(global_step), "global_step": global_step}
        last = epoch == cfg.epochs - 1
        if evaluate is not None and dist.is_main and (last or (epoch + 1) % max(cfg.eval.every, 1) == 0):
            metrics |= evaluate(unwrap(net), epoch)
        state = {"model": unwrap(net).state_dict(), "optimizer": optimizer.state_dict(),
                 "scaler": amp.scaler.state_dict(), "epoch": epoch, "global_step": global_step,
                 "inherited": warmup.done, "metrics": metrics}
        report(metrics, state)
    return metrics


def _sandwich_step(net, batch: dict, amp: Amp, distill_weight: float, paths: list[Arch]):
    """The sandwich rule's gradients for one batch: the largest architecture on the labels,
    then each of ``paths`` on the labels plus ``distill_weight`` x the BCE towards the
    largest's score map. One backward per forward (gradients add up; a DDP module
    all-reduces each), the last one left to the caller's optimiser step. Returns the last
    path's loss (what the step reports) and that path."""
    z, x = batch["template"], batch["search"]
    with amp.autocast():
        cls_t, reg_t = net(z, x, LARGEST)
    amp.backward(tracking_loss(cls_t, reg_t, batch).total)
    teacher = cls_t.detach()
    for k, arch in enumerate(paths):
        with amp.autocast():
            cls, reg = net(z, x, arch)
        loss = tracking_loss(cls, reg, batch)
        total = loss.total + distill_weight * score_distillation(cls, teacher)
        if k < len(paths) - 1:
            amp.backward(total)
    return TrackingLoss(total, loss.cls, loss.reg), arch
