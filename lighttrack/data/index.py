"""An index per dataset split: one Parquet table, built once, read by every process.

Opening a tracking split the direct way reads every annotation file (and checking it stats
every frame): 47 s and 564 MB on GOT-10k train, paid again by every rank, evaluator and
restart, and about 1.4 million requests on ``s3://``. The index is that work done once.

Tracking index, one row per track (:class:`lighttrack.data.tracks.Track`)::

    name: string            dir: string (common folder of the frames, relative to the root)
    files: list<string>     (frame file names in ``dir``, dictionary-encoded when read)
    boxes: large_binary     ((N, 4) float64 little-endian, xywh)
    visible: large_binary   ((N,) uint8)
    width, height: int32    annotations: list<string>    fingerprint: string

(Boxes and visibility are raw bytes rather than Parquet lists: decoding a list of 5.6M
doubles holds about 150 MB more at its peak than the 45 MB it yields, a binary column
only its own size, and NumPy views it without a copy.)

Classification index (ImageNet folders), one row per image: ``path`` (relative to the
split folder), ``label``; the class names are in the metadata.

The schema metadata holds ``{"kind", "split", "root", "built", "units", "tracks", "frames",
"skipped", ...}`` (:func:`table_meta`). An index
that no longer matches its dataset is an error, never wrong pairs: a track's annotation files
are compared with its fingerprint (size, modification time) the first time a process uses
it, and a split's listing file (GOT-10k ``list.txt``) when the index is opened.
"""
from __future__ import annotations

import ast
import json
import logging
import os
import time
import typing
from dataclasses import dataclass
from multiprocessing import get_context
from typing import Iterable, Literal

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from . import fs
from .fs import DataError
from .readers import IMAGE_EXTENSIONS, FolderSequences, Got10k, Lasot, _Reader, _valid
from .tracks import Track, box_problems, fingerprint

__all__ = ["open_layout", "default_index", "build_index", "write_index", "read_index",
           "IndexedReader", "StaleIndex", "table_meta", "build_class_index", "read_class_index", "TRACKING_KINDS"]

log = logging.getLogger(__name__)

class StaleIndex(DataError):
    """An index whose dataset changed after it was built."""


TrackingKind = Literal["got10k", "lasot", "folder", "vid", "det", "coco", "crop511"]
TRACKING_KINDS: tuple[str, ...] = typing.get_args(TrackingKind)
_META_KEY = b"lighttrack.index"


def default_index(root: str, kind: str, split: str = "") -> str:
    """Where an index lives beside its data: ``<root>/.index/<kind>[-<split>].parquet``."""
    return fs.join(str(root), ".index", f"{kind}-{split}.parquet" if split else f"{kind}.parquet")


# ---------------------------------------------------------------- layouts of the lazy readers

def _relative(root: str, location: str) -> str:
    prefix = str(root).rstrip("/\\")
    location = str(location)
    if not location.startswith(prefix):
        raise ValueError(f"{location} is not under {root}")
    return location[len(prefix):].lstrip("/\\").replace("\\", "/")


class ReaderLayout:
    """A GOT-10k, LaSOT or folder reader seen as a layout: one unit per sequence."""

    def __init__(self, kind: str, root: str, split: str = "train"):
        self.kind, self.root, self.split = kind, str(root), split
        self.reader = {"got10k": lambda: Got10k(root, split), "lasot": lambda: Lasot(root),
                       "folder": lambda: FolderSequences(root)}[kind]()
        self.listing = (f"{split}/list.txt",) if kind == "got10k" else ()
        self._pos = {n: i for i, n in enumerate(self.reader.sequence_names)}

    def units(self) -> list[str]:
        return list(self.reader.sequence_names)

    def parse(self, unit: str) -> list[Track]:
        r, i = self.reader, self._pos[unit]
        info = r.get_sequence_info(i)
        frames = r._frame_list(i)
        boxes = info["bbox"]
        if len(frames) < len(boxes):
            raise DataError(f"{r.annotation_files(i)[0]}: {len(boxes)} boxes but {len(frames)} frames")
        frames = frames[:len(boxes)]
        if isinstance(r, Got10k) and r.split != "test":
            wh = ast.literal_eval(r.meta(i).get("resolution", "(0, 0)"))
            size = (int(wh[0]), int(wh[1]))
        else:
            size = fs.image_size(frames[0]) if frames else (0, 0)
        visible = info["visible"]
        bad = box_problems(boxes, visible, size)
        if bad:
            k, msg = bad[0]
            raise DataError(f"{r.annotation_files(i)[0]}:{k + 1}: {msg}")
        return [Track(unit, tuple(_relative(self.root, f) for f in frames), boxes, visible, size,
                      tuple(_relative(self.root, a) for a in r.annotation_files(i)))]


