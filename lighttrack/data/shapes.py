"""Textures, shape masks and affine rendering for the embedded synthetic datasets.

Textures are regions of the real photographs bundled with scikit-image (no download).
A sprite is a (P, P, 3) texture with a (P, P) mask of one of :data:`SHAPES`, placed in a frame
by a 2x3 affine ``A`` mapping continuous sprite coordinates to continuous frame coordinates
(pixel ``i`` covers ``[i, i+1)``, as in :mod:`lighttrack.geometry`); its exact box is the box
of the transformed mask pixels.
"""
from __future__ import annotations

import functools

import cv2
import numpy as np

__all__ = ["SHAPES", "PATCH", "photos", "texture", "shape_mask", "affine", "render", "sprite_box", "points_box", "hull"]

PATCH = 96  # sprite side, pixels
SHAPES = ("circle", "square", "triangle", "star", "cross", "ring", "hexagon", "crescent", "arrow", "ell")


@functools.lru_cache(maxsize=1)
def photos() -> tuple[np.ndarray, ...]:
    """RGB uint8 photographs from ``skimage.data`` (grayscale ones tinted to colour)."""
    import skimage.data as d
    out = []
    for name in ("astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry", "hubble_deep_field",
                 "retina", "colorwheel", "brick", "camera", "grass", "gravel", "moon", "coins", "clock",
                 "text", "page", "cell"):
        try:
            img = getattr(d, name)()
        except Exception:  # a photo that needs the optional pooch download: skip it
            continue
        if img.ndim == 2:
            tint = np.array([[1.0, 0.85, 0.7], [0.7, 0.9, 1.0], [0.9, 1.0, 0.75]][len(out) % 3])
            img = np.clip(img[..., None] * tint, 0, 255).astype(np.uint8)
        out.append(np.ascontiguousarray(img[..., :3]))
    return tuple(out)


