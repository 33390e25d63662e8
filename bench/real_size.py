"""Tracking datasets of a real size on little disk: GOT-10k and LaSOT layouts whose frames are
hard links to a few 1280x720 JPEGs made from scikit-image's photographs, boxes a random walk.

    write_got10k(out, sequences, frames, split_name="train")  # out/<split>/GOT-10k_..._000001/
    write_lasot(out, sequences, frames)                         # out/class00/class00-1/img/

Used by bench_data_scale (start-up at GOT-10k train / LaSOT size) and bench_eval (a split of
GOT-10k val's size); a folder already written is kept as it is.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import cv2
import numpy as np

__all__ = ["write_got10k", "write_lasot"]


def _photos(n: int = 4, size=(1280, 720)) -> list[np.ndarray]:
    from skimage import data
    imgs = [data.astronaut(), data.coffee(), data.chelsea(), data.rocket()][:n]
    return [cv2.resize(im, size, interpolation=cv2.INTER_AREA) for im in imgs]


def _walk(rng, n: int, w: int = 1280, h: int = 720) -> np.ndarray:
    """A box of fixed size drifting inside the frame: (n, 4) x, y, w, h."""
    size = rng.uniform(80, 300, 2)
    c = rng.uniform(size, (w, h) - size) + np.cumsum(rng.normal(0, 6, (n, 2)), 0)
    c = np.clip(c, size / 2, (w, h) - size / 2)
    return np.concatenate([c - size / 2, np.broadcast_to(size, (n, 2))], 1)


class _Links:
    """Hard links to a few JPEGs; a file is copied anew every 60,000 links (ext4 allows 65,000)."""

    def __init__(self, out: Path):
        out.mkdir(parents=True, exist_ok=True)
        self.sources, self.copies = [], 0
        for k, im in enumerate(_photos()):
            p = out / f"photo{k}.jpg"
            cv2.imwrite(str(p), im[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 90])
            self.sources.append([p, p, 0])  # original, current copy, links to it

    def link(self, k: int, dest: Path) -> None:
        src = self.sources[k % len(self.sources)]
        if src[2] >= 60_000:
            self.copies += 1
            src[1] = src[0].with_name(f"{src[0].stem}-{self.copies}{src[0].suffix}")
            shutil.copyfile(src[0], src[1])
            src[2] = 0
        os.link(src[1], dest)
        src[2] += 1


def write_got10k(out: Path, sequences: int, frames: int, seed: int = 0, split_name: str = "train") -> Path:
    """A GOT-10k split (labels: always visible, never covered); returns ``out``, the root."""
    split = out / split_name
    if (split / "list.txt").exists():
        return out
    split.mkdir(parents=True, exist_ok=True)
    links = _Links(out / "photos")
    rng = np.random.default_rng(seed)
    names = [f"GOT-10k_{split_name.capitalize()}_{i + 1:06d}" for i in range(sequences)]
    for i, name in enumerate(names):
        d = split / name
        d.mkdir(exist_ok=True)
        for f in range(frames):
            links.link(i, d / f"{f + 1:08d}.jpg")
        boxes = _walk(rng, frames)
        (d / "groundtruth.txt").write_text("".join(f"{x:.4f},{y:.4f},{w:.4f},{h:.4f}\n" for x, y, w, h in boxes))
        (d / "absence.label").write_text("0\n" * frames)
        (d / "cover.label").write_text("8\n" * frames)
        (d / "cut_by_image.label").write_text("0\n" * frames)
        (d / "meta_info.ini").write_text("[METAINFO]\nresolution: (1280, 720)\n")
    (split / "list.txt").write_text("\n".join(names) + "\n")
    return out


def write_lasot(out: Path, sequences: int, frames: int, seed: int = 1) -> Path:
    """LaSOT's train layout, 20 sequences a class; returns ``out``."""
    if (out / "done").exists():
        return out
    links = _Links(out / "photos")
    rng = np.random.default_rng(seed)
    for i in range(sequences):
        cls = f"class{i // 20:02d}"
        d = out / cls / f"{cls}-{i % 20 + 1}"
        (d / "img").mkdir(parents=True)
        for f in range(frames):
            links.link(i, d / "img" / f"{f + 1:08d}.jpg")
        boxes = _walk(rng, frames)
        (d / "groundtruth.txt").write_text("".join(f"{x:.0f},{y:.0f},{w:.0f},{h:.0f}\n" for x, y, w, h in boxes))
        (d / "full_occlusion.txt").write_text(",".join("0" * frames) + "\n")
        (d / "out_of_view.txt").write_text(",".join("0" * frames) + "\n")
    (out / "done").write_text("")
    return out
