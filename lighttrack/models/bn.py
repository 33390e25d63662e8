"""BatchNorm recalibration for one path of a supernet (forward passes only).

In a weight-sharing supernet the running statistics were accumulated over many
paths, so a single path's BNs see inputs whose statistics differ from them. Before a
path is evaluated (search) or deployed, its statistics are re-estimated: the running
statistics of every BN *that runs* are reset and replaced by the **average over all
forward calls of the per-call batch statistics** (PyTorch's cumulative mode,
``momentum=None``): ``running_mean = mean_t(mean(x_t))`` and
``running_var = mean_t(var_unbiased(x_t))``. This is the "precise BN" estimate: what
the EMA estimates in the limit of many batches, with no dependence on the order of
batches, and the statistics a BN in train mode normalises with. (It is not the
variance of all inputs pooled, which would add the variance of the batch means.)
A BN that runs twice per forward (the shared backbone on template and search
images) counts each call as one batch.

:func:`recalibrated` is how training evaluates fixed paths (phases 1, 2 and the phase-4
reference): the supernet's own statistics, a mixture over paths, are put back afterwards,
so training goes on as if nothing had been evaluated. (The search instead restores the
checkpoint's statistics before each candidate and leaves the candidate's in place.)
"""
from __future__ import annotations

import contextlib
import itertools
from typing import Any, Callable, Iterable, Iterator

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

__all__ = ["recalibrate_bn", "recalibrated"]


def recalibrate_bn(net_fn: Callable[[Any], Any], batches: Iterable[Any]) -> int:
    """Re-estimate the running statistics of the BNs that ``net_fn(batch)`` runs.

    ``net_fn`` runs the path's forward on one batch (e.g. ``lambda b: path(b[0], b[1])``);
    it may use any number of BN modules any number of times. Each BN is put in train
    mode with ``momentum=None`` just before its first call and its statistics reset;
    afterwards its momentum and previous train/eval mode are restored. Runs under
    ``torch.no_grad``; other modules (dropout) keep their mode. Returns the number of
    BN modules recalibrated.
    """
    saved: dict[_BatchNorm, tuple[float | None, bool]] = {}

    def pre_hook(module: nn.Module, args: Any) -> None:
        if isinstance(module, _BatchNorm) and module.track_running_stats and module not in saved:
            saved[module] = (module.momentum, module.training)
            module.reset_running_stats()
            module.momentum = None  # cumulative average over calls
            module.train()

    handle = nn.modules.module.register_module_forward_pre_hook(pre_hook)
    n_batches = 0
    try:
        with torch.no_grad():
            for batch in batches:
                net_fn(batch)
                n_batches += 1
    finally:
        handle.remove()
        for module, (momentum, training) in saved.items():
            module.momentum = momentum
            module.train(training)
    if n_batches == 0:
        raise ValueError("recalibrate_bn: no batches given")
    return len(saved)


@contextlib.contextmanager
def recalibrated(model: nn.Module, net_fn: Callable[[Any], Any], batches: Iterable[Any] | None,
                 num_batches: int | None = None) -> Iterator[None]:
    """Inside: ``model`` in eval mode, the BNs that ``net_fn(batch)`` runs re-estimated on
    the first ``num_batches`` (None: all) of ``batches`` (None or 0 batches: statistics as
    they are). Outside: every BN buffer of ``model`` and its train/eval mode as before."""
    saved = {k: v.detach().clone() for k, v in _bn_buffers(model)}
    was_training = model.training
    try:
        model.eval()  # dropout off; recalibrate_bn puts each BN it runs in train mode itself
        if batches is not None and num_batches != 0:
            recalibrate_bn(net_fn, list(itertools.islice(batches, num_batches)))
        yield
    finally:
        with torch.no_grad():
            for k, v in _bn_buffers(model):
                v.copy_(saved[k])
        model.train(was_training)


def _bn_buffers(model: nn.Module) -> Iterator[tuple[str, torch.Tensor]]:
    """(name, tensor) of every BatchNorm buffer (running mean/var, batch count)."""
    for name, m in model.named_modules():
        if isinstance(m, _BatchNorm):
            for b, t in m.named_buffers(recurse=False):
                if t is not None:
                    yield f"{name}.{b}", t
