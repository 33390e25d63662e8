"""The tracker's post-processing, written once: score maps -> chosen cell -> next box.

Both trackers decode with :func:`decode`: the one-sequence
:class:`~lighttrack.tracker.tracker.Tracker` on NumPy arrays as a batch of one (on an
18x18 map NumPy costs about a tenth of torch's per-op overhead, and a deployed tracker runs
there), the lockstep evaluator (:mod:`lighttrack.tracker.lockstep`) on torch tensors of its
K slots on the network's device (on a GPU no map leaves it). The same expressions run on
either library (REFERENCE §4):

1. score = sigmoid(cls); each cell's box = its grid point -/+ the regressed ltrb (crop px);
2. penalty = exp(-(r_c * s_c - 1) * penalty_k), ``s_c = change(sz(pred) / sz(last))``,
   ``r_c = change(ratio(last) / ratio(pred))``, ``change(r) = max(r, 1/r)``, the last size
   in crop px (times ``scale_z``);
3. pscore = penalty * score * (1 - window_influence) + window * window_influence; argmax
   (the first maximum);
4. the centre moves fully to the chosen box's centre, the size once with
   ``lr' = penalty * score * lr``; the centre is clamped to the frame, the size to
   [min_size, frame size].

Inputs are float64 arrays of one library (and one device); so are the outputs.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from lighttrack.geometry import TEMPLATE_SIZE, grid_points
from lighttrack.tracker.params import TrackerParams

__all__ = ["ScoreGrid", "Decoded", "score_grid", "hanning_window", "context_size", "size_change_penalty",
           "decode"]

Array = Any  # np.ndarray or torch.Tensor, float64
EPS = 1e-6  # floor for predicted box sides (crop px) so ratios stay finite


def _xp(a: Array):
    """The library of ``a``: torch for tensors, else NumPy; both spell exp, sqrt, maximum,
    minimum and stack alike."""
    return torch if isinstance(a, torch.Tensor) else np


def hanning_window(s: int) -> np.ndarray:
    """Un-normalised cosine window outer(hanning(S), hanning(S)), shape (S, S), peak < 1."""
    h = np.hanning(s)
    return np.outer(h, h)


@dataclass(frozen=True)
class ScoreGrid:
    """The constants of an S x S score map over a search crop of ``crop`` px: computed once
    per sequence (per slot size), in the library and on the device of the maps."""

    window: Array  # (S, S) un-normalised Hanning window
    points: Array  # (S,) crop px of each cell's grid point: (j - S//2) * stride + crop//2
    crop: int  # search crop side, px; stride = crop // S (16, or 8 for a stage-2 output)


def score_grid(s: int, crop: int, device: torch.device | str | None = None) -> ScoreGrid:
    """NumPy arrays, or float64 tensors on ``device`` when one is given."""
    window, points = hanning_window(s), grid_points(s, crop, crop // s).astype(np.float64)
    if device is not None:
        window, points = torch.from_numpy(window).to(device), torch.from_numpy(points).to(device)
    return ScoreGrid(window, points, crop)


def _sz(w: Array, h: Array, context: float) -> Array:
    p = context * (w + h)
    return _xp(w).sqrt((w + p) * (h + p))


def context_size(size: Array, context: float) -> Array:
    """s_z = sqrt((w + p)(h + p)), p = context * (w + h) of (B, 2) sizes -> (B,)."""
    return _sz(size[:, 0], size[:, 1], context)


def _change(r: Array) -> Array:
    return _xp(r).maximum(r, 1.0 / r)


def size_change_penalty(pred_w: Array, pred_h: Array, last_w, last_h, penalty_k: float,
                        context: float = 0.5) -> Array:
    """exp(-(r_c * s_c - 1) * k); all sizes in crop px (the last size already times scale_z),
    the last size broadcast against the predicted ones."""
    s_c = _change(_sz(pred_w, pred_h, context) / _sz(last_w, last_h, context))
    r_c = _change((last_w / last_h) / (pred_w / pred_h))
    return _xp(pred_w).exp(-(r_c * s_c - 1.0) * penalty_k)


@dataclass(frozen=True)
class Decoded:
    """One decoded step of B sequences: the next state and what was chosen."""

    center: Array  # (B, 2) next centre, frame px
    size: Array  # (B, 2) next w, h, frame px
    cell: Array  # (B,) flat index (row * S + col) of the argmax of pscore
    score: Array  # (B,) sigmoid score of that cell
    penalty: Array  # (B,) scale/ratio penalty of that cell
    pscore: Array  # (B,) penalised, windowed score of that cell: what the argmax took
    box: Array  # (B, 4) x1, y1, x2, y2 of that cell's box, crop px


def decode(cls: Array, reg: Array, center: Array, size: Array, frame_size: Array, grid: ScoreGrid,
           params: TrackerParams) -> Decoded:
    """cls (B, 1, S, S) logits and reg (B, 4, S, S) ltrb crop px of search crops cut around
    ``center`` (B, 2) at ``size`` (B, 2) (the crop scale follows from it), in frames of
    ``frame_size`` (B, 2) W, H -> the next centre and size."""
    xp, b = _xp(cls), cls.shape[0]
    scale_z = (TEMPLATE_SIZE / context_size(size, params.context))[:, None]  # (B, 1) crop px per frame px
    score = 1.0 / (1.0 + xp.exp(-cls[:, 0]))  # (B, S, S)
    gx, gy = grid.points[None, None, :], grid.points[None, :, None]
    x1, y1, x2, y2 = gx - reg[:, 0], gy - reg[:, 1], gx + reg[:, 2], gy + reg[:, 3]  # (B, S, S) crop px
    last = size * scale_z  # (B, 2) crop px
    penalty = size_change_penalty((x2 - x1).clip(min=EPS), (y2 - y1).clip(min=EPS), last[:, 0, None, None],
                                  last[:, 1, None, None], params.penalty_k, params.context)
    wi = params.window_influence
    pscore = penalty * score * (1.0 - wi) + grid.window * wi  # (B, S, S)
    cell = pscore.reshape(b, -1).argmax(1)  # (B,) the first maximum in both libraries
    rows = torch.arange(b, device=cell.device) if xp is torch else np.arange(b)

    def pick(t: Array) -> Array:
        return t.reshape(b, -1)[rows, cell]  # (B,) the chosen cell's value

    box = xp.stack([pick(x1), pick(y1), pick(x2), pick(y2)], 1)  # (B, 4)
    lr = (pick(penalty) * pick(score) * params.lr)[:, None]  # applied once (the released code: twice)
    shift = ((box[:, :2] + box[:, 2:]) / 2 - grid.crop / 2) / scale_z  # (B, 2) frame px
    pred = (box[:, 2:] - box[:, :2]).clip(min=EPS) / scale_z  # (B, 2) frame px
    return Decoded(center=xp.minimum((center + shift).clip(min=0.0), frame_size),
                   size=xp.minimum(((1.0 - lr) * size + lr * pred).clip(min=params.min_size), frame_size),
                   cell=cell, score=pick(score), penalty=pick(penalty), pscore=pick(pscore), box=box)
