"""Crop, grid and box geometry shared by the data pipeline and the tracker.

Conventions: images are ``(H, W, 3)`` uint8 RGB; a box is ``(x, y, w, h)`` in
continuous pixel coordinates (``x`` = left edge, pixel ``i`` covers ``[i, i+1)``).
A crop is a square of side ``size`` image pixels around ``center`` resized to
``out`` pixels, so image point ``u`` lands at ``(u - (c - size/2)) * out/size``.
"""
from __future__ import annotations

import math

import cv2
import numpy as np

__all__ = [
    "STRIDE", "TEMPLATE_SIZE", "SEARCH_SIZE", "CONTEXT", "IMAGENET_MEAN", "IMAGENET_STD",
    "context_size", "crop", "box_to_crop", "box_from_crop", "grid_points", "score_size",
    "ltrb_to_xyxy", "normalize",
]

STRIDE = 16
TEMPLATE_SIZE = 128
SEARCH_SIZE = 256
CONTEXT = 0.5
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)


def context_size(w: float, h: float, context: float = CONTEXT) -> float:
    """s_z = sqrt((w + p)(h + p)) with p = context * (w + h)."""
    p = context * (w + h)
    return math.sqrt((w + p) * (h + p))


def _sides(size) -> tuple[float, float]:
    # A crop side is one number (square) or (width, height) for per-axis scaling.
    if np.ndim(size) == 0:
        return float(size), float(size)
    sw, sh = size
    return float(sw), float(sh)


def _affine(center: tuple[float, float], size, out: int) -> np.ndarray:
    # Maps source pixel centres (integers) to destination pixel centres.
    sw, sh = _sides(size)
    ax, ay = out / sw, out / sh
    x0, y0 = center[0] - sw / 2, center[1] - sh / 2
    return np.array([[ax, 0, (0.5 - x0) * ax - 0.5], [0, ay, (0.5 - y0) * ay - 0.5]], np.float64)


def crop(image: np.ndarray, center: tuple[float, float], size, out: int,
         pad: tuple[float, float, float] | None = None) -> np.ndarray:
    """Square crop of side ``size`` around ``center`` resized to ``(out, out, 3)``;
    outside the frame it is filled with ``pad`` (default: the frame's mean colour).
    ``size`` may be ``(width, height)``: a rectangle resized to the square (per-axis scale)."""
    if pad is None:
        pad = tuple(float(v) for v in image.reshape(-1, image.shape[-1]).mean(0))
    return cv2.warpAffine(image, _affine(center, size, out), (out, out), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=pad)


def box_to_crop(box, center: tuple[float, float], size, out: int) -> np.ndarray:
    """Box ``(x, y, w, h)`` in image pixels -> the same box in crop pixels."""
    sw, sh = _sides(size)
    ax, ay = out / sw, out / sh
    x, y, w, h = np.asarray(box, np.float64)
    return np.array([(x - center[0] + sw / 2) * ax, (y - center[1] + sh / 2) * ay, w * ax, h * ay])


def box_from_crop(box, center: tuple[float, float], size, out: int) -> np.ndarray:
    """Inverse of :func:`box_to_crop`."""
    sw, sh = _sides(size)
    ax, ay = sw / out, sh / out
    x, y, w, h = np.asarray(box, np.float64)
    return np.array([x * ax + center[0] - sw / 2, y * ay + center[1] - sh / 2, w * ax, h * ay])


def score_size(search_size: int = SEARCH_SIZE, stride: int = STRIDE) -> int:
    """Side of the score map for a search crop (256 -> 16, 288 -> 18)."""
    return search_size // stride


def grid_points(s: int, search_size: int = SEARCH_SIZE, stride: int = STRIDE) -> np.ndarray:
    """Crop-pixel coordinate of each cell's grid point: (j - S//2) * stride + size//2; shape (S,)."""
    return (np.arange(s) - s // 2) * stride + search_size // 2


def ltrb_to_xyxy(ltrb: np.ndarray, search_size: int = SEARCH_SIZE, stride: int = STRIDE) -> np.ndarray:
    """(4, S, S) distances (left, top, right, bottom) -> (4, S, S) boxes x1, y1, x2, y2 in crop pixels."""
    s = ltrb.shape[-1]
    g = grid_points(s, search_size, stride).astype(ltrb.dtype)
    gx, gy = g[None, :], g[:, None]
    return np.stack([gx - ltrb[0], gy - ltrb[1], gx + ltrb[2], gy + ltrb[3]])


# (3, 256) float32: channel c's value v normalised, computed in the same order as the formula.
_NORMALIZED = ((np.arange(256, dtype=np.float32)[None] / np.float32(255.0) - IMAGENET_MEAN[:, None])
               / IMAGENET_STD[:, None]).astype(np.float32)


def normalize(images: np.ndarray) -> np.ndarray:
    """uint8 RGB ``(..., H, W, 3)`` -> float32 ``(..., 3, H, W)`` with ImageNet mean/std
    (a table look-up per channel: the same values as the float formula, half the time)."""
    if images.dtype != np.uint8:
        x = (images.astype(np.float32) / 255.0 - IMAGENET_MEAN) / IMAGENET_STD
        return np.ascontiguousarray(np.moveaxis(x, -1, -3))
    out = np.empty(images.shape[:-3] + (3,) + images.shape[-3:-1], np.float32)
    for c in range(3):
        np.take(_NORMALIZED[c], images[..., c], out=out[..., c, :, :])
    return out
