"""Phase 4a: retrain the found backbone on ImageNet as a standalone classifier.

EfficientNet-like recipe (the paper's retrain settings, docs/method.md §11): RMSProp,
warm-up + cosine, dropout before the classifier, AutoAugment in the data pipeline, and an
exponential moving average of the weights; the EMA weights are what is evaluated and what
phase 4b starts from.
Phase 4b (the tracking fine-tune) is ``tracking.train_tracking`` on a StaticTracker.
"""
from __future__ import annotations

import time

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from lighttrack.train.common import (
    Amp, Dist, EtaClock, Report, cycle_epochs, restore, set_loader_epoch, to_device, unwrap,
)
from lighttrack.train.config import RetrainStageConfig, RunConfig
from lighttrack.train.ema import ModelEma
from lighttrack.train.pretrain import top1
from lighttrack.train.schedules import build_optimizer, lr_at, param_groups, set_lr

__all__ = ["train_classifier", "copy_backbone"]


def copy_backbone(dst: nn.Module, src: nn.Module) -> None:
    """``dst.backbone <- src.backbone`` (StaticClassifier <-> StaticTracker share names)."""
    unwrap(dst).backbone.load_state_dict(unwrap(src).backbone.state_dict())


def train_classifier(model: nn.Module, train_loader: DataLoader, val_loader: DataLoader | None,
                     cfg: RetrainStageConfig, run: RunConfig, report: Report, dist: Dist = Dist(),
                     wrap=lambda m: m, state: dict | None = None) -> tuple[dict, nn.Module]:
    """Train a StaticClassifier for ``cfg.epochs``; returns (last metrics, the model to keep:
    the EMA copy when ``cfg.ema_decay > 0``)."""
    model.to(dist.device)
    optimizer = build_optimizer(param_groups(model), cfg.optim)
    amp = Amp(dist.device, run.amp)
    ema = ModelEma(model, cfg.ema_decay) if cfg.ema_decay > 0 else None
    start_epoch, global_step = restore(state, model, optimizer, amp)
    if state is not None and ema is not None:
        ema.load_state_dict(state["ema"])
    net = wrap(model)
    steps = cfg.steps_per_epoch or len(train_loader)
    clock = EtaClock(cfg.epochs * steps, start_epoch * steps)
    metrics: dict = {}
    for epoch in range(start_epoch, cfg.epochs):
        set_loader_epoch(train_loader, epoch)
        net.train()
        t_epoch, seen, loss_sum = time.perf_counter(), 0, 0.0
        for step, (x, y) in enumerate(cycle_epochs(train_loader, steps)):
            t0 = time.perf_counter()
            x, y = to_device(x, dist.device), to_device(y, dist.device)
            lr = lr_at(epoch + step / steps, cfg.optim.lr, cfg.epochs, cfg.schedule)
            set_lr(optimizer, lr)
            with amp.autocast():
                loss = F.cross_entropy(net(x), y)
            optimizer.zero_grad(set_to_none=True)
            amp.step(loss, optimizer)
            if ema is not None:
                ema.update(model)
            global_step += 1
            loss_sum, seen = loss_sum + loss.item(), seen + 1
            report({"loss": loss.item(), "lr": lr, "images_per_s": x.shape[0] * dist.world_size / (time.perf_counter() - t0),
                    "epoch": epoch, "step": step, "global_step": global_step, "eta_s": clock.eta_s(global_step)})
        metrics = {"epoch": epoch, "train_loss": loss_sum / max(seen, 1), "lr": lr, "global_step": global_step,
                   "epoch_time_s": time.perf_counter() - t_epoch, "eta_s": clock.eta_s(global_step)}
        if dist.is_main and val_loader is not None:
            keep = ema.module if ema is not None else unwrap(model)
            keep.eval()
            metrics["top1"] = top1(keep, val_loader, dist.device, cfg.eval_batches)
        state = {"model": unwrap(model).state_dict(), "optimizer": optimizer.state_dict(),
                 "scaler": amp.scaler.state_dict(), "epoch": epoch, "global_step": global_step,
                 "ema": ema.state_dict() if ema is not None else None, "metrics": metrics}
        report(metrics, state)
    return metrics, (ema.module if ema is not None else unwrap(model))
