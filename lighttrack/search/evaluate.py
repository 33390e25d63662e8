"""One search trial in plain torch: recalibrate a candidate's BN statistics, then track.

:class:`CandidateEvaluator` holds a supernet loaded once, a fixed random subset of
training pairs for BN recalibration (drawn once from the seed, so every candidate is
recalibrated on the same pairs) and the validation sequences (read and checked once).
``evaluate(arch)``:

1. restores the checkpoint's BN buffers (a result depends on the arch alone, never on
   the candidates evaluated before on the same supernet),
2. re-estimates the running statistics of every BN on the candidate's path over all
   recalibration batches (``models.bn.recalibrate_bn``; forward only),
3. runs the real tracker over the validation sequences by ``metric``
   (``tracker.validation``: GOT-10k AO in lockstep, ``batch`` sequences at a time, or VOT
   EAO with re-initialisation), on the candidate's torch path or, on a CPU, exported in
   memory to ONNX Runtime (BN folded after the recalibration, as deployed): 2-3x faster a
   frame here, for about 1.5 s of export (``backend``),

and returns a cache row: the fitness (AO or EAO) and the stay-at-start baseline's, the
protocol's other figures, params, MACs, seconds. The boxes are scored in memory; result
files are written only into a ``work_dir`` given to the evaluator.

``evaluate(arch, sequences=k)`` scores a rung of successive halving instead: the first ``k``
sequences of :attr:`CandidateEvaluator.order` (GOT-10k AO only). Given the row of an earlier
rung (``start``), only the sequences it lacks are tracked and the figures merged: GOT-10k's
figures are means over the pooled frames, so a rung's are its parts' means weighted by
their scored frames, and the top rung's equal the whole split's.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from lighttrack import checkpoint
from lighttrack.arch import Arch
from lighttrack.config import Count, PosInt
from lighttrack.models import TrackSupernet, recalibrate_bn
from lighttrack.search import cache
from lighttrack.search.budget import CostModel
from lighttrack.tracker.params import check_tracker
from lighttrack.tracker.validation import Metric, Validation, open_validation, score

__all__ = ["EvalConfig", "CandidateEvaluator", "load_supernet", "recalibration_batches"]


@dataclass
class EvalConfig:
    """How a candidate is scored (every field here enters the evaluation-settings id)."""

    metric: Metric = "ao"  # the fitness: ao (GOT-10k, one pass) | eao (VOT, re-initialised)
    val_root: str = "data/synth/got10k"  # GOT-10k-layout root (ao) or VOT sequences folder (eao); path or URI
    val_split: str = "val"  # split whose sequences score candidates (ao only)
    val_sequences: Count = 0  # use the first N sequences (0 = all)
    val_frames: Count = 0  # use the first N frames of each sequence (0 = all; quick settings)
    recalibrate_root: str = "data/synth/got10k"  # training pairs for BN recalibration
    recalibrate_split: str = "train"
    recalibrate_batches: Count = 8  # forward batches of the re-estimate
    recalibrate_batch_size: PosInt = 8
    recalibrate: bool = True  # false only to measure what recalibration is worth
    tracker: str = "vot2019"  # tracker preset name or YAML of TrackerParams
    seed: Count = 0  # picks the recalibration pairs
    # How the tracking runs; batch changes speed only (boxes equal to 1e-3 px), so it stays
    # out of the settings id; the backend enters it.
    batch: Count = 0  # sequences tracked in lockstep (0 = as many as memory and the device suit)
    backend: Literal["auto", "torch", "onnxruntime"] = "auto"  # torch | onnxruntime | auto: onnxruntime on a CPU for >= ORT_MIN_FRAMES

    def validate(self) -> None:
        check_tracker(self.tracker)

    def check_inputs(self, where: str = "") -> None:
        """The validation split and the recalibration pairs' listing (lighttrack.config.check_inputs)."""
        from lighttrack.config import dotted
        from lighttrack.data.check import check_source_quick
        from lighttrack.tracker.validation import check_validation

        check_validation(self.metric, self.val_root, self.val_split, self.tracker, where, root_key="val_root")
        if self.recalibrate and self.recalibrate_batches:
            check_source_quick("got10k", self.recalibrate_root, self.recalibrate_split,
                               dotted(where, "recalibrate_root"))

