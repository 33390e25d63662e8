"""BN statistics of one path during training-time evaluation.

A supernet's BN running statistics mix every path that ran. Evaluating a fixed path
fairly needs its own statistics (``lighttrack.models.bn.recalibrate_bn``), but the
training run must go on with the supernet's statistics: this context manager
re-estimates them for one path and puts the originals back afterwards.
"""
from __future__ import annotations

import contextlib
import itertools
from typing import Callable, Iterable, Iterator

import torch
from torch import nn

__all__ = ["bn_buffers", "path_bn_recalibrated"]


def bn_buffers(model: nn.Module) -> dict[str, torch.Tensor]:
    """Copies of every BatchNorm buffer (running mean/var, batch count)."""
    out = {}
    for name, m in model.named_modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            for b, t in m.named_buffers(recurse=False):
                if t is not None:
                    out[f"{name}.{b}"] = t.detach().clone()
    return out


def _restore(model: nn.Module, saved: dict[str, torch.Tensor]) -> None:
    buffers = dict(model.named_buffers())
    with torch.no_grad():
        for k, v in saved.items():
            buffers[k].copy_(v)


@contextlib.contextmanager
def path_bn_recalibrated(model: nn.Module, forward: Callable[[torch.Tensor], object],
                         batches: Iterable | None, num_batches: int) -> Iterator[None]:
    """Inside: ``model``'s BN statistics re-estimated for ``forward`` on ``num_batches``
    of ``batches`` (each the input ``forward`` takes). Outside: the originals, unchanged.
    ``num_batches == 0`` or ``batches is None`` leaves the statistics as they are."""
    saved = bn_buffers(model)
    was_training = model.training
    try:
        if num_batches > 0 and batches is not None:
            from lighttrack.models.bn import recalibrate_bn  # issue 3's true re-estimate
            model.eval()  # dropout off; recalibrate_bn switches each BN it runs to train mode itself
            recalibrate_bn(forward, list(itertools.islice(iter(batches), num_batches)))
        yield
    finally:
        _restore(model, saved)
        model.train(was_training)
