"""Tracking datasets read per sequence: GOT-10k, LaSOT and a generic folder of frames.

Each reader has ``sequence_names``, ``__len__``, ``get_sequence_info(i)`` (boxes and which
frames are valid / visible, as pytracking's datasets do), ``get_frames(i, frame_ids)`` and
``sequence(i)``. Roots are local paths or ``pyarrow.fs`` URIs (see :mod:`lighttrack.data.fs`).

Layouts (as the official toolkits read them):

- GOT-10k: ``<root>/<split>/list.txt`` names the sequences; ``<seq>/00000001.jpg ...``,
  ``groundtruth.txt`` (``x,y,w,h`` per line; the test split has only the first frame's box),
  ``absence.label`` (0/1), ``cover.label`` (0..8, visible ratio in eighths-like bins, 0 = none),
  ``cut_by_image.label`` (0/1), ``meta_info.ini`` (``[METAINFO]`` then ``key: value`` lines,
  ``resolution: (W, H)``).
- LaSOT: ``<root>/<class>/<class>-<n>/img/00000001.jpg``, ``groundtruth.txt`` (``x,y,w,h``),
  ``full_occlusion.txt`` and ``out_of_view.txt`` (one comma-separated line of 0/1).
- Folder: ``<root>/<seq>/`` (or ``<root>/<seq>/img/``) image files in name order and one
  ``groundtruth.txt`` (comma, tab or space separated ``x y w h``); ``<root>`` itself may be
  the one sequence.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Iterable, Sequence as Seq

import numpy as np

from . import fs
from .fs import DataError

__all__ = ["Sequence", "Got10k", "Lasot", "FolderSequences", "open_tracking", "parse_table",
           "parse_meta", "IMAGE_EXTENSIONS"]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")
_SPLIT = re.compile(r"[,\t ]+")


def parse_table(text: str, where: str, ncols: int) -> tuple[np.ndarray, list[tuple[int, str]]]:
    """Rows of ``ncols`` numbers (comma, tab or space separated) -> (N, ncols) float64 and the
    problems found as ``(line number, message)``; bad rows become NaN rows so line numbers
    still index frames."""
    rows, issues = [], []
    lines = text.splitlines()
    while lines and not lines[-1].strip():
        lines.pop()  # a trailing newline is not an empty row
    for n, line in enumerate(lines, 1):
        cells = [c for c in _SPLIT.split(line.strip()) if c]
        if len(cells) != ncols:
            issues.append((n, f"expected {ncols} values, got {len(cells)}: {line.strip()!r}"))
            rows.append([math.nan] * ncols)
            continue
        try:
            vals = [float(c) for c in cells]
        except ValueError:
            issues.append((n, f"not a number in {line.strip()!r}"))
            rows.append([math.nan] * ncols)
            continue
        if not all(math.isfinite(v) for v in vals):
            issues.append((n, f"NaN or infinite value in {line.strip()!r}"))
        rows.append(vals)
    return np.array(rows, np.float64).reshape(-1, ncols), issues


def _read_table(location: str, ncols: int) -> np.ndarray:
    table, issues = parse_table(fs.read_text(location), location, ncols)
    if issues:
        line, msg = issues[0]
        raise DataError(f"{location}:{line}: {msg}")
    return table


def _read_flags(location: str) -> np.ndarray:
    """0/1 or small integer labels, one per line or comma-separated on one line."""
    text = fs.read_text(location)
    cells = [c for c in _SPLIT.split(text.replace("\n", ",").strip()) if c]
    try:
        return np.array([int(float(c)) for c in cells], np.int64)
    except ValueError:
        raise DataError(f"{location}: labels must be integers") from None


def parse_meta(text: str) -> dict[str, str]:
    """``meta_info.ini``: a ``[METAINFO]`` header then ``key: value`` lines."""
    meta = {}
    for line in text.strip().splitlines()[1:]:
        key, sep, value = line.partition(": ")
        if sep:
            meta[key.strip()] = value.strip()
    return meta


@dataclass
class Sequence:
    """One annotated video."""
    name: str
    frames: list[str]  # location of each frame, in order
    boxes: np.ndarray  # (N, 4) float64 xywh; N = 1 for a GOT-10k test sequence
    absent: np.ndarray  # (N,) bool: target not visible
    meta: dict = field(default_factory=dict)

    def read_frame(self, k: int) -> np.ndarray:
        """(H, W, 3) uint8 RGB of frame ``k`` (0-based)."""
        return fs.read_image(self.frames[k])

    def __len__(self) -> int:
        return len(self.frames)


class _Reader:
    """Shared per-sequence API; subclasses define ``_seq_dir``, ``_frame``, ``get_sequence_info``."""
    sequence_names: list[str]

    def __len__(self) -> int:
        return len(self.sequence_names)

    def _restrict(self, names: Iterable[str] | None) -> None:
        if names is not None:
            keep = set(names)
            self.sequence_names = [n for n in self.sequence_names if n in keep]

    def get_sequence_info(self, i: int) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def _frame(self, i: int, k: int) -> str:
        raise NotImplementedError

    def _frame_list(self, i: int) -> list[str]:
        n = len(self.get_sequence_info(i)["bbox"])
        return [self._frame(i, k) for k in range(n)]

    def get_frames(self, i: int, frame_ids: Seq[int], reduce: Seq[int] | None = None) -> list[np.ndarray]:
        """Frames of sequence ``i``; ``reduce[j]`` (1, 2, 4, 8) decodes frame j at that fraction."""
        reduce = reduce or [1] * len(frame_ids)
        return [fs.read_image(self._frame(i, int(k)), r) for k, r in zip(frame_ids, reduce)]

    def meta(self, i: int) -> dict:
        return {}

    def sequence(self, i: int) -> Sequence:
        info = self.get_sequence_info(i)
        return Sequence(self.sequence_names[i], self._frame_list(i), info["bbox"],
                        ~info["visible"], self.meta(i))


def _valid(bbox: np.ndarray) -> np.ndarray:
    return (bbox[:, 2] > 0) & (bbox[:, 3] > 0)


class Got10k(_Reader):
    """GOT-10k split ``train``, ``val`` or ``test`` under ``root``."""

    def __init__(self, root: str, split: str = "train", names: Iterable[str] | None = None):
        if split not in ("train", "val", "test"):
            raise DataError(f"GOT-10k split must be train, val or test, got {split!r}")
        self.root, self.split = str(root), split
        self.split_dir = fs.join(self.root, split)
        list_file = fs.join(self.split_dir, "list.txt")
        if not fs.exists(list_file):
            raise DataError(f"{list_file}: file not found (not a GOT-10k {split} split)")
        self.sequence_names = [s.strip() for s in fs.read_text(list_file).splitlines() if s.strip()]
        if not self.sequence_names:
            raise DataError(f"{list_file}: empty split (no sequence names)")
        self._restrict(names)

    def seq_dir(self, i: int) -> str:
        return fs.join(self.split_dir, self.sequence_names[i])

    def _frame(self, i: int, k: int) -> str:
        return fs.join(self.seq_dir(i), f"{k + 1:08d}.jpg")

    def annotation_files(self, i: int) -> list[str]:
        """The files ``get_sequence_info`` reads (an index fingerprints them)."""
        names = ("groundtruth.txt",) if self.split == "test" else ("groundtruth.txt", "absence.label", "cover.label")
        return [fs.join(self.seq_dir(i), n) for n in names]

    def _frame_list(self, i: int) -> list[str]:
        if self.split != "test":
            return super()._frame_list(i)
        d = self.seq_dir(i)  # test: one box, so list the frames as the toolkit does
        return [fs.join(d, n) for n in fs.list_dir(d) if n.endswith(".jpg")]

    def get_sequence_info(self, i: int) -> dict[str, np.ndarray]:
        d = self.seq_dir(i)
        bbox = _read_table(fs.join(d, "groundtruth.txt"), 4)
        valid = _valid(bbox)
        visible = valid.copy()
        if self.split != "test":
            absence = _read_flags(fs.join(d, "absence.label"))
            cover = _read_flags(fs.join(d, "cover.label"))
            for name, lab in (("absence.label", absence), ("cover.label", cover)):
                if len(lab) != len(bbox):
                    raise DataError(f"{fs.join(d, name)}: {len(lab)} labels for {len(bbox)} boxes")
            visible &= (absence == 0) & (cover > 0)
        return {"bbox": bbox, "valid": valid, "visible": visible}

    def meta(self, i: int) -> dict:
        if self.split == "test":
            return {}
        d = self.seq_dir(i)
        meta: dict = parse_meta(fs.read_text(fs.join(d, "meta_info.ini")))
        for att in ("cover", "absence", "cut_by_image"):
            meta[att] = _read_flags(fs.join(d, f"{att}.label"))
        return meta


class Lasot(_Reader):
    """LaSOT: every ``<class>/<class>-<n>`` under ``root`` (or only ``names``)."""

    def __init__(self, root: str, names: Iterable[str] | None = None):
        self.root = str(root)
        self.sequence_names = [s for c in fs.list_dir(self.root) if fs.is_dir(fs.join(self.root, c))
                               for s in fs.list_dir(fs.join(self.root, c)) if s.startswith(f"{c}-")]
        if not self.sequence_names:
            raise DataError(f"{self.root}: no LaSOT sequences (<class>/<class>-<n>/)")
        self._restrict(names)

    def seq_dir(self, i: int) -> str:
        name = self.sequence_names[i]
        return fs.join(self.root, name.rsplit("-", 1)[0], name)

    def _frame(self, i: int, k: int) -> str:
        return fs.join(self.seq_dir(i), "img", f"{k + 1:08d}.jpg")

    def annotation_files(self, i: int) -> list[str]:
        """The files ``get_sequence_info`` reads (an index fingerprints them)."""
        return [fs.join(self.seq_dir(i), n) for n in ("groundtruth.txt", "full_occlusion.txt", "out_of_view.txt")]

    def get_sequence_info(self, i: int) -> dict[str, np.ndarray]:
        d = self.seq_dir(i)
        bbox = _read_table(fs.join(d, "groundtruth.txt"), 4)
        valid = _valid(bbox)
        occ = _read_flags(fs.join(d, "full_occlusion.txt"))
        oov = _read_flags(fs.join(d, "out_of_view.txt"))
        for name, lab in (("full_occlusion.txt", occ), ("out_of_view.txt", oov)):
            if len(lab) != len(bbox):
                raise DataError(f"{fs.join(d, name)}: {len(lab)} labels for {len(bbox)} boxes")
        return {"bbox": bbox, "valid": valid, "visible": valid & (occ == 0) & (oov == 0)}


class FolderSequences(_Reader):
    """Folders of frames, each with one ``groundtruth.txt``; ``root`` itself may be one."""

    def __init__(self, root: str, names: Iterable[str] | None = None):
        self.root = str(root)
        if fs.exists(fs.join(self.root, "groundtruth.txt")):
            self._dirs = {self.root.rstrip("/\\").replace("\\", "/").rsplit("/", 1)[-1]: self.root}
        else:
            self._dirs = {n: fs.join(self.root, n) for n in fs.list_dir(self.root)
                          if fs.exists(fs.join(self.root, n, "groundtruth.txt"))}
        self.sequence_names = sorted(self._dirs)
        if not self.sequence_names:
            raise DataError(f"{self.root}: no folder with a groundtruth.txt")
        self._restrict(names)
        self._frames: dict[int, list[str]] = {}

    def _frame_list(self, i: int) -> list[str]:
        if i not in self._frames:
            d = self._dirs[self.sequence_names[i]]
            img = fs.join(d, "img")
            d = img if fs.is_dir(img) else d
            self._frames[i] = [fs.join(d, n) for n in fs.list_dir(d)
                               if n.lower().endswith(IMAGE_EXTENSIONS)]
        return self._frames[i]

    def _frame(self, i: int, k: int) -> str:
        return self._frame_list(i)[k]

    def annotation_files(self, i: int) -> list[str]:
        """The files ``get_sequence_info`` reads (an index fingerprints them)."""
        return [fs.join(self._dirs[self.sequence_names[i]], "groundtruth.txt")]

    def get_sequence_info(self, i: int) -> dict[str, np.ndarray]:
        bbox = _read_table(fs.join(self._dirs[self.sequence_names[i]], "groundtruth.txt"), 4)
        valid = _valid(bbox)
        return {"bbox": bbox, "valid": valid, "visible": valid.copy()}


def open_tracking(kind: str, root: str, split: str = "train",
                  names: Iterable[str] | None = None) -> _Reader:
    """Reader by kind name: ``got10k`` (uses ``split``), ``lasot`` or ``folder``."""
    if kind == "got10k":
        return Got10k(root, split, names)
    if kind == "lasot":
        return Lasot(root, names)
    if kind == "folder":
        return FolderSequences(root, names)
    raise DataError(f"unknown dataset kind {kind!r}; known: got10k, lasot, folder")
