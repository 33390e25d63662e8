"""Phase 1: the backbone supernet on ImageNet-layout data, single-path uniform sampling.

Every step runs one random 18-block path (the same on every rank, see PathSampler);
only that path's parameters receive gradients. With ``zero_grad(set_to_none=True)`` the
other paths' weights are not touched at all (no momentum or weight-decay drift).
Optionally the largest path alone trains first, then the others inherit from it
(``largest_warmup_epochs``, see the config). Each epoch ends with the top-1 of a few
fixed paths (random ones and the largest) on held-out images, each measured
after re-estimating its BN statistics (the supernet's own statistics are a mixture over
paths); the supernet's statistics are restored afterwards.
"""
from __future__ import annotations

import time
from typing import Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from lighttrack.arch import MBCONV_OPS
from lighttrack.models.supernet import CLASS_PATH_LEN
from lighttrack.train.bn import path_bn_recalibrated
from lighttrack.train.common import (
    Amp, Dist, EtaClock, Report, cycle_epochs, restore, set_loader_epoch, to_device, unwrap,
)
from lighttrack.train.config import PretrainConfig
from lighttrack.train.sampling import LargestWarmup, PathSampler
from lighttrack.train.schedules import build_optimizer, lr_at, param_groups, set_lr

__all__ = ["train_backbone_supernet", "top1", "LARGEST_PATH"]

LARGEST_PATH = (len(MBCONV_OPS) - 1,) * CLASS_PATH_LEN  # k7e6 in all 18 blocks


@torch.no_grad()
def top1(forward, loader: Iterable, device: torch.device, max_batches: int = 0) -> float:
    """Top-1 accuracy of ``forward(x) -> logits`` over ``loader`` ((x, y) batches)."""
    correct = total = 0
    for i, (x, y) in enumerate(loader):
        if max_batches and i >= max_batches:
            break
        x, y = x.to(device), y.to(device)
        correct += (forward(x).argmax(1) == y).sum().item()
        total += y.numel()
    if total == 0:
        raise ValueError("top1: the held-out loader yields no image")
    return correct / total


def evaluate_paths(model: nn.Module, paths: dict[str, Sequence[int]], val_loader: DataLoader,
                   recal_loader: DataLoader | None, cfg: PretrainConfig, device: torch.device) -> dict:
    """``{"top1/<name>": acc}`` for each named fixed path (BN re-estimated per path when
    configured) and their mean."""
    out = {}
    for name, path in paths.items():
        fwd = lambda x, p=tuple(path): model(x, p)  # noqa: E731
        batches = (x.to(device) for x, _ in recal_loader) if recal_loader is not None else None
        with path_bn_recalibrated(model, fwd, batches, cfg.recalibrate_batches):
            model.eval()
            out[f"top1/{name}"] = top1(fwd, val_loader, device, cfg.eval_batches)
    out["top1/mean"] = sum(out.values()) / len(paths)
    return out


def train_backbone_supernet(model: nn.Module, train_loader: DataLoader, val_loader: DataLoader | None,
                            cfg: PretrainConfig, report: Report, dist: Dist = Dist(),
                            wrap=lambda m: m, state: dict | None = None,
                            recal_loader: DataLoader | None = None) -> dict:
    """Train ``model`` (a ClassSupernet) for ``cfg.epochs``; resume from ``state`` if given.

    ``wrap`` turns the model into its data-parallel form (DDP with
    ``find_unused_parameters=True``: a single path leaves most parameters unused).
    Returns the last epoch's metrics.
    """
    model.to(dist.device)
    optimizer = build_optimizer(param_groups(model), cfg.optim)
    amp = Amp(dist.device, cfg.run.amp)
    start_epoch, global_step = restore(state, model, optimizer, amp)
    net = wrap(model)
    steps = cfg.steps_per_epoch or len(train_loader)
    sampler = PathSampler(cfg.run.seed)
    eval_paths = {f"path{i}": p for i, p in enumerate(sampler.eval_backbone_paths(cfg.eval_paths))}
    if cfg.eval_paths:
        eval_paths["largest"] = LARGEST_PATH
    warmup = LargestWarmup(cfg.largest_warmup_epochs, LARGEST_PATH,
                           lambda: unwrap(model).backbone.inherit_from_largest_(),
                           done=bool(state and state.get("inherited")))
    clock = EtaClock(cfg.epochs * steps, start_epoch * steps)
    metrics: dict = {}
    for epoch in range(start_epoch, cfg.epochs):
        set_loader_epoch(train_loader, epoch)
        model.train()
        t_epoch, seen, loss_sum = time.perf_counter(), 0, 0.0
        for step, (x, y) in enumerate(cycle_epochs(train_loader, steps)):
            t0 = time.perf_counter()
            x, y = to_device(x, dist.device), to_device(y, dist.device)
            lr = lr_at(epoch + step / steps, cfg.optim.lr, cfg.epochs, cfg.schedule)
            set_lr(optimizer, lr)
            path = warmup.pick(epoch + step / steps, lambda: sampler.backbone_path(epoch, step))
            with amp.autocast():
                loss = F.cross_entropy(net(x, path), y)
            optimizer.zero_grad(set_to_none=True)
            amp.step(loss, optimizer)
            global_step += 1
            loss_v = loss.item()
            loss_sum, seen = loss_sum + loss_v, seen + 1
            dt = time.perf_counter() - t0
            report({"loss": loss_v, "lr": lr, "images_per_s": x.shape[0] * dist.world_size / dt,
                    "epoch": epoch, "step": step, "global_step": global_step,
                    "path": ",".join(map(str, path)), "eta_s": clock.eta_s(global_step)})
        metrics = {"epoch": epoch, "train_loss": loss_sum / max(seen, 1), "lr": lr,
                   "epoch_time_s": time.perf_counter() - t_epoch, "eta_s": clock.eta_s(global_step),
                   "global_step": global_step}
        if dist.is_main and val_loader is not None and eval_paths:
            metrics.update(evaluate_paths(model, eval_paths, val_loader, recal_loader, cfg, dist.device))
        state = {"model": unwrap(model).state_dict(), "optimizer": optimizer.state_dict(),
                 "scaler": amp.scaler.state_dict(), "epoch": epoch, "global_step": global_step,
                 "eval_paths": {k: list(p) for k, p in eval_paths.items()}, "inherited": warmup.done,
                 "metrics": metrics}
        report(metrics, state)
    return metrics
