"""Single-path uniform sampling shared by every data-parallel worker.

One path per training step. With data parallelism every worker must run the *same*
path in a step, or the all-reduced gradients would mix different sub-networks and each
rank's unused-parameter set would differ. The path is therefore a pure function of
``(seed, epoch, step)``: every rank computes it locally, no communication needed, and a
run resumed from a checkpoint at (epoch, step) samples exactly the paths it would have.
"""
from __future__ import annotations

from typing import Callable, TypeVar

import numpy as np

from lighttrack.arch import Arch, Space, get_space, sample_backbone_path

__all__ = ["PathSampler", "LargestWarmup"]

P = TypeVar("P")

# Distinct streams so that training paths never coincide with the fixed evaluation paths.
_TRAIN, _EVAL = 0, 1


class PathSampler:
    """Deterministic uniform paths: ``arch(epoch, step)`` (of ``space``), ``backbone_path(epoch, step)``."""

    def __init__(self, seed: int, space: str | Space = "paper") -> None:
        self.seed = int(seed)
        self.space = get_space(space)

    def _rng(self, *key: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, *(int(k) for k in key)])

    def arch(self, epoch: int, step: int, k: int = 0) -> Arch:
        """Phase 2: backbone + output layer + both heads; ``k``: the k-th path of the step
        (the sandwich rule trains several), k = 0 the single path of uniform sampling."""
        key = (_TRAIN, epoch, step) if k == 0 else (_TRAIN, epoch, step, k)
        return self.space.sample(self._rng(*key))

    def backbone_path(self, epoch: int, step: int) -> tuple[int, ...]:
        """Phase 1: 18 MBConv choices (14 tracking blocks + 4 ImageNet-only)."""
        return sample_backbone_path(self._rng(_TRAIN, epoch, step))

    def eval_archs(self, n: int) -> list[Arch]:
        """``n`` fixed architectures, the same in every epoch, run and restart."""
        rng = self._rng(_EVAL)
        return [self.space.sample(rng) for _ in range(n)]

    def eval_backbone_paths(self, n: int) -> list[tuple[int, ...]]:
        rng = self._rng(_EVAL)
        return [sample_backbone_path(rng) for _ in range(n)]


class LargestWarmup:
    """The optional warm-up on the largest path (``largest_warmup_epochs`` of phases 1, 2).

    ``pick(progress, draw)``: ``largest`` while ``progress`` (epochs, fractional) is below
    ``epochs``; at the first step after it, ``inherit()`` runs once (the smaller candidates
    start from the largest), then every step takes ``draw()``, the uniform path. ``done``
    goes into the checkpoint, so a resumed run does not inherit again.
    """

    def __init__(self, epochs: float, largest, inherit: Callable[[], None], done: bool = False) -> None:
        self.epochs, self.largest, self.inherit, self.done = epochs, largest, inherit, done

    def pick(self, progress: float, draw: Callable[[], P]) -> P:
        if progress < self.epochs:
            return self.largest
        if self.epochs > 0 and not self.done:
            self.inherit()
            self.done = True
        return draw()
