"""Training labels on the score map from the target box in search-crop pixels (docs/method.md §9).

- cls: 1 where the cell's Manhattan distance to the cell of the box centre is <= ``radius``
  (5 positives for radius 1), 0 elsewhere; no ignore band.
- reg: (left, top, right, bottom) distances in crop pixels from each cell's grid point
  (:func:`lighttrack.geometry.grid_points`) to the box edges.
- mask: 1 where the grid point lies strictly inside the box (where the IoU loss applies).
"""
from __future__ import annotations

import numpy as np

from ..geometry import SEARCH_SIZE, STRIDE, grid_points, score_size

__all__ = ["center_cell", "make_labels"]


def center_cell(cx: float, cy: float, search_size: int = SEARCH_SIZE, stride: int = STRIDE) -> tuple[int, int]:
    """(row, col) of the cell whose grid point is nearest to (cx, cy), clamped to the map."""
    s = score_size(search_size, stride)
    col = int(np.clip(np.floor((cx - search_size // 2) / stride + 0.5) + s // 2, 0, s - 1))
    row = int(np.clip(np.floor((cy - search_size // 2) / stride + 0.5) + s // 2, 0, s - 1))
    return row, col


def make_labels(box, search_size: int = SEARCH_SIZE, stride: int = STRIDE,
                radius: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Box (x, y, w, h) in crop pixels -> cls (S, S), reg (4, S, S), mask (S, S), all float32."""
    x, y, w, h = (float(v) for v in box)
    s = score_size(search_size, stride)
    g = grid_points(s, search_size, stride).astype(np.float32)  # (S,)
    gx, gy = np.meshgrid(g, g)  # (S, S): gx varies along columns
    row, col = center_cell(x + w / 2, y + h / 2, search_size, stride)
    rows, cols = np.indices((s, s))
    cls = (np.abs(rows - row) + np.abs(cols - col) <= radius).astype(np.float32)
    reg = np.stack([gx - x, gy - y, x + w - gx, y + h - gy]).astype(np.float32)  # (4, S, S)
    mask = (reg > 0).all(0).astype(np.float32)
    return cls, reg, mask
