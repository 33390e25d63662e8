"""The one training loop of phases 1, 2 and 4 (pytracking's trainer/actor split).

:func:`fit` owns what every phase does alike: optimiser (one param group per
``lr_mult``), schedule, AMP, the loader's epochs, resume from a reported state, step and
epoch reports, evaluation every ``every`` epochs (rank 0) and the checkpoint state. An
:class:`Objective` owns what a phase does differently: its model, the loss of one batch
(which path runs, the sandwich rule), a frozen backbone, an EMA, and its own checkpoint
entries. Each phase's module builds its objective from its typed config and calls ``fit``.
"""
from __future__ import annotations

import time
from typing import Callable, Protocol

import torch
from torch import nn
from torch.utils.data import DataLoader

from lighttrack.train.common import Amp, Dist, EtaClock, Report, cycle_epochs, set_loader_epoch
from lighttrack.train.config import OptimConfig, ScheduleConfig
from lighttrack.train.schedules import build_optimizer, lr_at, param_groups, set_lr

__all__ = ["Objective", "Stage", "Evaluate", "fit"]

# (model, epoch) -> epoch metrics; run on rank 0 only (epoch -1: before training).
Evaluate = Callable[[nn.Module, int], dict]


class Stage(Protocol):
    """The fields of a phase's config that ``fit`` reads (every phase config has them)."""

    epochs: int
    steps_per_epoch: int  # 0 = one pass over the loader
    optim: OptimConfig
    schedule: ScheduleConfig


class Objective:
    """What one phase trains. The defaults fit a plain model trained whole."""

    parts: tuple[str, ...] = ("loss",)  # step values averaged into the epoch's train_<part>
    rate = "images_per_s"  # name of the throughput metric
    clip = 0.0  # max gradient norm (0 = off)

    def __init__(self, model: nn.Module, device: torch.device) -> None:
        self.model, self.device = model.to(device), device

    def param_groups(self) -> list[dict]:
        return param_groups(self.model)

    def load_state(self, state: dict) -> None:
        """Read back what :meth:`state` put into a checkpoint (on resume)."""

    def state(self) -> dict:
        """This phase's entries of the checkpoint."""
        return {}

    def begin_epoch(self, net: nn.Module | None, epoch: int, wrap: Callable[[nn.Module], nn.Module]) -> nn.Module:
        """The data-parallel module to train in ``epoch``, in train mode (``net`` None: wrap first)."""
        net = wrap(self.model) if net is None else net
        return net.train()

    def loss(self, net: nn.Module, batch, amp: Amp, epoch: int, step: int, t: float) -> tuple[torch.Tensor, dict, int]:
        """(loss to step on, step metrics incl. every part (tensors or values), batch size);
        ``t`` = epoch + step / steps, the training time in epochs."""
        raise NotImplementedError

    def after_step(self) -> None:
        """After every optimiser step (e.g. a moving average of the weights)."""


def fit(obj: Objective, loader: DataLoader, cfg: Stage, amp_mode: str, report: Report, dist: Dist = Dist(),
        wrap: Callable[[nn.Module], nn.Module] = lambda m: m, state: dict | None = None,
        evaluate: Evaluate | None = None, every: int = 1, baseline: bool = False, log_every: int = 1,
        channels_last: bool = False) -> dict:
    """Train ``obj.model`` for ``cfg.epochs``; resume from ``state`` (a dict this function
    reported). ``wrap`` makes the data-parallel module (DDP). ``evaluate`` runs after every
    ``every``-th and the last epoch, and with ``baseline`` once before training (logged as
    ``untrained/<metric>``). Returns the last epoch's metrics.

    Every step is reported; its loss values and the throughput only every ``log_every``-th
    global step. Reading a value off the device waits for the device: once a window, the
    host keeps queueing steps ahead of it (the epoch's sums stay on the device).
    ``channels_last`` keeps the weights NHWC (a layout only, the same numbers)."""
    model = obj.model  # on dist.device
    if channels_last:
        model.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(obj.param_groups(), cfg.optim)
    amp = Amp(dist.device, amp_mode)
    start_epoch, global_step = 0, 0
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        amp.scaler.load_state_dict(state["scaler"])
        obj.load_state(state)
        start_epoch, global_step = state["epoch"] + 1, state["global_step"]
    elif baseline and evaluate is not None:
        # the untrained model on the same evaluation: the baseline training must beat
        pre = evaluate(model, -1) if dist.is_main else {}
        report({f"untrained/{k}": v for k, v in pre.items()} | {"global_step": 0})
    params = list(model.parameters())
    steps = cfg.steps_per_epoch or len(loader)
    clock = EtaClock(cfg.epochs * steps, start_epoch * steps)
    net, metrics = None, {}
    log_every = max(1, log_every)
    for epoch in range(start_epoch, cfg.epochs):
        net = obj.begin_epoch(net, epoch, wrap)
        set_loader_epoch(loader, epoch)
        t_epoch, sums = time.perf_counter(), dict.fromkeys(obj.parts, 0.0)
        t_window, n_window = t_epoch, 0  # samples since the last logged step, loading included
        for step, batch in enumerate(cycle_epochs(loader, steps)):
            lr = lr_at(epoch + step / steps, cfg.optim.lr, cfg.epochs, cfg.schedule)
            set_lr(optimizer, lr)
            optimizer.zero_grad(set_to_none=True)  # paths that do not run keep no gradient at all
            loss, logged, n = obj.loss(net, batch, amp, epoch, step, epoch + step / steps)
            amp.step(loss, optimizer, params, obj.clip)
            obj.after_step()
            global_step += 1
            n_window += n
            sums = {k: sums[k] + _detached(logged[k]) for k in sums}
            row = {"lr": lr, "epoch": epoch, "step": step, "global_step": global_step,
                   "eta_s": clock.eta_s(global_step)}
            if global_step % log_every == 0:
                row |= {k: v.item() if isinstance(v, torch.Tensor) else v for k, v in logged.items()}  # waits
                now = time.perf_counter()
                row[obj.rate] = n_window * dist.world_size / (now - t_window)
                t_window, n_window = now, 0
            report(row)
        metrics = {f"train_{k}": float(v) / steps for k, v in sums.items()}
        metrics |= {"epoch": epoch, "lr": lr, "epoch_time_s": time.perf_counter() - t_epoch,
                    "eta_s": clock.eta_s(global_step), "global_step": global_step}
        if evaluate is not None and dist.is_main and (epoch == cfg.epochs - 1 or (epoch + 1) % every == 0):
            metrics |= evaluate(model, epoch)
        state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                 "scaler": amp.scaler.state_dict(), "epoch": epoch, "global_step": global_step,
                 **obj.state(), "metrics": metrics}
        report(metrics, state)
    return metrics


def _detached(v):
    return v.detach() if isinstance(v, torch.Tensor) else v
