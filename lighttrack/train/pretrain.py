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

from typing import Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from lighttrack.arch import MBCONV_OPS
from lighttrack.models import ClassSupernet
from lighttrack.models.bn import recalibrated
from lighttrack.models.supernet import CLASS_PATH_LEN
from lighttrack.train.class_data import class_dataset
from lighttrack.train.common import Dist, Report, make_loader, to_device
from lighttrack.train.config import PretrainConfig
from lighttrack.train.sampling import LargestWarmup, PathSampler
from lighttrack.train.trainer import Objective, fit

__all__ = ["train_backbone_supernet", "BackboneObjective", "top1", "LARGEST_PATH"]

LARGEST_PATH = (len(MBCONV_OPS) - 1,) * CLASS_PATH_LEN  # k7e6 in all 18 blocks


class BackboneObjective(Objective):
    """Cross-entropy of the step's path (``model(x, path)``, a ClassSupernet)."""

    def __init__(self, model: nn.Module, cfg: PretrainConfig, device: torch.device) -> None:
        super().__init__(model, device)
        self.sampler = PathSampler(cfg.run.seed)
        self.warmup = LargestWarmup(cfg.largest_warmup_epochs, LARGEST_PATH, model.backbone.inherit_from_largest_)
        # fixed paths whose top-1 is measured every epoch (the same on resume)
        self.eval_paths = {f"path{i}": p for i, p in enumerate(self.sampler.eval_backbone_paths(cfg.eval_paths))}
        if cfg.eval_paths:
            self.eval_paths["largest"] = LARGEST_PATH

    def load_state(self, state: dict) -> None:
        self.warmup.done = bool(state.get("inherited"))

    def state(self) -> dict:
        return {"eval_paths": {k: list(p) for k, p in self.eval_paths.items()}, "inherited": self.warmup.done}

    def loss(self, net, batch, amp, epoch, step, t):
        x, y = to_device(batch, self.device)
        path = self.warmup.pick(t, lambda: self.sampler.backbone_path(epoch, step))
        with amp.autocast():
            loss = F.cross_entropy(net(x, path), y)
        return loss, {"loss": loss, "path": ",".join(map(str, path))}, x.shape[0]


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
        with recalibrated(model, fwd, batches, cfg.recalibrate_batches):
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
    obj = BackboneObjective(model, cfg, dist.device)
    evaluate = None
    if val_loader is not None and obj.eval_paths:
        evaluate = lambda m, epoch: evaluate_paths(m, obj.eval_paths, val_loader, recal_loader, cfg, dist.device)  # noqa: E731
    return fit(obj, train_loader, cfg, cfg.run.amp, report, dist, wrap, state, evaluate, log_every=cfg.run.log_every,
               channels_last=cfg.run.channels_last)


def run(cfg: PretrainConfig, dist: Dist, report: Report, wrap=lambda m: m, state: dict | None = None,
        evaluate: bool = True) -> ClassSupernet:
    """Phase 1 on this rank: the backbone supernet, its loaders and its training, from the
    config alone. A Ray Train worker, a bench and the GPU script each call this.

    ``evaluate``: measure the fixed paths' top-1 every epoch (rank 0; a bench timing steps
    leaves it off). Returns the trained model (the wrapped one's module)."""
    model = ClassSupernet(cfg.model.num_classes, cfg.model.dropout)
    size = cfg.model.image_size
    train = make_loader(class_dataset(cfg.data_root, "train", size, train=True), cfg.batch_size, dist,
                        shuffle=True, workers=cfg.run.loader_workers, seed=cfg.run.seed)
    val = recal = None
    if evaluate and dist.is_main:  # one rank measures, on the whole held-out split
        val = make_loader(class_dataset(cfg.data_root, "val", size, train=False), cfg.batch_size, Dist(),
                          shuffle=False, drop_last=False)
        recal = make_loader(class_dataset(cfg.data_root, "train", size, train=True), cfg.batch_size, Dist(),
                            shuffle=True, seed=cfg.run.seed + 1)
    train_backbone_supernet(model, train, val, cfg, report, dist, wrap, state, recal_loader=recal)
    return model
