"""Find every problem in a dataset at once, each with its file and line.

``check_dataset(root)`` recognises the embedded layout (``got10k/`` + ``imagenet/``), a GOT-10k
root or split, an ImageNet-style class folder root, LaSOT and folders of frames, and returns a
list of :class:`Problem` (empty when the dataset is usable). Training calls it (through
``check_reader``) to refuse a broken dataset before it starts, or to skip bad sequences.
"""
from __future__ import annotations

import ast
import re
from dataclasses import dataclass

import cv2
import numpy as np

from . import fs
from .fs import DataError
from .readers import IMAGE_EXTENSIONS, FolderSequences, Got10k, Lasot, parse_meta, parse_table

__all__ = ["Problem", "check_dataset", "check_reader", "check_image_folder"]


@dataclass(frozen=True)
class Problem:
    path: str  # file (or folder) at fault
    message: str
    line: int | None = None  # 1-based line in ``path``
    sequence: str = ""  # sequence name, when the problem belongs to one

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line else self.path
        return f"{where}: {self.message}"


def _image_problem(location: str, decode: bool) -> str | None:
    if not decode:  # existence and size only: no read, fast on remote storage
        n = fs.size(location)
        return "missing frame" if n is None else ("empty file" if n == 0 else None)
    try:
        data = fs.read_bytes(location)
    except DataError:
        return "missing frame"
    if not data:
        return "empty file"
    if decode and cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) is None:
        return f"corrupt image ({len(data)} bytes, cannot decode)"
    return None


def _table(location: str, ncols: int, seq: str, out: list[Problem], one_line: bool = False) -> np.ndarray | None:
    try:
        text = fs.read_text(location)
    except DataError as e:
        out.append(Problem(location, str(e).split(": ", 1)[-1], sequence=seq))
        return None
    lines = [line for line in text.splitlines() if line.strip()]
    if one_line and len(lines) == 1:  # LaSOT's labels: one comma-separated line, a value per frame
        text = "\n".join(c for c in re.split(r"[,\t ]+", lines[0].strip()) if c)
    table, issues = parse_table(text, location, ncols)
    out.extend(Problem(location, msg, line, seq) for line, msg in issues)
    if len(table) == 0:
        out.append(Problem(location, "no rows", sequence=seq))
    return table


def _flags(location: str, n: int, allowed: range, seq: str, out: list[Problem]) -> np.ndarray | None:
    table = _table(location, 1, seq, out, one_line=True)
    if table is None:
        return None
    if len(table) != n:
        out.append(Problem(location, f"{len(table)} labels for {n} boxes", sequence=seq))
    for line, v in enumerate(table[:, 0], 1):
        if np.isfinite(v) and (v != int(v) or int(v) not in allowed):
            out.append(Problem(location, f"label {v:g} not in {allowed.start}..{allowed.stop - 1}", line, seq))
    return table[:, 0]


def _boxes_sizes(gt: str, boxes: np.ndarray, absent: np.ndarray | None, seq: str, out: list[Problem],
                 size: tuple[int, int] | None = None) -> None:
    """Boxes of visible frames: positive sides, and (``size`` = (W, H) known) on the image."""
    for line, (x, y, w, h) in enumerate(boxes, 1):
        hidden = absent is not None and line <= len(absent) and absent[line - 1] > 0
        if hidden or not np.isfinite([x, y, w, h]).all():
            continue
        if w <= 0 or h <= 0:
            out.append(Problem(gt, f"non-positive box size w={w:g} h={h:g} on a visible frame", line, seq))
        elif size and (x >= size[0] or y >= size[1] or x + w <= 0 or y + h <= 0):
            where = "the first box (the tracker starts from it)" if line == 1 else "box"
            out.append(Problem(gt, f"{where} {[float(x), float(y), float(w), float(h)]} lies entirely outside "
                                   f"the {size[0]}x{size[1]} image", line, seq))


def _first_frame_size(frames: list[str]) -> tuple[int, int] | None:
    try:
        return fs.image_size(frames[0]) if frames else None
    except DataError:
        return None  # reported as an unreadable frame


def _frames(frames: list[str], n_boxes: int, folder: str, seq: str, decode: bool,
            out: list[Problem], exact: bool = True) -> None:
    if len(frames) < n_boxes:
        out.append(Problem(folder, f"fewer frames ({len(frames)}) than boxes ({n_boxes})", sequence=seq))
    elif exact and len(frames) > n_boxes:
        out.append(Problem(folder, f"more frames ({len(frames)}) than boxes ({n_boxes})", sequence=seq))
    for f in frames:
        msg = _image_problem(f, decode)
        if msg:
            out.append(Problem(f, msg, sequence=seq))


def _resolution(meta_file: str) -> tuple[int, int] | None:
    try:
        wh = ast.literal_eval(parse_meta(fs.read_text(meta_file))["resolution"])
        return (int(wh[0]), int(wh[1])) if len(wh) == 2 and min(wh) > 0 else None
    except (DataError, KeyError, ValueError, SyntaxError, TypeError):
        return None  # reported below as a bad meta_info.ini


