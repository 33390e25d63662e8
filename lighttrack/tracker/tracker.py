"""The online tracker (docs/method.md §12): template once, then search, score, penalise, decode.

``Tracker(net, params)`` works with any network exposing ``template(z)`` and
``search(zf, x)``: a supernet ``path(arch)``, a ``StaticTracker`` (both torch modules,
wrapped by :class:`~lighttrack.tracker.runtime.TorchNet`) or an exported runtime
(:class:`~lighttrack.tracker.runtimes.ExportedNet`). Post-processing is vectorised NumPy on
the (S, S) maps; the Hanning window and grid are computed once per sequence.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import cv2
import numpy as np

from lighttrack.geometry import TEMPLATE_SIZE, STRIDE, context_size, crop, ltrb_to_xyxy, normalize, score_size
from lighttrack.tracker.params import PRESETS, TrackerParams
from lighttrack.tracker.runtime import as_numpy_net

__all__ = ["Tracker", "Decision", "SearchCrop", "hanning_window", "decide", "size_change_penalty",
           "first_box"]

_EPS = 1e-6  # floor for predicted box sides (crop px) so ratios stay finite


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


def hanning_window(s: int) -> np.ndarray:
    """Un-normalised cosine window outer(hanning(S), hanning(S)), shape (S, S), peak < 1."""
    h = np.hanning(s)
    return np.outer(h, h)


def _sz(w: np.ndarray, h: np.ndarray, context: float) -> np.ndarray:
    p = context * (w + h)
    return np.sqrt((w + p) * (h + p))


def _change(r: np.ndarray) -> np.ndarray:
    return np.maximum(r, 1.0 / r)


def size_change_penalty(pred_w: np.ndarray, pred_h: np.ndarray, last_w: float, last_h: float,
                        penalty_k: float, context: float = 0.5) -> np.ndarray:
    """exp(-(r_c * s_c - 1) * k); all sizes in crop px (last size already times scale_z)."""
    s_c = _change(_sz(pred_w, pred_h, context) / _sz(np.float64(last_w), np.float64(last_h), context))
    r_c = _change((last_w / last_h) / (pred_w / pred_h))
    return np.exp(-(r_c * s_c - 1.0) * penalty_k)


def decide(cls: np.ndarray, reg: np.ndarray, last_size: tuple[float, float], window: np.ndarray,
           params: TrackerParams, search_size: int) -> Decision:
    """Pick the cell: sigmoid(cls) (S, S), reg ltrb (4, S, S) px, last size in crop px.
    The stride is the crop over the map: 16, or 8 for a stage-2 output of the wide space."""
    score = 1.0 / (1.0 + np.exp(-cls.astype(np.float64)))  # (S, S)
    box = ltrb_to_xyxy(reg.astype(np.float64), search_size, search_size // cls.shape[-1])  # (4, S, S) x1 y1 x2 y2
    pw = np.maximum(box[2] - box[0], _EPS)
    ph = np.maximum(box[3] - box[1], _EPS)
    penalty = size_change_penalty(pw, ph, last_size[0], last_size[1], params.penalty_k, params.context)
    wi = params.window_influence
    pscore = penalty * score * (1.0 - wi) + window * wi
    r, c = np.unravel_index(int(np.argmax(pscore)), pscore.shape)
    return Decision((int(r), int(c)), float(score[r, c]), float(penalty[r, c]), box[:, r, c].copy(),
                    float(pscore[r, c]))


def first_box(box, frame_w: int, frame_h: int) -> tuple[float, float, float, float]:
    """The initial box as floats; refused unless finite, with positive sides, overlapping the frame."""
    x, y, w, h = (float(v) for v in np.asarray(box, np.float64).reshape(4))
    if not (w > 0 and h > 0 and np.isfinite([x, y, w, h]).all()):
        raise ValueError(f"initial box must have finite x, y and positive w, h; got {box}")
    if x + w <= 0 or y + h <= 0 or x >= frame_w or y >= frame_h:
        raise ValueError(f"initial box {[x, y, w, h]} lies entirely outside the {frame_w}x{frame_h} frame")
    return x, y, w, h


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

    # -- API -------------------------------------------------------------------------
    def initialize(self, image: np.ndarray, box) -> None:
        """Start on ``image`` with the target at ``box`` (x, y, w, h)."""
        self._check_image(image)
        frame_h, frame_w = image.shape[:2]
        x, y, w, h = first_box(box, frame_w, frame_h)
        p = self.params
        self.frame_size = np.array([frame_w, frame_h], np.float64)
        self.center = np.array([x + w / 2, y + h / 2])
        self.size = np.array([w, h])
        small = w * h / float(frame_w * frame_h) < p.small_target_ratio
        self.search_size = p.large_search_size if (p.large_search and small) else p.search_size
        self.window = hanning_window(score_size(self.search_size, STRIDE))  # stride 16 until a map says otherwise
        s_z = context_size(w, h, p.context)
        z = crop(image, tuple(self.center), s_z, TEMPLATE_SIZE, cv2.mean(image)[:3])
        self.zf = self.net.template(self._input(z))  # computed once per sequence

    def track(self, image: np.ndarray) -> tuple[np.ndarray, float]:
        """Next frame -> (box (4,) x, y, w, h, score of the chosen cell)."""
        if not hasattr(self, "zf"):
            raise RuntimeError("Tracker.track() before initialize(image, box)")
        self._check_image(image)
        p = self.params
        s_z = context_size(self.size[0], self.size[1], p.context)
        scale_z = TEMPLATE_SIZE / s_z  # crop px per frame px, same for template and search
        s_x = s_z * self.search_size / TEMPLATE_SIZE
        self.search_crop = SearchCrop((float(self.center[0]), float(self.center[1])), s_x, self.search_size)
        t0 = time.perf_counter()
        x = self._input(crop(image, self.search_crop.center, s_x, self.search_size, cv2.mean(image)[:3]))
        t1 = time.perf_counter()
        cls, reg = self.net.search(self.zf, x)  # (1, 1, S, S), (1, 4, S, S)
        t2 = time.perf_counter()
        if self.window.shape != cls.shape[-2:]:  # a stride-8 net: a 2x finer map
            self.window = hanning_window(cls.shape[-1])
        d = decide(np.asarray(cls)[0, 0], np.asarray(reg)[0], tuple(self.size * scale_z),
                   self.window, p, self.search_size)
        self.decision = d
        self._update(d, scale_z)
        t3 = time.perf_counter()
        self.timings["crop"] += t1 - t0
        self.timings["network"] += t2 - t1
        self.timings["post"] += t3 - t2
        return self.box, d.score

    def _update(self, d: Decision, scale_z: float) -> None:
        x1, y1, x2, y2 = d.box
        half = self.search_size / 2
        # The centre moves fully to the chosen box's centre.
        self.center = self.center + (np.array([(x1 + x2) / 2, (y1 + y2) / 2]) - half) / scale_z
        # The size moves once with lr' = penalty * score * lr (the released code applied it twice).
        lr = d.penalty * d.score * self.params.lr
        pred = np.array([max(x2 - x1, _EPS), max(y2 - y1, _EPS)]) / scale_z
        self.size = (1.0 - lr) * self.size + lr * pred
        self.center = np.clip(self.center, 0.0, self.frame_size)
        self.size = np.clip(self.size, self.params.min_size, self.frame_size)

    @property
    def box(self) -> np.ndarray:
        """Current box (x, y, w, h) in frame px."""
        return np.concatenate([self.center - self.size / 2, self.size])
