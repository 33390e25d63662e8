"""Phase 2 (tracking supernet) and phase-4b (fine-tune of one found architecture) objectives.

Both train on tracking pairs with ``cls + reg`` loss (losses.py) and the same schedule
shape (warm-up, then logarithmic decay); they differ in what runs:

* phase 2 (:class:`SupernetObjective`): a ``TrackSupernet``; every step one uniformly
  random path (``PathSampler``, identical on every rank), optionally after a warm-up on
  the largest architecture (``largest_warmup_epochs``, as phase 1); or, with
  ``sandwich: n``, the largest plus n uniform paths per step, each path distilled from
  the largest's score map;
* phase 4b (:class:`TrackObjective`): a ``StaticTracker``; always the same network.

Frozen backbone (first ``backbone_freeze_epochs``): the backbone's parameters
get ``requires_grad=False`` (so SGD, weight decay and momentum never touch them) and its
BatchNorm layers stay in eval mode, so the phase-1 running statistics are frozen too —
a frozen backbone is a fixed function. When it thaws, the model is re-wrapped for DDP
(DDP only syncs parameters that required grad when it was built) and trains at
``backbone_lr_mult`` x the global lr.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import DataLoader

from lighttrack.arch import Arch, resolve
from lighttrack.data.sampling import build_pair_dataset
from lighttrack.models import TrackSupernet
from lighttrack.train.common import Amp, Dist, Report, make_loader, pair_batch
from lighttrack.train.config import FinetuneStageConfig, RunConfig, SupernetConfig
from lighttrack.train.losses import TrackingLoss, score_distillation, tracking_loss
from lighttrack.train.sampling import LargestWarmup, PathSampler
from lighttrack.train.track_eval import eval_archs, supernet_evaluator
from lighttrack.train.schedules import param_groups
from lighttrack.train.trainer import Evaluate, Objective, fit

__all__ = ["train_supernet", "finetune", "TrackObjective", "SupernetObjective"]

LARGEST = resolve("largest")  # k7e6 everywhere, both heads 256 channels of k5 layers


class TrackObjective(Objective):
    """cls + reg loss of ``model(z, x)`` on a pair batch; the backbone frozen for the first
    ``freeze_epochs``, then at ``backbone_lr_mult`` x the lr."""

    parts = ("loss", "cls", "reg")
    rate = "pairs_per_s"

    def __init__(self, model: nn.Module, device: torch.device, backbone_lr_mult: float, freeze_epochs: int,
                 clip: float) -> None:
        super().__init__(model, device)
        self.backbone_lr_mult, self.freeze_epochs, self.clip = backbone_lr_mult, freeze_epochs, clip
        self.frozen: bool | None = None

    def param_groups(self) -> list[dict]:
        return param_groups(self.model, self.backbone_lr_mult)

    def state(self) -> dict:
        return {"inherited": False}  # a static tracker has no warm-up; the key as in phase-2 checkpoints

    def begin_epoch(self, net, epoch, wrap):
        frozen = epoch < self.freeze_epochs
        if net is None or frozen != self.frozen:
            self.frozen = frozen
            for p in self.model.backbone.parameters():
                p.requires_grad_(not frozen)
            net = wrap(self.model)  # DDP syncs the parameters that required grad when it was built
        net.train()
        if frozen:
            self.model.backbone.eval()  # frozen BN statistics too
        return net

    def loss(self, net, batch, amp, epoch, step, t):
        batch = pair_batch(batch, self.device)
        return self._report(self._forward(net, batch, amp), batch)

    @staticmethod
    def _forward(net: nn.Module, batch: dict, amp: Amp, *arch: Arch) -> TrackingLoss:
        with amp.autocast():
            cls, reg = net(batch["template"], batch["search"], *arch)
        return tracking_loss(cls, reg, batch)

    def _report(self, loss: TrackingLoss, batch: dict, **extra):
        return loss.total, {"loss": loss.total, "cls": loss.cls, "reg": loss.reg,
                            "backbone_frozen": float(self.frozen), **extra}, batch["template"].shape[0]


class SupernetObjective(TrackObjective):
    """Phase 2: ``model(z, x, arch)`` with the step's path (a TrackSupernet), or the sandwich
    rule (see SupernetConfig)."""

    def __init__(self, model: nn.Module, cfg: SupernetConfig, device: torch.device) -> None:
        super().__init__(model, device, cfg.backbone_lr_mult, cfg.backbone_freeze_epochs, cfg.grad_clip)
        self.sampler = PathSampler(cfg.run.seed, cfg.space)
        self.sandwich, self.distill_weight = cfg.sandwich, cfg.distill_weight
        self.warmup = LargestWarmup(cfg.largest_warmup_epochs, LARGEST,
                                    lambda: model.inherit_from_largest_(backbone=not cfg.init))

    def load_state(self, state: dict) -> None:
        self.warmup.done = bool(state.get("inherited"))

    def state(self) -> dict:
        return {"inherited": self.warmup.done}

    def loss(self, net, batch, amp, epoch, step, t):
        batch = pair_batch(batch, self.device)
        arch = self.warmup.pick(t, lambda: self.sampler.arch(epoch, step))
        if self.sandwich and arch is not LARGEST:
            paths = [arch] + [self.sampler.arch(epoch, step, k) for k in range(1, self.sandwich)]  # arch: k = 0
            loss, arch = self._sandwich_step(net, batch, amp, paths)
        else:
            loss = self._forward(net, batch, amp, arch)
        return self._report(loss, batch, arch=str(arch))

    def _sandwich_step(self, net: nn.Module, batch: dict, amp: Amp, paths: list[Arch]) -> tuple[TrackingLoss, Arch]:
        """The sandwich rule's gradients for one batch: the largest architecture on the labels,
        then each of ``paths`` on the labels plus ``distill_weight`` x the BCE towards the
        largest's score map. One backward per forward (gradients add up; a DDP module
        all-reduces each), the last one left to the trainer's optimiser step. Returns the
        last path's loss (what the step reports) and that path."""
        z, x = batch["template"], batch["search"]
        with amp.autocast():
            cls_t, reg_t = net(z, x, LARGEST)
        amp.backward(tracking_loss(cls_t, reg_t, batch).total)
        teacher = cls_t.detach()
        for k, arch in enumerate(paths):
            with amp.autocast():
                cls, reg = net(z, x, arch)
            loss = tracking_loss(cls, reg, batch)
            total = loss.total + self.distill_weight * score_distillation(cls, teacher)
            if k < len(paths) - 1:
                amp.backward(total)
        return TrackingLoss(total, loss.cls, loss.reg), arch