def _check_got10k_seq(r: Got10k, i: int, decode: bool, out: list[Problem]) -> None:
    seq, d = r.sequence_names[i], r.seq_dir(i)
    if not fs.is_dir(d):
        out.append(Problem(d, "sequence folder listed in list.txt does not exist", sequence=seq))
        return
    gt = fs.join(d, "groundtruth.txt")
    boxes = _table(gt, 4, seq, out)
    if boxes is None:
        return
    present = [n for n in fs.list_dir(d) if n.endswith(".jpg")]
    if r.split == "test":
        if len(boxes) != 1:
            out.append(Problem(gt, f"test split: expected only the first frame's box, got {len(boxes)} rows", sequence=seq))
        _boxes_sizes(gt, boxes[:1], None, seq, out, _first_frame_size(sorted(fs.join(d, n) for n in present)))
        if not present:
            out.append(Problem(d, "no frames", sequence=seq))
        _frames([fs.join(d, n) for n in present], min(len(boxes), 1), d, seq, decode, out, exact=False)
        return
    n = len(boxes)
    absence = _flags(fs.join(d, "absence.label"), n, range(2), seq, out)
    _flags(fs.join(d, "cover.label"), n, range(9), seq, out)
    _flags(fs.join(d, "cut_by_image.label"), n, range(2), seq, out)
    _boxes_sizes(gt, boxes, absence, seq, out, _resolution(fs.join(d, "meta_info.ini")))
    # The toolkit pairs sorted *.jpg with boxes: names must be 00000001.jpg ... without gaps.
    expected = [f"{k:08d}.jpg" for k in range(1, max(n, len(present)) + 1)]
    have = set(present)
    for name in expected:
        if name not in have and int(name[:8]) <= n:
            out.append(Problem(fs.join(d, name), "missing frame", sequence=seq))
    extra = sorted(have - set(expected))
    if extra:
        out.append(Problem(d, f"unexpected frame names {extra[:3]}", sequence=seq))
    _frames([fs.join(d, name) for name in present], n, d, seq, decode, out)
    meta_file = fs.join(d, "meta_info.ini")
    try:
        meta = parse_meta(fs.read_text(meta_file))
        wh = ast.literal_eval(meta["resolution"])
        if len(wh) != 2 or min(wh) <= 0:
            raise ValueError
        if decode and present and "00000001.jpg" in have:
            img = fs.read_image(fs.join(d, "00000001.jpg"))
            if (img.shape[1], img.shape[0]) != tuple(wh):
                out.append(Problem(meta_file, f"resolution {tuple(wh)} but frames are {img.shape[1]}x{img.shape[0]}", sequence=seq))
    except DataError:
        out.append(Problem(meta_file, "file not found", sequence=seq))
    except (KeyError, ValueError, SyntaxError, TypeError):
        out.append(Problem(meta_file, "no valid 'resolution: (W, H)' line", sequence=seq))


def _check_generic_seq(r, i: int, d: str, labels: dict[str, str], decode: bool, out: list[Problem]) -> None:
    seq, gt = r.sequence_names[i], fs.join(d, "groundtruth.txt")
    boxes = _table(gt, 4, seq, out)
    if boxes is None:
        return
    absent = np.zeros(len(boxes))
    for name, loc in labels.items():
        flags = _flags(loc, len(boxes), range(2), seq, out)
        if flags is not None and len(flags) == len(boxes):
            absent = np.maximum(absent, np.nan_to_num(flags))
    frames = r._frame_list(i) if isinstance(r, FolderSequences) else None
    if frames is None:  # LaSOT: names are fixed, report each missing one
        img = fs.join(r.seq_dir(i), "img")
        have = set(fs.list_dir(img))
        frames = [fs.join(img, n) for n in sorted(have) if n.lower().endswith(IMAGE_EXTENSIONS)]
    _boxes_sizes(gt, boxes, absent if labels else None, seq, out, _first_frame_size(frames))
    _frames(frames, len(boxes), d, seq, decode, out)


def check_reader(reader, decode: bool = True) -> list[Problem]:
    """Problems of every sequence of an opened reader (``decode`` also decodes every frame)."""
    out: list[Problem] = []
    for i in range(len(reader)):
        if isinstance(reader, Got10k):
            _check_got10k_seq(reader, i, decode, out)
        elif isinstance(reader, Lasot):
            d = reader.seq_dir(i)
            labels = {n: fs.join(d, n) for n in ("full_occlusion.txt", "out_of_view.txt")}
            _check_generic_seq(reader, i, d, labels, decode, out)
        elif isinstance(reader, FolderSequences):
            d = reader._dirs[reader.sequence_names[i]]
            _check_generic_seq(reader, i, d, {}, decode, out)
        else:
            raise TypeError(f"cannot check {type(reader).__name__}")
    return out


