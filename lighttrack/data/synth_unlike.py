"""Check sequences built unlike the embedded training set, in the GOT-10k val layout.

The embedded set (:mod:`lighttrack.data.synth`) moves geometric shapes cut from textures
over photographs, on smooth random walks. A tracker that learned only that set could
score well on its val split and still not track. These sequences change all three:

* **targets** are whole photographs of objects: a region of a scikit-image sample photo
  (the cat, the astronaut, the coffee cup ...) under a soft-edged ellipse or rounded
  rectangle, no shape of ``SHAPES``;
* **backgrounds** are procedural: stripes, checkerboards, colour gradients and blotches,
  never a photograph;
* **motion** is piecewise straight at constant speed, turning abruptly every 10-30 frames
  and bouncing off the frame edges, while the target slowly grows or shrinks.

    write_unlike(out, seed=0, sequences=10)   # -> out/got10k/val/GOT-10k_Val_00000k/
    lighttrack data unlike --out DIR          # the same from the command line
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from .shapes import PATCH, affine, hull, photos, points_box, render

__all__ = ["render_unlike", "write_unlike"]

# (photo name order of shapes.photos(), x, y, side as fractions): regions holding one object.
_OBJECTS = ((0, 0.35, 0.05, 0.35), (1, 0.25, 0.05, 0.55), (2, 0.15, 0.15, 0.6), (3, 0.3, 0.25, 0.4),
            (0, 0.05, 0.45, 0.45), (1, 0.55, 0.3, 0.4), (2, 0.5, 0.05, 0.45))


def _target(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A (P, P, 3) photograph of an object and its soft (P, P) mask."""
    k, fx, fy, fs = _OBJECTS[int(rng.integers(len(_OBJECTS)))]
    ph = photos()[k]
    side = int(fs * min(ph.shape[:2]))
    y, x = int(fy * ph.shape[0]), int(fx * ph.shape[1])
    tex = cv2.resize(ph[y:y + side, x:x + side], (PATCH, PATCH), interpolation=cv2.INTER_AREA)
    mask = np.zeros((PATCH, PATCH), np.float32)
    c, r = PATCH // 2, int(PATCH * 0.46)
    if rng.random() < 0.5:
        cv2.ellipse(mask, (c, c), (r, int(r * rng.uniform(0.7, 1.0))), 0, 0, 360, 1.0, -1)
    else:
        q = int(PATCH * 0.06)
        cv2.rectangle(mask, (q, q), (PATCH - q, PATCH - q), 1.0, -1)
    mask = cv2.GaussianBlur(mask, (0, 0), 1.5)  # a soft edge, as a photographed object has
    return tex, np.clip(mask * 1.2, 0, 1)


def _background(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    """(h, w, 3) float32 procedural background: stripes, checkerboard, gradient or blotches."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    c1, c2 = rng.uniform(20, 235, 3), rng.uniform(20, 235, 3)
    kind = int(rng.integers(4))
    if kind == 0:  # stripes at an angle
        a, period = rng.uniform(0, np.pi), rng.uniform(8, 40)
        t = (np.sin(2 * np.pi * (xx * np.cos(a) + yy * np.sin(a)) / period) > 0).astype(np.float32)
    elif kind == 1:  # checkerboard
        s = rng.uniform(10, 40)
        t = ((xx // s + yy // s) % 2).astype(np.float32)
    elif kind == 2:  # linear gradient
        a = rng.uniform(0, 2 * np.pi)
        t = xx * np.cos(a) + yy * np.sin(a)
        t = (t - t.min()) / (t.max() - t.min())
    else:  # smooth blotches
        t = cv2.resize(rng.uniform(0, 1, (6, 8)).astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
    return (c1 + t[..., None] * (c2 - c1)).astype(np.float32)


def _path(rng: np.random.Generator, n: int, w: int, h: int, size: np.ndarray) -> np.ndarray:
    """(n, 2) centres: straight at constant speed, abrupt turns, bounces off the edges."""
    pos = rng.uniform([0.3 * w, 0.3 * h], [0.7 * w, 0.7 * h])
    speed = rng.uniform(2.0, 6.0) * min(w, h) / 240
    heading, turn_at = rng.uniform(0, 2 * np.pi), int(rng.integers(10, 31))
    out = np.zeros((n, 2))
    for t in range(n):
        if t == turn_at:
            heading += rng.choice([-1, 1]) * rng.uniform(np.pi / 3, np.pi)
            turn_at += int(rng.integers(10, 31))
        step = speed * np.array([np.cos(heading), np.sin(heading)])
        nxt = pos + step
        half = size[t] / 2
        for i, lim in ((0, w), (1, h)):  # bounce: mirror the heading on the axis that left the frame
            if not half <= nxt[i] <= lim - half:
                step[i] = -step[i]
                heading = np.arctan2(step[1], step[0])
        pos = np.clip(pos + step, half, [w - half, h - half])
        out[t] = pos
    return out


def render_unlike(rng: np.random.Generator, n: int, w: int = 320, h: int = 240,
                  ) -> tuple[list[np.ndarray], np.ndarray, dict[str, np.ndarray]]:
    """n frames (H, W, 3) uint8 RGB, boxes (n, 4) xywh and labels, as ``synth.render_sequence``."""
    tex, mask = _target(rng)
    pts = hull((mask > 0.5).astype(np.float32))
    side0 = rng.uniform(0.2, 0.35) * min(w, h)
    size = side0 * np.exp(np.linspace(0, rng.uniform(-0.4, 0.4), n))  # slow growth or shrink
    aspect = rng.uniform(0.75, 1.33)
    centres = _path(rng, n, w, h, size)
    background = _background(rng, w, h)
    noise = rng.standard_normal((h, w, 3)).astype(np.float32) * 3.0
    images, boxes = [], np.zeros((n, 4))
    for t in range(n):
        canvas = background.copy()
        a = affine(centres[t], size[t] * aspect ** 0.5, size[t] / aspect ** 0.5)
        render(canvas, tex, mask, a)
        x, y, bw, bh = points_box(pts, a)
        x0, y0, x1, y1 = max(x, 0.0), max(y, 0.0), min(x + bw, float(w)), min(y + bh, float(h))
        boxes[t] = (x0, y0, max(x1 - x0, 1.0), max(y1 - y0, 1.0))
        images.append(np.clip(canvas + noise, 0, 255).astype(np.uint8))
    labels = {"cover": np.full(n, 8, np.int64), "absence": np.zeros(n, np.int64), "cut_by_image": np.zeros(n, np.int64)}
    return images, boxes, labels


def write_unlike(out: str | Path, seed: int = 0, sequences: int = 10, frames: tuple[int, int] = (60, 100),
                 width: int = 320, height: int = 240) -> Path:
    """Write ``out/got10k/val`` (list.txt and one GOT-10k folder per sequence); returns ``out/got10k``."""
    from .synth import write_got10k_sequence

    root = Path(out) / "got10k"
    names = []
    for i in range(sequences):
        rng = np.random.default_rng((seed, 7919, i))
        n = int(rng.integers(frames[0], frames[1] + 1))
        images, boxes, labels = render_unlike(rng, n, width, height)
        name = f"GOT-10k_Val_{i + 1:06d}"
        write_got10k_sequence(root / "val" / name, images, boxes, labels, f"synthetic://lighttrack/unlike/seed-{seed}/{name}",
                              (width, height), object_class="photographed object", motion_class="straight with turns",
                              difficulty="unlike")
        names.append(name)
    (root / "val" / "list.txt").write_text("\n".join(names) + "\n")
    return root