def open_layout(kind: str, root: str, split: str = "train"):
    """The layout of one dataset split (see :data:`TRACKING_KINDS`)."""
    if kind in ("got10k", "lasot", "folder"):
        return ReaderLayout(kind, root, split)
    from .layouts import LAYOUTS
    if kind not in LAYOUTS:
        raise DataError(f"unknown dataset kind {kind!r}; known: {', '.join(TRACKING_KINDS)}")
    if kind == "coco" and split in ("train", "val"):
        split += "2017"  # COCO names its splits by year
    if kind == "crop511" and not split.endswith(".json"):
        split += ".json"  # the annotation file of the crops (pysot: train.json / val.json)
    return LAYOUTS[kind](root, split)


# ---------------------------------------------------------------- building

_WORKER_LAYOUT = None


def _init_worker(layout) -> None:
    global _WORKER_LAYOUT
    _WORKER_LAYOUT = layout


def _parse_unit(unit: str) -> tuple[str, list[Track] | None, str]:
    try:
        return unit, _WORKER_LAYOUT.parse(unit), ""
    except DataError as e:
        return unit, None, str(e)


def _progress(total: int, desc: str, show: bool):
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover - tqdm comes with the project's dependencies
        return None
    return tqdm(total=total, desc=desc, unit="unit", disable=not show, mininterval=1.0)


