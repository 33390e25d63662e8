"""Pieces of the training loop (trainer.py): device and mixed precision, loaders, timing,
checkpoint state. Plain PyTorch: the Ray jobs bind these to workers.

A loop reports through ``report(metrics, state=None)``: every step with step metrics
(``state`` None), and at the end of every epoch with epoch metrics and the full
checkpoint ``state`` (a dict of plain tensors/values, see ``trainer.fit``).
Every rank calls ``report`` the same number of times, so the caller may use it as a
collective (Ray Train's ``report`` is one).
"""
from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from typing import Iterator, Protocol

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler, RandomSampler, Sampler, SequentialSampler

__all__ = ["Report", "Dist", "Amp", "make_loader", "to_device", "unwrap", "cycle_epochs",
           "EtaClock", "set_loader_epoch"]


class Report(Protocol):
    def __call__(self, metrics: dict, state: dict | None = None) -> None: ...


@dataclass(frozen=True)
class Dist:
    """Where this worker stands: rank, world size and device."""

    rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0


class Amp:
    """Autocast + GradScaler, on CUDA only (``mode``: auto | bf16 | fp16 | off).

    ``auto`` picks bf16 where the GPU supports it (no scaler needed), else fp16 with a
    GradScaler. On CPU everything runs in fp32.
    """

    def __init__(self, device: torch.device, mode: str = "auto") -> None:
        if mode not in ("auto", "bf16", "fp16", "off"):
            raise ValueError(f"run.amp = {mode!r}; expected auto, bf16, fp16 or off")
        self.dtype: torch.dtype | None = None
        if device.type == "cuda":
            # fixed crop and image sizes: let cuDNN pick the fastest kernels once per shape
            torch.backends.cudnn.benchmark = True
        if device.type == "cuda" and mode != "off":
            if mode == "auto":
                mode = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
            self.dtype = torch.bfloat16 if mode == "bf16" else torch.float16
        self.device = device
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.dtype == torch.float16)

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def backward(self, loss: torch.Tensor) -> None:
        """Accumulate the gradients of ``loss`` (scaled when fp16) without stepping."""
        self.scaler.scale(loss).backward()

    def step(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer, params: list | None = None,
             clip: float = 0.0) -> None:
        """backward, optional grad-norm clipping, optimiser step (scaled when fp16)."""
        self.backward(loss)
        if clip > 0 and params:
            self.scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_([p for p in params if p.grad is not None], clip)
        self.scaler.step(optimizer)
        self.scaler.update()


class EpochIndices(Sampler):
    """Yields ``(epoch, index)`` for a dataset with ``set_epoch`` (e.g. tracking pairs):
    persistent workers keep their own copy of the dataset, so the epoch must travel with
    each index rather than be set on the main process's copy."""

    def __init__(self, sampler: Sampler):
        self.sampler, self.epoch = sampler, 0

    def __iter__(self):
        return ((self.epoch, i) for i in self.sampler)

    def __len__(self) -> int:
        return len(self.sampler)


def make_loader(dataset: Dataset, batch_size: int, dist: Dist, shuffle: bool, workers: int = 0,
                seed: int = 0, drop_last: bool = True, prefetch: int = 4) -> DataLoader:
    """A DataLoader over this rank's shard (DistributedSampler when world_size > 1).

    Workers are persistent (a worker opens its files and filesystem handles once, not every
    epoch) and keep ``prefetch`` batches each in flight."""
    if dist.world_size > 1:
        sampler = DistributedSampler(dataset, dist.world_size, dist.rank, shuffle=shuffle, seed=seed,
                                     drop_last=drop_last)
    elif shuffle:
        sampler = RandomSampler(dataset, generator=torch.Generator().manual_seed(seed))
    else:
        sampler = SequentialSampler(dataset)
    if hasattr(dataset, "set_epoch"):
        sampler = EpochIndices(sampler)
    extra = {"persistent_workers": True, "prefetch_factor": prefetch} if workers > 0 else {}
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=workers,
                      drop_last=drop_last, pin_memory=dist.device.type == "cuda", **extra)


def set_loader_epoch(loader: DataLoader, epoch: int) -> None:
    """Reshuffle for ``epoch`` (sampler) and let the dataset draw that epoch's pairs."""
    sampler = getattr(loader, "sampler", None)
    if isinstance(sampler, EpochIndices):
        sampler.epoch = int(epoch)
        sampler = sampler.sampler
    if isinstance(sampler, DistributedSampler):
        sampler.set_epoch(epoch)
    elif isinstance(sampler, RandomSampler) and sampler.generator is not None:
        sampler.generator.manual_seed(hash((epoch, 7919)) & 0x7FFFFFFF)
    dataset = getattr(loader, "dataset", None)
    if hasattr(dataset, "set_epoch"):
        dataset.set_epoch(epoch)


def cycle_epochs(loader: DataLoader, steps: int) -> Iterator:
    """Exactly ``steps`` batches, restarting the loader when it runs out."""
    done = 0
    while done < steps:
        got = False
        for batch in loader:
            got = True
            yield batch
            done += 1
            if done >= steps:
                return
        if not got:
            raise ValueError("the training loader yields no batch (data set smaller than one batch?)")


def pair_batch(batch: dict, device: torch.device) -> dict:
    """A batch of tracking pairs on ``device``, its uint8 crops normalised there."""
    from lighttrack.data.processing import normalize_images
    b = to_device(batch, device)
    return b | {k: normalize_images(b[k]) for k in ("template", "search") if k in b}


def to_device(batch, device: torch.device):
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(v, device) for v in batch)
    return batch


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside a DistributedDataParallel wrapper (or the model itself)."""
    return getattr(model, "module", model)


class EtaClock:
    """Steps/s and the estimated time left, from the steps run since the clock started."""

    def __init__(self, total_steps: int, done_steps: int = 0) -> None:
        self.total, self.start_done = total_steps, done_steps
        self.t0 = time.perf_counter()

    def eta_s(self, done_steps: int) -> float:
        ran = done_steps - self.start_done
        if ran <= 0:
            return float("nan")
        return (time.perf_counter() - self.t0) / ran * (self.total - done_steps)

