"""Object tracks: the one record every training source is reduced to, and a reader over them.

A *layout* (GOT-10k, LaSOT, ImageNet VID/DET, COCO, crop511, ...) knows how a dataset is
stored; it lists its *units* (a sequence, a video, an annotation file) and parses one unit
into :class:`Track` records. That split is what lets an index be built in parallel
(:mod:`lighttrack.data.index`) and read back without touching a single annotation file.

A :class:`TrackReader` serves tracks with the same per-sequence API as the lazy readers in
:mod:`lighttrack.data.readers` (``sequence_names``, ``get_sequence_info``, ``get_frames``,
``sequence``), so pair sampling does not care where its tracks came from.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Protocol, Sequence as Seq

import numpy as np

from . import fs
from .fs import DataError
from .readers import _Reader, _valid

__all__ = ["Track", "Layout", "TrackReader", "fingerprint", "box_problems"]


@dataclass(frozen=True, eq=False)
class Track:
    """One object followed through frames (a still image is a one-frame track)."""
    name: str  # unique in its dataset split, e.g. "ILSVRC2015_train_00000000/0" (video/track id)
    frames: tuple[str, ...]  # frame files relative to the dataset root, "/"-separated
    boxes: np.ndarray  # (N, 4) float64 xywh in frame pixels (0 w/h where there is no box)
    visible: np.ndarray  # (N,) bool: the object is in view and its box can be trusted
    image_size: tuple[int, int] = (0, 0)  # (W, H) of the frames; (0, 0) when not recorded
    annotations: tuple[str, ...] = ()  # annotation files it was read from, relative to the root

    def __post_init__(self):
        n = len(self.frames)
        if self.boxes.shape != (n, 4) or self.visible.shape != (n,):
            raise ValueError(f"track {self.name}: {n} frames but boxes {self.boxes.shape}, "
                             f"visible {self.visible.shape}")


class Layout(Protocol):
    """How one dataset split is stored. ``parse`` raises :class:`DataError` naming the file
    (and line or object) at fault."""
    kind: str
    root: str

    def units(self) -> list[str]:
        """Independent pieces of annotation (sequence names, videos, annotation files)."""

    def parse(self, unit: str) -> list[Track]:
        """The tracks of one unit."""


def fingerprint(root: str, files: Seq[str]) -> str:
    """Hash of the (name, size, modification time) of annotation files: changes when any is
    rewritten, without reading them. Missing files hash as missing."""
    h = hashlib.sha1()
    for rel in files:
        info = fs.file_info(fs.join(root, rel))
        h.update(f"{rel}\0{info[0]}\0{info[1]}\n".encode())
    return h.hexdigest()[:16]


def box_problems(boxes: np.ndarray, visible: np.ndarray, size: tuple[int, int]) -> list[tuple[int, str]]:
    """(0-based frame, message) for each visible box that is empty or lies outside its frame."""
    out = []
    w_img, h_img = size
    for k in np.flatnonzero(visible):
        x, y, w, h = boxes[k]
        if not (np.isfinite(boxes[k]).all() and w > 0 and h > 0):
            out.append((int(k), f"visible box with no area: {boxes[k].tolist()}"))
        elif w_img > 0 and (x >= w_img or y >= h_img or x + w <= 0 or y + h <= 0):
            out.append((int(k), f"box {boxes[k].tolist()} outside the {w_img}x{h_img} image"))
    return out


class TrackReader(_Reader):
    """Tracks held in memory (parsed from a layout, or read from an index)."""

    def __init__(self, root: str, tracks: Seq[Track], kind: str = ""):
        self.root, self.kind = str(root), kind
        self.tracks = list(tracks)
        self.sequence_names = [t.name for t in self.tracks]
        if len(set(self.sequence_names)) != len(self.sequence_names):
            raise DataError(f"{self.root}: duplicate track names")

    def track(self, i: int) -> Track:
        return self.tracks[i]

    def get_sequence_info(self, i: int) -> dict[str, np.ndarray]:
        t = self.track(i)
        valid = _valid(t.boxes)
        return {"bbox": t.boxes, "valid": valid, "visible": t.visible & valid}

    def _frame(self, i: int, k: int) -> str:
        return fs.join(self.root, self.track(i).frames[k])

    def meta(self, i: int) -> dict:
        w, h = self.track(i).image_size
        return {"resolution": f"({w}, {h})"} if w else {}
