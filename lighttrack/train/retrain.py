"""Phase 4: from a found architecture to a trained static tracker, in two stages.

4a, retrain (optional): the found backbone on ImageNet as a standalone classifier, by an
EfficientNet-like recipe (the paper's retrain settings, docs/method.md §11): RMSProp,
warm-up + cosine, dropout before the classifier, AutoAugment in the data pipeline, and an
exponential moving average of the weights; the EMA weights are what is evaluated and what
4b starts from.
4b, fine-tune: backbone + head of the found architecture on tracking pairs
(``tracking.finetune``), the head from scratch or from the phase-2 supernet.

:func:`retrain_tracker` runs the stages in order; every checkpoint carries its ``stage``,
so a resumed run goes on in the stage it was in.
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from lighttrack.arch import Arch
from lighttrack.data.sampling import build_pair_dataset
from lighttrack.models import StaticClassifier, StaticTracker, TrackSupernet, extract
from lighttrack.train.class_data import class_dataset
from lighttrack.train.common import Dist, Report, make_loader, to_device
from lighttrack.train.config import RetrainConfig, RetrainStageConfig, RunConfig
from lighttrack.train.ema import ModelEma
from lighttrack.train.pretrain import top1
from lighttrack.train.track_eval import static_evaluator, supernet_evaluator
from lighttrack.train.tracking import finetune
from lighttrack.train.trainer import Objective, fit

__all__ = ["retrain_tracker", "train_classifier", "ClassifierObjective", "copy_backbone"]


def copy_backbone(dst: nn.Module, src: nn.Module) -> None:
    """``dst.backbone <- src.backbone`` (StaticClassifier <-> StaticTracker share names)."""
    dst.backbone.load_state_dict(src.backbone.state_dict())


class ClassifierObjective(Objective):
    """Cross-entropy of a StaticClassifier, with a moving average of its weights
    (``ema_decay`` > 0)."""

    def __init__(self, model: nn.Module, device: torch.device, ema_decay: float) -> None:
        super().__init__(model, device)
        self.ema = ModelEma(self.model, ema_decay) if ema_decay > 0 else None

    @property
    def kept(self) -> nn.Module:
        """The model to evaluate and keep: the EMA copy when there is one."""
        return self.ema.module if self.ema is not None else self.model

    def load_state(self, state: dict) -> None:
        if self.ema is not None:
            self.ema.load_state_dict(state["ema"])

    def state(self) -> dict:
        return {"ema": self.ema.state_dict() if self.ema is not None else None}

    def loss(self, net, batch, amp, epoch, step, t):
        x, y = to_device(batch, self.device)
        with amp.autocast():
            loss = F.cross_entropy(net(x), y)
        return loss, {"loss": loss}, x.shape[0]

    def after_step(self) -> None:
        if self.ema is not None:
            self.ema.update(self.model)


def train_classifier(model: nn.Module, train_loader: DataLoader, val_loader: DataLoader | None,
                     cfg: RetrainStageConfig, run: RunConfig, report: Report, dist: Dist = Dist(),
                     wrap=lambda m: m, state: dict | None = None) -> tuple[dict, nn.Module]:
    """Phase 4a: train a StaticClassifier for ``cfg.epochs``; returns (last metrics, the model
    to keep: the EMA copy when ``cfg.ema_decay > 0``)."""
    obj = ClassifierObjective(model, dist.device, cfg.ema_decay)

    def evaluate(_: nn.Module, epoch: int) -> dict:
        return {"top1": top1(obj.kept.eval(), val_loader, dist.device, cfg.eval_batches)}

    metrics = fit(obj, train_loader, cfg, run.amp, report, dist, wrap, state,
                  evaluate if val_loader is not None else None, log_every=run.log_every,
                  channels_last=run.channels_last)
    return metrics, obj.kept


def retrain_tracker(cfg: RetrainConfig, arch: Arch, supernet: TrackSupernet | None,
                    reporter: Callable[[str, int], Report], dist: Dist = Dist(), wrap=lambda m: m,
                    state: dict | None = None) -> dict:
    """Phase 4 for ``arch``: retrain (when ``cfg.retrain.enabled``), then fine-tune; resumes
    from ``state`` in the stage it names. ``reporter(stage, epochs)`` is the report of a
    stage ("retrain" | "finetune"); ``supernet`` is the phase-2 supernet (None: no
    ``init``/``head_init`` from it). Returns the fine-tune's last metrics."""
    stage = state["stage"] if state else ("retrain" if cfg.retrain.enabled else "finetune")
    backbone = None
    if stage == "retrain":
        r = cfg.retrain
        classifier = StaticClassifier(arch.backbone, r.model.num_classes, r.model.dropout)
        if r.init == "supernet":
            if supernet is None:
                raise ValueError("retrain.init=supernet needs a supernet reference")
            copy_backbone(classifier, extract(supernet, arch))
        train = make_loader(class_dataset(r.data_root, "train", r.model.image_size, True, r.autoaugment),
                            r.batch_size, dist, shuffle=True, workers=cfg.run.loader_workers, seed=cfg.run.seed)
        val = make_loader(class_dataset(r.data_root, "val", r.model.image_size, False), r.batch_size, Dist(),
                          shuffle=False, drop_last=False) if dist.is_main else None
        report = _tagged(reporter("retrain", r.epochs), "retrain")
        _, backbone = train_classifier(classifier, train, val, r, cfg.run, report, dist, wrap, state)
        state = None  # the fine-tune starts fresh
    ft = cfg.finetune
    tracker = extract(supernet, arch) if supernet is not None and ft.head_init == "supernet" else StaticTracker.build(arch)
    if backbone is not None:
        copy_backbone(tracker, backbone)
    loader = make_loader(build_pair_dataset(ft.data), ft.batch_size, dist, shuffle=True,
                         workers=cfg.run.loader_workers, seed=cfg.run.seed)
    report = reporter("finetune", ft.epochs)
    evaluate = static_evaluator(ft.eval) if dist.is_main else None
    if state is None and dist.is_main and supernet is not None:
        # reference: the same path inside the supernet, BN re-estimated (what the search measured)
        recal = make_loader(build_pair_dataset(ft.data), ft.batch_size, Dist(), shuffle=True, seed=cfg.run.seed + 1)
        ev = dataclasses.replace(ft.eval, recalibrate_batches=max(ft.eval.recalibrate_batches, 4))
        m = ft.eval.metric
        ref = supernet_evaluator(ev, [arch], recal, dist.device)(supernet.to(dist.device), -1)
        report({f"supernet_path_val_{m}": ref[f"val_{m}/path0"]})
    elif state is None and supernet is not None:
        report({})  # every rank reports alike
    return finetune(tracker, loader, ft, cfg.run, _tagged(report, "finetune"), dist, wrap, state, evaluate)


def _tagged(report: Report, stage: str) -> Report:
    """``report`` whose checkpoint states carry ``stage``."""
    return lambda m, s=None: report(m, None if s is None else s | {"stage": stage})
