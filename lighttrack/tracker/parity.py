"""Parity of an exported tracker with the eager one, and its latency, on one runtime.

Two checks, both on real images (a sequence of the dataset, or one rendered by
``lighttrack.data.synth``), failing the export with :class:`ParityError`:

- **heads**: ``zf``, ``cls`` and ``reg`` of template/search crop pairs cut from the
  sequence, each within ``rel`` of eager PyTorch, relative to the largest magnitude of
  the eager output (an element-wise ratio is meaningless where logits cross zero);
- **boxes**: every frame of a sequence tracked by both from the eager tracker's state,
  every box corner within ``px`` pixels.

The AO over a split (equal to 3 decimals) is a property of the split, measured by
``lighttrack export --dataset`` and ``bench/bench_runtimes.py``.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch

from lighttrack.geometry import SEARCH_SIZE, normalize

__all__ = ["ParityError", "HEAD_REL", "BOX_PX", "RenderedSequence", "check_parity", "latency_ms"]

HEAD_REL = 1e-3
BOX_PX = 1.0


class ParityError(ValueError):
    """An exported graph that does not compute what the eager network computes."""


@dataclass
class RenderedSequence:
    """A reader-like sequence held in memory (frames rendered by lighttrack.data.synth)."""

    name: str
    images: list
    boxes: np.ndarray
    absent: np.ndarray = None
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.frames = [f"{self.name}/{k:08d}" for k in range(len(self.images))]
        if self.absent is None:
            self.absent = np.zeros(len(self.images), bool)

    @classmethod
    def render(cls, seed: int = 0, frames: int = 60) -> "RenderedSequence":
        from lighttrack.data.synth import render_sequence

        images, boxes, labels = render_sequence(np.random.default_rng(seed), frames, frames=(frames, frames))
        return cls(f"rendered-{seed}", images, np.asarray(boxes, np.float64),
                   np.asarray(labels.get("absence", np.zeros(frames)), bool))

    def read_frame(self, k: int) -> np.ndarray:
        return self.images[k]

    def __len__(self) -> int:
        return len(self.images)


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(np.asarray(a, np.float64) - b).max() / max(float(np.abs(b).max()), 1e-6))


def _corners(box: np.ndarray) -> np.ndarray:
    return np.concatenate([box[:2], box[:2] + box[2:]])


def check_parity(eager: torch.nn.Module, exported, sequence, params, crops: list, runtime: str = "",
                 rel: float = HEAD_REL, px: float = BOX_PX, raise_error: bool = True) -> dict:
    """Compare ``exported`` (template/search on raw uint8 crops) with ``eager`` (a
    StaticTracker in eval mode taking normalised crops) on ``crops`` = [(z uint8 (128, 128, 3),
    x uint8 (S, S, 3))] and by tracking ``sequence``; returns the figures."""
    from lighttrack.tracker import Tracker

    worst = {"zf": 0.0, "cls": 0.0, "reg": 0.0}
    for z, x in crops:
        with torch.inference_mode():
            zf = eager.template(torch.from_numpy(normalize(z[None])))
            cls, reg = eager.search(zf, torch.from_numpy(normalize(x[None])))
        zf_e = exported.template(z[None])
        cls_e, reg_e = exported.search(zf_e, x[None])
        for k, a, b in (("zf", zf_e, zf), ("cls", cls_e, cls), ("reg", reg_e, reg)):
            worst[k] = max(worst[k], _rel(a, b.numpy()))
    # boxes frame by frame from the same state: the exported tracker starts each frame
    # where the eager one stands. Run freely, a 1e-6 difference in the heads moves a crop
    # by a fraction of a pixel, the next crop samples other pixels, and an untrained net's
    # boxes part by 100 px (the fresh LightTrack-Mobile export did): that tests chaos, not
    # the graphs
    ours, theirs = Tracker(eager, params), Tracker(exported, params)
    box_px, frames, ties = 0.0, len(sequence.frames), 0
    for k in range(frames):
        image = sequence.read_frame(k)
        if k == 0:
            for t in (ours, theirs):
                t.initialize(image, np.asarray(sequence.boxes[0], np.float64))
            continue
        theirs.center, theirs.size, theirs.grid = ours.center.copy(), ours.size.copy(), ours.grid
        a, _ = ours.track(image)
        b, _ = theirs.track(image)
        d, e = ours.decision, theirs.decision
        if d.cell != e.cell and abs(d.pscore - e.pscore) <= rel * d.pscore:
            ties += 1  # two cells equal within the heads' tolerance: either is the argmax
            continue
        box_px = max(box_px, float(np.abs(_corners(a) - _corners(b)).max()))
    out = {"heads_rel": worst, "heads_rel_max": max(worst.values()), "crops": len(crops),
           "boxes_px": box_px, "frames": frames, "tied_frames": ties, "sequence": sequence.name,
           "rel_tol": rel, "px_tol": px}
    out["passed"] = bool(out["heads_rel_max"] <= rel and box_px <= px)
    if raise_error and not out["passed"]:
        raise ParityError(f"{runtime or type(exported).__name__}: exported graphs differ from eager PyTorch: "
                          f"heads {out['heads_rel_max']:.2e} relative (tolerance {rel:g}; per output "
                          f"{ {k: f'{v:.1e}' for k, v in worst.items()} }), boxes up to {box_px:.2f} px over "
                          f"{frames} frames of {sequence.name} (tolerance {px:g} px)")
    return out


def latency_ms(net, side: int = SEARCH_SIZE, repeats: int = 30, warmup: int = 3) -> dict:
    """Median ms of ``net``'s template and search calls on one crop (search: ``side``)."""
    rng = np.random.default_rng(0)
    z = rng.integers(0, 256, (1, 128, 128, 3), dtype=np.uint8)
    x = rng.integers(0, 256, (1, side, side, 3), dtype=np.uint8)
    zf = net.template(z)

    def median(f) -> float:
        for _ in range(warmup):
            f()
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            f()
            times.append(time.perf_counter() - t)
        return float(np.median(times) * 1e3)

    with torch.inference_mode():
        return {"template": median(lambda: net.template(z)), f"search_{side}": median(lambda: net.search(zf, x)),
                "repeats": repeats}