def train_supernet(model: nn.Module, loader: DataLoader, cfg: SupernetConfig, report: Report, dist: Dist = Dist(),
                   wrap=lambda m: m, state: dict | None = None, evaluate: Evaluate | None = None) -> dict:
    """Phase 2: train a TrackSupernet for ``cfg.epochs``; ``evaluate(model, epoch)`` (rank 0)
    every ``cfg.eval.every`` epochs. Resumes from ``state`` (a dict it reported)."""
    return fit(SupernetObjective(model, cfg, dist.device), loader, cfg, cfg.run.amp, report, dist, wrap, state,
               evaluate, cfg.eval.every, cfg.eval.before_training, cfg.run.log_every, cfg.run.channels_last)


def run_supernet(cfg: SupernetConfig, dist: Dist, report: Report, wrap=lambda m: m, state: dict | None = None,
                 init: dict | None = None) -> TrackSupernet:
    """Phase 2 on this rank: the tracking supernet (its backbone from phase 1's state dict
    ``init`` unless resuming from ``state``), its pair loader, the fixed paths' validation
    (rank 0, when ``cfg.eval`` names any) and the training, from the config alone. A Ray
    Train worker, a bench and the GPU script each call this. Returns the trained model."""
    model = TrackSupernet(cfg.space)
    if state is None and init is not None:
        model.load_backbone(init)
    loader = make_loader(build_pair_dataset(cfg.data), cfg.batch_size, dist, shuffle=True,
                         workers=cfg.run.loader_workers, seed=cfg.run.seed)
    evaluate = None
    if dist.is_main and (cfg.eval.num_paths or cfg.eval.paths):
        recal = make_loader(build_pair_dataset(cfg.data), cfg.batch_size, Dist(), shuffle=True, seed=cfg.run.seed + 1)
        evaluate = supernet_evaluator(cfg.eval, eval_archs(cfg), recal, dist.device)
    train_supernet(model, loader, cfg, report, dist, wrap, state, evaluate)
    return model


def finetune(model: nn.Module, loader: DataLoader, cfg: FinetuneStageConfig, run: RunConfig, report: Report,
             dist: Dist = Dist(), wrap=lambda m: m, state: dict | None = None,
             evaluate: Evaluate | None = None) -> dict:
    """Phase 4b: train a StaticTracker for ``cfg.epochs``, as :func:`train_supernet`."""
    obj = TrackObjective(model, dist.device, cfg.backbone_lr_mult, cfg.backbone_freeze_epochs, cfg.grad_clip)
    return fit(obj, loader, cfg, run.amp, report, dist, wrap, state, evaluate, cfg.eval.every,
               cfg.eval.before_training, run.log_every, run.channels_last)