def texture(rng: np.random.Generator, size: int, like: tuple[int, int, int, int] | None = None,
            ) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """A (size, size, 3) region of a photo, and its source ``(photo, x, y, side)``; ``like``
    gives a nearby region of the same photo (a similar-looking texture)."""
    ph = photos()
    if like is None:
        k = int(rng.integers(len(ph)))
        side = int(rng.integers(48, min(ph[k].shape[:2]) // 2 + 49))
        x = int(rng.integers(0, ph[k].shape[1] - side + 1))
        y = int(rng.integers(0, ph[k].shape[0] - side + 1))
    else:
        k, x0, y0, side = like
        x = int(np.clip(x0 + rng.integers(-side // 4, side // 4 + 1), 0, ph[k].shape[1] - side))
        y = int(np.clip(y0 + rng.integers(-side // 4, side // 4 + 1), 0, ph[k].shape[0] - side))
    img = cv2.resize(ph[k][y:y + side, x:x + side], (size, size), interpolation=cv2.INTER_AREA)
    return img, (k, x, y, side)


def _poly(points: np.ndarray, p: int) -> np.ndarray:
    m = np.zeros((p, p), np.uint8)
    cv2.fillPoly(m, [np.round(points * 16).astype(np.int32)], 1, cv2.LINE_AA, shift=4)
    return m


def shape_mask(shape: str | int, p: int = PATCH, rng: np.random.Generator | None = None) -> np.ndarray:
    """(p, p) float32 mask in {0, 1} of a named shape (or a random blob when ``shape == 'blob'``)."""
    name = SHAPES[shape] if isinstance(shape, (int, np.integer)) else shape
    c, r = p / 2, p * 0.45
    t = np.linspace(0, 2 * np.pi, 7)[:-1] - np.pi / 2
    m = np.zeros((p, p), np.uint8)
    if name == "circle":
        cv2.circle(m, (p // 2, p // 2), int(r), 1, -1)
    elif name == "square":
        m[int(c - r * 0.85):int(c + r * 0.85), int(c - r * 0.85):int(c + r * 0.85)] = 1
    elif name == "triangle":
        a = np.array([-np.pi / 2, np.pi / 6, 5 * np.pi / 6])
        m = _poly(np.stack([c + r * np.cos(a), c + 0.1 * r + r * np.sin(a)], 1), p)
    elif name == "star":
        a = np.linspace(0, 2 * np.pi, 11)[:-1] - np.pi / 2
        rad = np.where(np.arange(10) % 2 == 0, r, r * 0.42)
        m = _poly(np.stack([c + rad * np.cos(a), c + rad * np.sin(a)], 1), p)
    elif name == "cross":
        w = r * 0.36
        m[int(c - r):int(c + r), int(c - w):int(c + w)] = 1
        m[int(c - w):int(c + w), int(c - r):int(c + r)] = 1
    elif name == "ring":
        cv2.circle(m, (p // 2, p // 2), int(r), 1, -1)
        cv2.circle(m, (p // 2, p // 2), int(r * 0.55), 0, -1)
    elif name == "hexagon":
        m = _poly(np.stack([c + r * np.cos(t), c + r * np.sin(t)], 1), p)
    elif name == "crescent":
        cv2.circle(m, (p // 2, p // 2), int(r), 1, -1)
        cv2.circle(m, (int(c + r * 0.45), int(c - r * 0.15)), int(r * 0.8), 0, -1)
    elif name == "arrow":
        pts = np.array([[-1, -0.3], [0.2, -0.3], [0.2, -0.75], [1, 0], [0.2, 0.75], [0.2, 0.3], [-1, 0.3]])
        m = _poly(c + r * pts, p)
    elif name == "ell":
        m[int(c - r):int(c + r), int(c - r):int(c - r * 0.2)] = 1
        m[int(c + r * 0.3):int(c + r), int(c - r):int(c + r)] = 1
    elif name == "blob":
        rng = rng or np.random.default_rng()
        a = np.sort(rng.uniform(0, 2 * np.pi, 9))
        rad = r * rng.uniform(0.55, 1.0, 9)
        m = cv2.fillPoly(m, [np.stack([c + rad * np.cos(a), c + rad * np.sin(a)], 1).astype(np.int32)], 1)
        m = (cv2.GaussianBlur(m.astype(np.float32), (0, 0), p / 20) > 0.5).astype(np.uint8)
    else:
        raise ValueError(f"unknown shape {shape!r}; known: {SHAPES + ('blob',)}")
    return (m > 0).astype(np.float32)


def affine(center: tuple[float, float], sx: float, sy: float, angle: float = 0.0, shear: float = 0.0,
           p: int = PATCH) -> np.ndarray:
    """2x3 map from sprite coordinates to frame coordinates: the sprite centre goes to ``center``,
    sprite axes are scaled to ``sx``/``sy`` frame pixels per sprite side, sheared and rotated."""
    ca, sa = np.cos(angle), np.sin(angle)
    lin = np.array([[ca, -sa], [sa, ca]]) @ np.array([[1, shear], [0, 1]]) @ np.diag([sx / p, sy / p])
    t = np.asarray(center, np.float64) - lin @ np.array([p / 2, p / 2])
    return np.hstack([lin, t[:, None]])


def hull(mask: np.ndarray) -> np.ndarray:
    """(K, 2) convex hull of the mask pixels' corners: an affine map's box of it is the mask's box."""
    ys, xs = np.nonzero(mask > 0.5)
    corners = np.concatenate([np.stack([xs + dx, ys + dy], 1) for dx in (0, 1) for dy in (0, 1)])
    return cv2.convexHull(corners.astype(np.float32))[:, 0].astype(np.float64)


def sprite_box(mask: np.ndarray, a: np.ndarray) -> np.ndarray:
    """Exact (x, y, w, h) of the mask pixels (as unit squares) under the affine ``a``."""
    return points_box(hull(mask), a)


def points_box(points: np.ndarray, a: np.ndarray) -> np.ndarray:
    """(x, y, w, h) of (K, 2) sprite points under the affine ``a``."""
    pts = points @ a[:, :2].T + a[:, 2]
    lo, hi = pts.min(0), pts.max(0)
    return np.array([lo[0], lo[1], hi[0] - lo[0], hi[1] - lo[1]])


def render(canvas: np.ndarray, tex: np.ndarray, mask: np.ndarray, a: np.ndarray
           ) -> tuple[tuple[slice, slice], np.ndarray] | None:
    """Alpha-blend the sprite into ``canvas`` (float32 (H, W, 3), in place); returns the region
    it touched and its alpha there (or None when it is outside the frame)."""
    h, w = canvas.shape[:2]
    p = mask.shape[0]
    box = points_box(np.array([[0.0, 0.0], [p, 0], [0, p], [p, p]]), a)  # the whole sprite square
    x0, y0 = max(int(np.floor(box[0])), 0), max(int(np.floor(box[1])), 0)
    x1, y1 = min(int(np.ceil(box[0] + box[2])) + 1, w), min(int(np.ceil(box[1] + box[3])) + 1, h)
    if x1 <= x0 or y1 <= y0:
        return None
    # cv2 maps pixel centres: dst = A (src + 0.5) + t - 0.5, then shift to the region's origin.
    m = a.copy()
    m[:, 2] = a[:, 2] + a[:, :2] @ np.array([0.5, 0.5]) - 0.5 - np.array([x0, y0])
    size = (x1 - x0, y1 - y0)
    alpha = cv2.warpAffine(mask, m, size, flags=cv2.INTER_LINEAR, borderValue=0)
    rgb = cv2.warpAffine(tex, m, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    region = (slice(y0, y1), slice(x0, x1))
    canvas[region] += alpha[..., None] * (rgb.astype(np.float32) - canvas[region])
    return region, alpha