# The in-memory export costs about 1.5 s and saves about 50 ms a frame (bench/bench_eval.py):
# below this many validation frames a candidate is tracked by its torch path.
ORT_MIN_FRAMES = 200


def load_supernet(path: str | Path | bytes, device: str = "cpu") -> tuple[TrackSupernet, str]:
    """A TrackSupernet from ``checkpoint.pt`` (dict with ``model``; a path or the file's
    bytes) and its content id."""
    state = checkpoint.weights(checkpoint.load(path))
    net = TrackSupernet.for_state_dict(state)
    net.load_state_dict(state)
    return net.to(device).eval(), cache.supernet_id(state)


def recalibration_batches(cfg: EvalConfig) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``recalibrate_batches`` batches of (template (B,3,128,128), search (B,3,256,256)) pairs."""
    from lighttrack.data.processing import normalize_images
    from lighttrack.data.sampling import PairDataConfig, SourceConfig, build_pair_dataset

    n = cfg.recalibrate_batches * cfg.recalibrate_batch_size
    data = build_pair_dataset(PairDataConfig(
        sources=[SourceConfig(root=cfg.recalibrate_root, kind="got10k", split=cfg.recalibrate_split,
                              pairs_per_epoch=n)], seed=cfg.seed))
    items = [data[i] for i in range(n)]
    out = []
    for b in range(cfg.recalibrate_batches):
        chunk = items[b * cfg.recalibrate_batch_size:(b + 1) * cfg.recalibrate_batch_size]
        out.append((normalize_images(torch.stack([it["template"] for it in chunk])),
                    normalize_images(torch.stack([it["search"] for it in chunk]))))
    return out


class CandidateEvaluator:
    """Scores candidates of one supernet under one :class:`EvalConfig`."""

    def __init__(self, supernet: TrackSupernet, supernet_id: str, cfg: EvalConfig,
                 costs: CostModel | None = None, work_dir: str | Path | None = None) -> None:
        from lighttrack.tracker.params import load_params

        self.net, self.supernet_id, self.cfg = supernet.eval(), supernet_id, cfg
        self.device = next(supernet.parameters()).device
        self.costs = costs or CostModel()
        self.params = load_params(cfg.tracker)
        self.val = open_validation(cfg.val_root, cfg.val_split, cfg.metric, cfg.val_sequences, cfg.val_frames)
        self.batches = recalibration_batches(cfg) if cfg.recalibrate else []
        # Checkpoint BN buffers, restored before every candidate.
        self._bn_state = {k: v.clone() for k, v in supernet.state_dict().items()
                          if _is_bn_buffer(supernet, k)}
        # Candidates are scored from their boxes in memory; a work_dir keeps each one's
        # GOT-10k result files too (work_dir/eval00000, ...).
        self.work_dir = Path(work_dir) if work_dir is not None else None
        self.backend = self._backend(cfg.backend, self.val.frames)
        # AO settings keep the ids they had before the metric existed (their caches stay valid).
        extra = ({"backend": self.backend} if self.backend != "torch" else {}) | (
            {"metric": cfg.metric} if cfg.metric != "ao" else {})
        self.settings_id = cache.settings_id(
            sequences=cache.fingerprint_sequences(self.val.sequences),
            tracker=self.params, recal_batches=cfg.recalibrate_batches if cfg.recalibrate else 0,
            recal_batch_size=cfg.recalibrate_batch_size, seed=cfg.seed,
            recal_data=f"{cfg.recalibrate_root}:{cfg.recalibrate_split}", extra=extra or None)
        self.evaluations = 0
        self.sequences_tracked = 0  # over every evaluation, rungs included
        self._last: tuple[str, Any] | None = None  # (arch, its recalibrated tracking net)
        # The rung order: by a hash of each sequence's name, so a prefix is a fixed sample of
        # the split whatever the search's settings (and not the split's own, often sorted, order).
        names = [s.name for s in self.val.sequences]
        self.order = sorted(range(len(names)), key=lambda i: hashlib.sha1(names[i].encode()).hexdigest())
        # GOT-10k scores every frame after the first whose target is present: a sequence's weight.
        self._weights = [int((~np.asarray(s.absent, bool)[1:]).sum()) if cfg.metric == "ao" else 0
                         for s in self.val.sequences]

    @property
    def num_sequences(self) -> int:
        return len(self.val.sequences)

    def _backend(self, name: str, frames: int) -> str:
        if name != "auto":
            return name
        import importlib.util

        on_cpu = self.device.type == "cpu" and importlib.util.find_spec("onnxruntime") is not None
        return "onnxruntime" if on_cpu and frames >= ORT_MIN_FRAMES else "torch"

    def _tracking_net(self, path) -> Any:
        if self.backend == "torch":
            return path
        from lighttrack.models.supernet import extract
        from lighttrack.tracker.export import OrtEvalNet

        return OrtEvalNet(extract(self.net, path.arch), torch.get_num_threads())

    def evaluate(self, arch: Arch, sequences: int | None = None, start: dict | None = None) -> dict[str, Any]:
        """Recalibrate + track ``arch``; a cache row (without search/budget/worker).

        ``sequences``: the rung (the first that many of :attr:`order`; None or the split's
        size: the whole split), going on from ``start``, this arch's row of a lower rung."""
        n = self.num_sequences
        k = n if sequences is None else min(int(sequences), n)
        if (k < n or start is not None) and self.cfg.metric != "ao":
            raise ValueError("successive halving over sequences needs the ao metric (EAO is no mean over sequences)")
        done = 0 if start is None else int(start["sequences"])
        if not 0 <= done < k:
            raise ValueError(f"a rung of {k} sequences cannot go on from a row of {done}")
        started = dt.datetime.now(dt.timezone.utc)
        t0 = time.perf_counter()
        net = self._recalibrated(arch)
        out = self.work_dir / f"eval{self.evaluations:05d}" if self.work_dir is not None else None
        # self.val was read and checked once, in __init__: scoring reads no annotation again
        val = self.val if (done, k) == (0, n) else Validation(
            self.val.metric, self.val.reader, [self.val.sequences[i] for i in self.order[done:k]])
        scores = score(net, val, self.params, out, self.cfg.batch or "auto")
        figures = {key: scores.get(key) for key in cache.SCORE_COLUMNS}
        if start is not None:
            figures = self._merge(start, done, figures, k)
        c = self.costs(arch)
        self.evaluations += 1
        self.sequences_tracked += k - done
        return {"supernet_id": self.supernet_id, "settings_id": self.settings_id, "arch": str(arch),
                **figures, "params": c.params, "macs": c.macs, "latency_ms": c.latency_ms,
                "recal_batches": len(self.batches), "seconds": time.perf_counter() - t0,
                "started": started, "finished": dt.datetime.now(dt.timezone.utc),
                "sequences": None if k == n else k}

    def _recalibrated(self, arch: Arch) -> Any:
        """``arch``'s tracking net, its BN statistics re-estimated from the checkpoint's. The
        last one is kept: the rungs of one candidate come one after another on one evaluator,
        and a recalibration from the same start on the same batches gives the same statistics."""
        if self._last is not None and self._last[0] == str(arch):
            return self._last[1]
        self._last = None
        self.net.load_state_dict(self._bn_state, strict=False)
        path = self.net.path(arch)
        if self.cfg.recalibrate:
            dev = self.device
            recalibrate_bn(lambda b: path(b[0].to(dev), b[1].to(dev)), self.batches)
        path.eval()
        self._last = (str(arch), self._tracking_net(path))
        return self._last[1]

    def _merge(self, start: dict, done: int, new: dict, k: int) -> dict:
        """The figures of the first ``k`` sequences from those of the first ``done`` and the rest."""
        w0 = sum(self._weights[i] for i in self.order[:done])
        w1 = sum(self._weights[i] for i in self.order[done:k])
        out = dict(new)
        for key in ("ao", "baseline_ao", "sr50", "sr75"):
            out[key] = (start[key] * w0 + new[key] * w1) / (w0 + w1)
        out["fitness"], out["baseline_fitness"] = out["ao"], out["baseline_ao"]
        return out


def _is_bn_buffer(net: nn.Module, key: str) -> bool:
    module_name, _, leaf = key.rpartition(".")
    return leaf in ("running_mean", "running_var", "num_batches_tracked") and isinstance(
        net.get_submodule(module_name), _BatchNorm)
