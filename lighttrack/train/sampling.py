"""Single-path uniform sampling shared by every data-parallel worker.

One path per training step. With data parallelism every worker must run the *same*
path in a step, or the all-reduced gradients would mix different sub-networks and each
rank's unused-parameter set would differ. The path is therefore a pure function of
``(seed, epoch, step)``: every rank computes it locally, no communication needed, and a
run resumed from a checkpoint at (epoch, step) samples exactly the paths it would have.
"""
from __future__ import annotations

import numpy as np

from lighttrack.arch import Arch, sample, sample_backbone_path

__all__ = ["PathSampler"]

# Distinct streams so that training paths never coincide with the fixed evaluation paths.
_TRAIN, _EVAL = 0, 1


class PathSampler:
    """Deterministic uniform paths: ``arch(epoch, step)``, ``backbone_path(epoch, step)``."""

    def __init__(self, seed: int) -> None:
        self.seed = int(seed)

    def _rng(self, *key: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, *(int(k) for k in key)])

    def arch(self, epoch: int, step: int) -> Arch:
        """Phase 2: backbone + output layer + both heads."""
        return sample(self._rng(_TRAIN, epoch, step))

    def backbone_path(self, epoch: int, step: int) -> tuple[int, ...]:
        """Phase 1: 18 MBConv choices (14 tracking blocks + 4 ImageNet-only)."""
        return sample_backbone_path(self._rng(_TRAIN, epoch, step))

    def eval_archs(self, n: int) -> list[Arch]:
        """``n`` fixed architectures, the same in every epoch, run and restart."""
        rng = self._rng(_EVAL)
        return [sample(rng) for _ in range(n)]

    def eval_backbone_paths(self, n: int) -> list[tuple[int, ...]]:
        rng = self._rng(_EVAL)
        return [sample_backbone_path(rng) for _ in range(n)]
