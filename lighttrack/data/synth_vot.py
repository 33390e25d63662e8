"""Embedded sequences in the VOT short-term layout, long enough for VOT-2019's EAO interval.

``write_vot(out, sequences=6, frames=(300, 360))`` renders sequences as the embedded
GOT-10k set does (``synth.render_sequence``) and writes them as the VOT toolkit stores a
workspace's ``sequences/``: ``list.txt``, per sequence ``sequence`` (metadata),
``color/00000001.jpg...``, ``groundtruth.txt`` and per-frame tags. Every other sequence
gives its ground truth as a rotated rectangle (8 values: the target box turned by up to
15 degrees about its centre, as VOT annotates rotated objects), the rest as x,y,w,h.

Tags: ``occlusion`` (cover label below fully visible), ``size_change`` (box area off by
more than 20% from 5 frames before), ``motion_change`` (the centre's velocity turned by
more than 45 degrees, at more than 1 px/frame).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .synth import _write_jpeg, render_sequence

__all__ = ["write_vot"]


def _rotated(box: np.ndarray, angle: float) -> np.ndarray:
    """(8,) corners of ``box`` turned by ``angle`` radians about its centre."""
    x, y, w, h = box
    c = np.array([x + w / 2, y + h / 2])
    corners = np.array([[-w / 2, -h / 2], [w / 2, -h / 2], [w / 2, h / 2], [-w / 2, h / 2]])
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    return (corners @ rot.T + c).reshape(-1)


def _tags(boxes: np.ndarray, cover: np.ndarray) -> dict[str, np.ndarray]:
    area = boxes[:, 2] * boxes[:, 3]
    before = np.concatenate([area[:1].repeat(5), area[:-5]])
    centre = boxes[:, :2] + boxes[:, 2:] / 2
    v = np.diff(centre, axis=0, prepend=centre[:1])
    turn = np.zeros(len(boxes), bool)
    for t in range(2, len(boxes)):
        a, b = v[t - 1], v[t]
        if np.linalg.norm(a) > 1 and np.linalg.norm(b) > 1:
            turn[t] = np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)) < np.cos(np.pi / 4)
    return {"occlusion": cover < 8, "size_change": np.abs(area / before - 1) > 0.2, "motion_change": turn}


def write_vot(out: str | os.PathLike, seed: int = 0, sequences: int = 6, frames: tuple[int, int] = (300, 360),
              width: int = 320, height: int = 240) -> list[str]:
    """Write ``sequences`` rendered sequences under ``out``; returns their names."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    names = []
    for i in range(sequences):
        rng = np.random.default_rng((seed, 7, i))
        n = int(rng.integers(frames[0], frames[1] + 1))
        images, boxes, labels = render_sequence(rng, n, width, height, (min(60, n), min(100, n)))
        name = f"synth-{i + 1:02d}"
        d = out / name
        (d / "color").mkdir(parents=True, exist_ok=True)
        for k, img in enumerate(images, 1):
            _write_jpeg(d / "color" / f"{k:08d}.jpg", img)
        if i % 2:
            angle = np.deg2rad(rng.uniform(-15, 15)) + 0.02 * np.sin(np.arange(n) / 20)
            rows = [",".join(f"{v:.2f}" for v in _rotated(b, a)) for b, a in zip(boxes, angle)]
        else:
            rows = [",".join(f"{v:.2f}" for v in b) for b in boxes]
        (d / "groundtruth.txt").write_text("\n".join(rows) + "\n")
        for tag, flags in _tags(boxes, labels["cover"]).items():
            (d / f"{tag}.tag").write_text("".join(f"{int(v)}\n" for v in flags))
        (d / "sequence").write_text(f"channels.color=color/%08d.jpg\nformat=default\nfps=30\n"
                                    f"name={name}\nwidth={width}\nheight={height}\nlength={n}\n")
        names.append(name)
    (out / "list.txt").write_text("\n".join(names) + "\n")
    return names