def check_image_folder(root: str, splits: tuple[str, ...] = ("train", "val"), decode: bool = True) -> list[Problem]:
    """ImageNet layout: ``<root>/<split>/<class>/*.JPEG``; every split non-empty, images readable."""
    out: list[Problem] = []
    classes: dict[str, set[str]] = {}
    for split in splits:
        d = fs.join(root, split)
        names = [c for c in fs.list_dir(d) if fs.is_dir(fs.join(d, c))]
        classes[split] = set(names)
        if not names:
            out.append(Problem(d, "empty split (no class folders)"))
        for c in names:
            files = [n for n in fs.list_dir(fs.join(d, c)) if n.lower().endswith(IMAGE_EXTENSIONS)]
            if not files:
                out.append(Problem(fs.join(d, c), "class folder without images"))
            for n in files:
                msg = _image_problem(fs.join(d, c, n), decode)
                if msg:
                    out.append(Problem(fs.join(d, c, n), msg.replace("frame", "image")))
    if len(splits) > 1 and classes.get(splits[1], set()) - classes.get(splits[0], set()):
        extra = sorted(classes[splits[1]] - classes[splits[0]])
        out.append(Problem(fs.join(root, splits[1]), f"classes not in {splits[0]}: {extra}"))
    return out


def _check_got10k_root(root: str, splits, decode: bool, out: list[Problem]) -> None:
    for split in splits:
        try:
            reader = Got10k(root, split)
        except DataError as e:
            path, _, msg = str(e).partition(": ")
            out.append(Problem(path, msg))
            continue
        out.extend(check_reader(reader, decode))


def check_dataset(root: str, decode: bool = True) -> list[Problem]:
    """Every problem found under ``root`` (see the module docstring for the layouts)."""
    root = str(root)
    if not fs.is_dir(root):
        return [Problem(root, "dataset root not found")]
    out: list[Problem] = []
    got, img = fs.join(root, "got10k"), fs.join(root, "imagenet")
    if fs.is_dir(got) or fs.is_dir(img):  # embedded layout written by `lighttrack data synth`
        if fs.is_dir(got):
            _check_got10k_root(got, ("train", "val", "test"), decode, out)
        else:
            out.append(Problem(got, "missing tracking dataset folder"))
        if fs.is_dir(img):
            out.extend(check_image_folder(img, decode=decode))
        else:
            out.append(Problem(img, "missing classification dataset folder"))
        return out
    splits = [s for s in ("train", "val", "test") if fs.is_dir(fs.join(root, s))]
    if any(fs.exists(fs.join(root, s, "list.txt")) for s in splits):
        _check_got10k_root(root, splits, decode, out)
    elif splits and any(fs.is_dir(fs.join(root, splits[0], c)) for c in fs.list_dir(fs.join(root, splits[0]))):
        out.extend(check_image_folder(root, tuple(splits), decode))
    elif fs.exists(fs.join(root, "list.txt")):
        parent, split = root.rstrip("/").rsplit("/", 1) if "/" in root.rstrip("/") else (".", root)
        _check_got10k_root(parent, (split,), decode, out)
    else:
        for make in (Lasot, FolderSequences):
            try:
                reader = make(root)
            except DataError:
                continue
            return check_reader(reader, decode)
        out.append(Problem(root, "no dataset layout recognised (GOT-10k, LaSOT, ImageNet folders, "
                                 "folders of frames with groundtruth.txt)"))
    return out


# ---------------------------------------------------------------- quick checks before a job
def check_source_quick(kind: str, root: str, split: str, where: str = "") -> None:
    """Raise :class:`DataError` unless ``root`` holds a readable ``split`` listing of ``kind``
    (a GOT-10k ``list.txt``, VID/DET annotation folders, a COCO/crop511 JSON): one listing, not
    a read of every annotation, so a job can run it before it starts Ray. ``where`` (a config
    key) leads the message."""
    from .index import open_layout

    lead = f"{where}: " if where else ""
    if not fs.exists(root):
        raise DataError(f"{lead}dataset root {root} does not exist")
    try:
        units = open_layout(kind, root, split).units()
    except DataError as e:
        raise DataError(f"{lead}{e}") from None
    if not units:
        raise DataError(f"{lead}{kind} split {split!r} under {root} is empty")


def check_image_folder_quick(root: str, splits: tuple[str, ...] = ("train", "val"), where: str = "") -> None:
    """Raise :class:`DataError` unless every ``<root>/<split>`` has class folders (an index
    beside them counts: a bucket need not be walked)."""
    from .classification import class_index_location

    lead = f"{where}: " if where else ""
    if not fs.exists(root):
        raise DataError(f"{lead}ImageNet-layout root {root} does not exist")
    for split in splits:
        d = fs.join(root, split)
        if fs.exists(class_index_location(d)):
            continue
        if not any(fs.is_dir(fs.join(d, c)) for c in fs.list_dir(d)):
            have = [n for n in fs.list_dir(root)]
            raise DataError(f"{lead}{d}: no class folders (expected {root}/{split}/<class>/*.JPEG; "
                            f"{root} holds {have[:8] or 'nothing'})")