def parse_all(layout, workers: int = 0, skip_bad: bool = False, progress: bool = False,
              units: list[str] | None = None) -> tuple[list[Track], list[str]]:
    """Every track of a layout (its ``units``, listed here unless given, parsed in ``workers``
    processes) and the problems of the units left out. Without ``skip_bad`` any problem is
    an error listing all of them."""
    global _WORKER_LAYOUT
    units = layout.units() if units is None else units
    if not units:
        raise DataError(f"{layout.root}: no {layout.kind} units found")
    bar = _progress(len(units), f"index {layout.kind}", progress)
    results = []
    if workers > 1:
        with get_context("fork" if os.name == "posix" else "spawn").Pool(
                workers, initializer=_init_worker, initargs=(layout,)) as pool:
            for res in pool.imap(_parse_unit, units, chunksize=max(1, len(units) // (workers * 16))):
                results.append(res)
                bar and bar.update()
    else:
        _WORKER_LAYOUT = layout
        for u in units:
            results.append(_parse_unit(u))
            bar and bar.update()
        _WORKER_LAYOUT = None
    bar and bar.close()
    problems = [msg for _, _, msg in results if msg]
    if problems and not skip_bad:
        listing = "\n".join(f"  {p}" for p in problems[:50])
        more = f"\n  ... and {len(problems) - 50} more" if len(problems) > 50 else ""
        raise DataError(f"{layout.root}: {len(problems)} problem(s) in {layout.kind} annotations; fix them "
                        f"or set skip_bad=true:\n{listing}{more}")
    if problems:
        log.warning("%s: skipping %d unit(s) with problems:\n%s", layout.root, len(problems), "\n".join(problems))
    tracks = [t for _, ts, _ in results if ts for t in ts]
    if not tracks:
        raise DataError(f"{layout.root}: no {layout.kind} track with a visible box")
    return tracks, problems


def _split_dir(frames: tuple[str, ...]) -> tuple[str, list[str]]:
    d = os.path.commonpath(frames).replace("\\", "/") if len(frames) > 1 else frames[0].rpartition("/")[0]
    if d in frames:  # one frame: its folder
        d = d.rpartition("/")[0]
    cut = len(d) + 1 if d else 0
    return d, [f[cut:] for f in frames]


def tracks_table(tracks: list[Track], meta: dict) -> pa.Table:
    dirs, files = zip(*(_split_dir(t.frames) for t in tracks))
    fp_cache: dict[tuple, str] = {}
    root = meta["root"]
    fps = [fp_cache.setdefault(t.annotations, fingerprint(root, t.annotations)) for t in tracks]
    table = pa.table({
        "name": pa.array([t.name for t in tracks], pa.string()),
        "dir": pa.array(dirs, pa.string()),
        "files": pa.array(files, pa.list_(pa.string())),
        "boxes": pa.array([np.ascontiguousarray(t.boxes, "<f8").tobytes() for t in tracks], pa.large_binary()),
        "visible": pa.array([np.ascontiguousarray(t.visible, np.uint8).tobytes() for t in tracks], pa.large_binary()),
        "width": pa.array([t.image_size[0] for t in tracks], pa.int32()),
        "height": pa.array([t.image_size[1] for t in tracks], pa.int32()),
        "annotations": pa.array([list(t.annotations) for t in tracks], pa.list_(pa.string())),
        "fingerprint": pa.array(fps, pa.string()),
    })
    return table.replace_schema_metadata({_META_KEY: json.dumps(meta).encode()})


def build_index(kind: str, root: str, split: str = "train", workers: int = 0, skip_bad: bool = False,
                progress: bool = False) -> pa.Table:
    """Parse a whole split once -> the index table (see the module docstring)."""
    start = time.perf_counter()
    layout = open_layout(kind, root, split)
    units = layout.units()  # a recursive listing on VID/DET: once
    tracks, skipped = parse_all(layout, workers, skip_bad, progress, units)
    listing = tuple(getattr(layout, "listing", ()))
    meta = {"kind": kind, "split": split, "root": str(root), "built": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "units": len(units), "tracks": len(tracks), "frames": sum(len(t.frames) for t in tracks),
            "skipped": skipped,
            "listing": list(listing), "listing_fingerprint": fingerprint(str(root), listing),
            "seconds": round(time.perf_counter() - start, 2)}
    return tracks_table(tracks, meta)


def write_index(table: pa.Table, location: str) -> str:
    """Write atomically (a temporary name, then a move) so a reader never sees half an index."""
    f, path = fs.resolve(location)
    parent = path.rpartition("/")[0] if "/" in path else ""
    if fs.local_path(location) is not None:
        os.makedirs(os.path.dirname(os.path.abspath(fs.local_path(location))), exist_ok=True)
    elif parent:
        f.create_dir(parent, recursive=True)
    tmp = f"{path}.tmp-{os.getpid()}"
    with f.open_output_stream(tmp) as out:
        pq.write_table(table, out, compression="zstd")
    f.move(tmp, path)
    return location


def _read_table(location: str, dictionary: Iterable[str] = ()) -> tuple[pa.Table, dict]:
    f, path = fs.resolve(location)
    pool = pa.default_memory_pool()
    try:
        # The system allocator gives back what decoding held transiently: with the default
        # (mimalloc) pool a 9,335-sequence index kept ~150 MB more after the read.
        pa.set_memory_pool(pa.system_memory_pool())
        with f.open_input_file(path) as src:
            table = pq.read_table(src, read_dictionary=list(dictionary), use_threads=False)
    except FileNotFoundError:
        raise DataError(f"{location}: index not found (build it with `lighttrack data index`)") from None
    except (OSError, pa.ArrowInvalid) as e:
        raise DataError(f"{location}: not a readable index: {e}") from None
    finally:
        pa.set_memory_pool(pool)
    meta = table_meta(table)
    if meta is None:
        raise DataError(f"{location}: not a lighttrack index (no {_META_KEY.decode()} metadata)")
    return table, meta


def table_meta(table: pa.Table) -> dict | None:
    """The metadata an index table carries (see the module docstring), or None."""
    raw = (table.schema.metadata or {}).get(_META_KEY)
    return None if raw is None else json.loads(raw)


# ---------------------------------------------------------------- reading

def _flat(col: pa.ChunkedArray) -> tuple[np.ndarray, pa.Array]:
    arr = col.combine_chunks()
    return arr.offsets.to_numpy(), arr.values


def _bytes(col: pa.ChunkedArray, dtype) -> tuple[np.ndarray, np.ndarray]:
    """A binary column as (offsets in items (T+1,), all values (F,)) without a copy."""
    arr = col.combine_chunks()
    offsets = np.frombuffer(arr.buffers()[1], np.int64)[arr.offset:arr.offset + len(arr) + 1]
    data = np.frombuffer(arr.buffers()[2], np.uint8)[offsets[0]:offsets[-1]].view(dtype)
    size = np.dtype(dtype).itemsize
    return (offsets - offsets[0]) // size, data


@dataclass
class _Columns:
    dirs: list[str]
    file_offsets: np.ndarray  # (T+1,) into file_codes
    file_codes: np.ndarray  # (F,) int32 codes into file_names
    file_names: list[str]
    boxes: np.ndarray  # (F, 4) float64
    visible: np.ndarray  # (F,) bool
    size: np.ndarray  # (T, 2) int32
    annotations: list[tuple[str, ...]]
    fingerprints: list[str]


class IndexedReader(_Reader):
    """The reader API over an index: no annotation file is read to open it.

    Columns stay flat NumPy arrays (a track is a slice), so 1.4 million frames cost a few
    tens of MB, not a Python object each, and forked DataLoader workers share them.
    """

    def __init__(self, location: str, root: str | None = None, names: Iterable[str] | None = None):
        self.location = str(location)
        table, self.info = _read_table(self.location, ["files.list.element"])
        self.root, self.kind, self.split = str(root or self.info["root"]), self.info["kind"], self.info["split"]
        self._check_listing()
        if names is not None:
            keep = set(names)
            table = table.filter(pa.array([n in keep for n in table["name"].to_pylist()]))
        self.sequence_names = table["name"].to_pylist()
        offsets, files = _flat(table["files"])
        if not isinstance(files, pa.DictionaryArray):
            files = files.dictionary_encode()
        box_off, boxes = _bytes(table["boxes"], "<f8")
        vis_off, visible = _bytes(table["visible"], np.uint8)
        offsets = offsets - offsets[0]
        if not (np.array_equal(box_off, offsets * 4) and np.array_equal(vis_off, offsets)):
            raise DataError(f"{self.location}: inconsistent index (frames, boxes and visibility differ in length)")
        self._c = _Columns(
            dirs=table["dir"].to_pylist(), file_offsets=offsets,
            file_codes=files.indices.to_numpy(zero_copy_only=False).astype(np.int32, copy=False),
            file_names=files.dictionary.to_pylist(),
            boxes=boxes.reshape(-1, 4), visible=visible.view(bool),
            size=np.stack([table["width"].to_numpy(), table["height"].to_numpy()], 1),
            annotations=[tuple(a) for a in table["annotations"].to_pylist()],
            fingerprints=table["fingerprint"].to_pylist())
        self._verified: dict[tuple[str, ...], str] = {}
        self._checked: set[int] = set()

    def _check_listing(self) -> None:
        listing = self.info.get("listing") or []
        if listing and fingerprint(self.root, listing) != self.info.get("listing_fingerprint"):
            raise self._stale(fs.join(self.root, listing[0]))

    def _stale(self, changed: str) -> StaleIndex:
        return StaleIndex(f"{self.location}: stale index: {changed} changed since the index was built "
                          f"({self.info['built']}); rebuild it with "
                          f"`lighttrack data index {self.root} --kind {self.kind} --split {self.split}`")

    def _verify(self, i: int) -> None:
        """Compare the track's annotation files with the index, once per process (a copied
        dataset has new modification times: its copied index is refused too)."""
        if i in self._checked:
            return
        files = self._c.annotations[i]
        if files not in self._verified:
            self._verified[files] = fingerprint(self.root, files)
        if self._verified[files] != self._c.fingerprints[i]:
            raise self._stale(fs.join(self.root, files[0]) if files else self.root)
        self._checked.add(i)

    def verify_sample(self, k: int = 16) -> None:
        """Compare ``k`` tracks spread over the index with their annotation files (the listing
        is compared on open): a quick staleness check for a driver, before any rank starts."""
        for i in np.unique(np.linspace(0, len(self) - 1, min(k, len(self))).astype(int)):
            self._verify(int(i))

    def _slice(self, i: int) -> slice:
        return slice(int(self._c.file_offsets[i]), int(self._c.file_offsets[i + 1]))

    def get_sequence_info(self, i: int) -> dict[str, np.ndarray]:
        self._verify(i)
        s = self._slice(i)
        bbox = self._c.boxes[s]
        valid = _valid(bbox)
        return {"bbox": bbox, "valid": valid, "visible": self._c.visible[s] & valid}

    def _frame(self, i: int, k: int) -> str:
        s = self._slice(i)
        name = self._c.file_names[self._c.file_codes[s.start + k]]
        d = self._c.dirs[i]
        return fs.join(self.root, d, name) if d else fs.join(self.root, name)

    def _frame_list(self, i: int) -> list[str]:
        s = self._slice(i)
        return [self._frame(i, k) for k in range(s.stop - s.start)]

    def meta(self, i: int) -> dict:
        w, h = (int(v) for v in self._c.size[i])
        return {"resolution": f"({w}, {h})"} if w else {}

    def image_size(self, i: int) -> tuple[int, int]:
        return tuple(int(v) for v in self._c.size[i])

    @property
    def num_frames(self) -> int:
        return int(self._c.file_offsets[-1])


def read_index(location: str, root: str | None = None, names: Iterable[str] | None = None) -> IndexedReader:
    """Open a tracking index; ``root`` overrides the dataset root it was built for (data moved)."""
    return IndexedReader(location, root, names)


# ---------------------------------------------------------------- classification (ImageNet folders)

def build_class_index(folder: str) -> pa.Table:
    """``<folder>/<class>/*.JPEG`` -> one row per image (path relative to ``folder``, label)."""
    start = time.perf_counter()
    classes = [c for c in fs.list_dir(folder) if fs.is_dir(fs.join(folder, c))]
    if not classes:
        raise DataError(f"{folder}: no class folders (expected <split>/<class>/*.JPEG)")
    paths, labels = [], []
    for label, c in enumerate(classes):
        files = [n for n in fs.list_dir(fs.join(folder, c)) if n.lower().endswith(IMAGE_EXTENSIONS)]
        if not files:
            raise DataError(f"{fs.join(folder, c)}: class folder without images")
        paths += [f"{c}/{n}" for n in files]
        labels += [label] * len(files)
    meta = {"kind": "imagenet", "root": str(folder), "classes": classes, "images": len(paths),
            "built": time.strftime("%Y-%m-%dT%H:%M:%S"), "seconds": round(time.perf_counter() - start, 2)}
    table = pa.table({"path": pa.array(paths, pa.string()), "label": pa.array(labels, pa.int32())})
    return table.replace_schema_metadata({_META_KEY: json.dumps(meta).encode()})


def read_class_index(location: str) -> tuple[list[str], list[tuple[str, int]], dict]:
    """(class names, [(relative path, label)], metadata) of a classification index."""
    table, meta = _read_table(location)
    if meta.get("kind") != "imagenet":
        raise DataError(f"{location}: a {meta.get('kind')} index, not an ImageNet one")
    return meta["classes"], list(zip(table["path"].to_pylist(), table["label"].to_pylist())), meta
