"""The online tracker (docs/method.md §12): template once, then search, score, penalise, decode.

``Tracker(net, params)`` works with any network exposing ``template(z)`` and
``search(zf, x)``: a supernet ``path(arch)``, a ``StaticTracker`` (both torch modules,
wrapped by :class:`~lighttrack.tracker.runtime.TorchNet`) or an exported runtime
(:class:`~lighttrack.tracker.runtimes.ExportedNet`). Post-processing is
:func:`lighttrack.tracker.decode.decode` (the lockstep evaluator's too) on NumPy arrays, a
batch of one; the Hanning window and grid are computed once per sequence.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import cv2
import numpy as np

from lighttrack.geometry import TEMPLATE_SIZE, STRIDE, context_size, crop, normalize, score_size
from lighttrack.tracker.decode import ScoreGrid, decode, score_grid
from lighttrack.tracker.params import PRESETS, TrackerParams
from lighttrack.tracker.runtime import as_numpy_net

__all__ = ["Tracker", "Decision", "SearchCrop", "first_box", "search_side"]


@dataclass(frozen=True)
class SearchCrop:
    """Where the last search crop came from: a square of ``size`` frame px around ``center``."""

    center: tuple[float, float]
    size: float
    out: int


@dataclass(frozen=True)
class Decision:
    """Outcome of post-processing one pair of maps."""

    cell: tuple[int, int]  # (row, col) of the argmax of pscore
    score: float  # sigmoid score of that cell
    penalty: float  # scale/ratio penalty of that cell
    box: np.ndarray  # (4,) x1, y1, x2, y2 of that cell's box in crop px
    pscore: float  # penalised, windowed score of that cell: what the argmax took


def first_box(box, frame_w: int, frame_h: int) -> tuple[float, float, float, float]:
    """The initial box as floats; refused unless finite, with positive sides, overlapping the frame."""
    x, y, w, h = (float(v) for v in np.asarray(box, np.float64).reshape(4))
    if not (w > 0 and h > 0 and np.isfinite([x, y, w, h]).all()):
        raise ValueError(f"initial box must have finite x, y and positive w, h; got {box}")
    if x + w <= 0 or y + h <= 0 or x >= frame_w or y >= frame_h:
        raise ValueError(f"initial box {[x, y, w, h]} lies entirely outside the {frame_w}x{frame_h} frame")
    return x, y, w, h


def search_side(w: float, h: float, frame_w: int, frame_h: int, params: TrackerParams) -> int:
    """The search crop side of a sequence: the large one when the first box covers less
    than ``small_target_ratio`` of the frame (and ``large_search`` allows it)."""
    small = w * h / float(frame_w * frame_h) < params.small_target_ratio
    return params.large_search_size if (params.large_search and small) else params.search_size


class Tracker:
    """Single-object tracker; boxes are ``(x, y, w, h)`` in frame pixels."""

    def __init__(self, net, params: TrackerParams = PRESETS["vot2019"]):
        self.net = as_numpy_net(net)
        self.params = params
        # An exported runtime may take the raw uint8 (1, H, W, 3) crop and normalise inside.
        self.raw_crops = bool(getattr(self.net, "takes_raw_crops", False))
        self.search_crop: SearchCrop | None = None  # last search crop (tests, oracles)
        self.decision: Decision | None = None  # last post-processing outcome
        # Seconds spent per stage over all track() calls (a few perf_counter calls per frame).
        self.timings = {"crop": 0.0, "network": 0.0, "post": 0.0}

    # -- helpers ---------------------------------------------------------------------
    def _input(self, patch: np.ndarray) -> np.ndarray:
        return patch[None] if self.raw_crops else normalize(patch[None])  # (1, ...) batch

    @staticmethod
    def _check_image(image: np.ndarray) -> None:
        if not (isinstance(image, np.ndarray) and image.ndim == 3 and image.shape[2] == 3
                and image.dtype == np.uint8):
            got = getattr(image, "shape", type(image).__name__), getattr(image, "dtype", "")
            raise ValueError(f"tracker expects an (H, W, 3) uint8 RGB frame, got {got}")

    @property
    def window(self) -> np.ndarray:
        """(S, S) Hanning window of the current score map."""
        return self.grid.window

    # -- API -------------------------------------------------------------------------
    def initialize(self, image: np.ndarray, box) -> None:
        """Start on ``image`` with the target at ``box`` (x, y, w, h)."""
        self._check_image(image)
        frame_h, frame_w = image.shape[:2]
        x, y, w, h = first_box(box, frame_w, frame_h)
        self.frame_size = np.array([frame_w, frame_h], np.float64)
        self.center = np.array([x + w / 2, y + h / 2])
        self.size = np.array([w, h])
        self.search_size = search_side(w, h, frame_w, frame_h, self.params)
        # stride 16 until a map says otherwise
        self.grid: ScoreGrid = score_grid(score_size(self.search_size, STRIDE), self.search_size)
        s_z = context_size(w, h, self.params.context)
        z = crop(image, tuple(self.center), s_z, TEMPLATE_SIZE, cv2.mean(image)[:3])
        self.zf = self.net.template(self._input(z))  # computed once per sequence

    def track(self, image: np.ndarray) -> tuple[np.ndarray, float]:
        """Next frame -> (box (4,) x, y, w, h, score of the chosen cell)."""
        if not hasattr(self, "zf"):
            raise RuntimeError("Tracker.track() before initialize(image, box)")
        self._check_image(image)
        s_z = context_size(self.size[0], self.size[1], self.params.context)
        s_x = s_z * self.search_size / TEMPLATE_SIZE  # the template's scale: scale_z = 128 / s_z
        self.search_crop = SearchCrop((float(self.center[0]), float(self.center[1])), s_x, self.search_size)
        t0 = time.perf_counter()
        x = self._input(crop(image, self.search_crop.center, s_x, self.search_size, cv2.mean(image)[:3]))
        t1 = time.perf_counter()
        cls, reg = self.net.search(self.zf, x)  # (1, 1, S, S), (1, 4, S, S)
        t2 = time.perf_counter()
        s = cls.shape[-1]
        if self.grid.window.shape != (s, s):  # a stride-8 net: a 2x finer map
            self.grid = score_grid(s, self.search_size)
        d = decode(np.asarray(cls, np.float64), np.asarray(reg, np.float64), self.center[None], self.size[None],
                   self.frame_size[None], self.grid, self.params)
        self.center, self.size = d.center[0], d.size[0]
        self.decision = Decision(divmod(int(d.cell[0]), s), float(d.score[0]), float(d.penalty[0]), d.box[0],
                                 float(d.pscore[0]))
        t3 = time.perf_counter()
        self.timings["crop"] += t1 - t0
        self.timings["network"] += t2 - t1
        self.timings["post"] += t3 - t2
        return self.box, self.decision.score

    @property
    def box(self) -> np.ndarray:
        """Current box (x, y, w, h) in frame px."""
        return np.concatenate([self.center - self.size / 2, self.size])
