"""Detection and pre-cropped training layouts: ImageNet VID, ImageNet DET, COCO and crop511.

Each class implements :class:`lighttrack.data.tracks.Layout` (``kind``, ``root``, ``units()``,
``parse(unit)``); roots are local paths or URIs read through :mod:`lighttrack.data.fs`.

- ``vid`` (ILSVRC2015 VID): ``Annotations/VID/<split>/**/<video>/<frame:06d>.xml`` and
  ``Data/VID/<split>/**/<video>/<frame:06d>.JPEG``. A unit is a video; one track per
  ``<trackid>``, over all the video's frames (visible where the id has a box).
- ``det`` (ILSVRC DET): ``Annotations/DET/<split>/**/<name>.xml`` and
  ``Data/DET/<split>/**/<name>.JPEG``. A unit is an XML file; every object is a one-frame track.
- ``coco``: ``annotations/instances_<split>.json`` and ``<split>/<file_name>``. One unit (the
  JSON); every non-crowd annotation with a positive size is a one-frame track.
- ``crop511`` (what the SiamRPN++/pysot/Ocean curation scripts write): ``<video>/<frame>.<track>.x.jpg``
  crops of 511x511 centred on the target, plus a JSON ``{video: {track: {frame: [x1, y1, x2, y2]}}}``
  of boxes in the *original* image. A unit is a video; boxes are mapped into the crop.
"""
from __future__ import annotations

import contextlib
import io
import json
import math
import posixpath
import xml.etree.ElementTree as ET

import numpy as np
import pyarrow.fs as pafs

from . import fs
from .fs import DataError
from .tracks import Track, box_problems

__all__ = ["ImagenetVid", "ImagenetDet", "Coco", "Crop511", "crop511_box", "LAYOUTS",
           "CROP_SIZE", "EXEMPLAR_SIZE"]

CROP_SIZE = 511  # side of a crop511 search crop, pixels
EXEMPLAR_SIZE = 127  # the context square s_z maps to this many crop pixels


# ---------------------------------------------------------------- shared helpers

def _walk(location: str) -> list[str]:
    """Sorted "/"-separated paths, relative to ``location``, of every file below it."""
    filesystem, base = fs.resolve(location)
    try:
        if filesystem.get_file_info(base).type != pafs.FileType.Directory:
            return []
        infos = filesystem.get_file_info(pafs.FileSelector(base, recursive=True))
    except OSError as e:
        raise DataError(f"{location}: cannot list: {e}") from None
    prefix = base.rstrip("/") + "/"
    return sorted(i.path[len(prefix):] for i in infos
                  if i.type == pafs.FileType.File and i.path.startswith(prefix))


def _read_xml(location: str) -> ET.Element:
    try:
        return ET.fromstring(fs.read_bytes(location))
    except ET.ParseError as e:
        raise DataError(f"{location}: not valid XML: {e}") from None


def _number(el: ET.Element, path: str, where: str) -> float:
    node = el.find(path)
    if node is None or node.text is None or not node.text.strip():
        raise DataError(f"{where}: missing <{path}>")
    try:
        return float(node.text)
    except ValueError:
        raise DataError(f"{where}: <{path}> is not a number: {node.text.strip()!r}") from None


def _xml_size(ann: ET.Element, location: str) -> tuple[int, int]:
    return int(_number(ann, "size/width", location)), int(_number(ann, "size/height", location))


def _xml_box(obj: ET.Element, where: str) -> np.ndarray:
    """xywh of an ILSVRC ``<bndbox>``: w = xmax - xmin, h = ymax - ymin, as pysot's curation
    scripts and ``_get_bbox`` read them (the devkit's inclusive +1 convention is not applied)."""
    x1, y1, x2, y2 = (_number(obj, f"bndbox/{k}", where) for k in ("xmin", "ymin", "xmax", "ymax"))
    return np.array([x1, y1, x2 - x1, y2 - y1], np.float64)


def _check_box(box: np.ndarray, size: tuple[int, int], where: str) -> None:
    bad = box_problems(box[None], np.ones(1, bool), size)
    if bad:
        raise DataError(f"{where}: {bad[0][1]}")


def _read_json(loc: str):
    text = fs.read_text(loc)
    if not text.strip():
        raise DataError(f"{loc}: empty annotation file")
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(f"{loc}:{e.lineno}: not valid JSON: {e.msg}") from None


def _stem(name: str) -> str:
    return name.rsplit(".", 1)[0]


class _Ilsvrc:
    """An ILSVRC task's split: ``Annotations/<TASK>/<split>/**.xml`` beside ``Data/<TASK>/<split>/**.JPEG``."""
    task = ""

    def __init__(self, root: str, split: str = "train"):
        self.root, self.split = str(root), split
        self.ann_rel = f"Annotations/{self.task}/{split}"
        self.data_rel = f"Data/{self.task}/{split}"


# ---------------------------------------------------------------- ImageNet VID

class ImagenetVid(_Ilsvrc):
    """ILSVRC2015 VID ``split`` (``train``: ``ILSVRC2015_VID_train_XXXX/<video>``; ``val``: ``<video>``)."""
    kind, task = "vid", "VID"

    def units(self) -> list[str]:
        """Videos: the folders (relative to ``Annotations/VID/<split>``) that hold frame XMLs."""
        top = fs.join(self.root, self.ann_rel)
        videos = {posixpath.dirname(p) for p in _walk(top) if p.endswith(".xml")}
        videos.discard("")
        if not videos:
            raise DataError(f"{top}: no video folders with frame XMLs (not an ImageNet VID {self.split} split)")
        return sorted(videos)

    def parse(self, unit: str) -> list[Track]:
        ann_dir, data_dir = f"{self.ann_rel}/{unit}", f"{self.data_rel}/{unit}"
        xmls = {_stem(n): n for n in fs.list_dir(fs.join(self.root, ann_dir)) if n.endswith(".xml")}
        jpegs = {_stem(n): n for n in fs.list_dir(fs.join(self.root, data_dir)) if n.endswith(".JPEG")}
        if not xmls:
            raise DataError(f"{fs.join(self.root, ann_dir)}: no frame XMLs")
        for stem in sorted(set(xmls) | set(jpegs)):
            if stem not in jpegs:
                raise DataError(f"{fs.join(self.root, data_dir, stem + '.JPEG')}: file not found "
                                f"(annotated by {xmls[stem]})")
            if stem not in xmls:
                raise DataError(f"{fs.join(self.root, ann_dir, stem + '.xml')}: file not found "
                                f"(frame {jpegs[stem]} has no annotation)")
        stems = sorted(xmls)
        n = len(stems)
        size: tuple[int, int] | None = None
        boxes: dict[int, np.ndarray] = {}  # trackid -> (n, 4)
        for k, stem in enumerate(stems):
            loc = fs.join(self.root, ann_dir, xmls[stem])
            ann = _read_xml(loc)
            frame_size = _xml_size(ann, loc)
            if size is None:
                size = frame_size
            elif frame_size != size:
                raise DataError(f"{loc}: frame size {frame_size[0]}x{frame_size[1]} differs from the "
                                f"video's {size[0]}x{size[1]}")
            for j, obj in enumerate(ann.iter("object")):
                tid_text = (obj.findtext("trackid") or "").strip()
                try:
                    tid = int(tid_text)
                except ValueError:
                    raise DataError(f"{loc}: object {j}: bad or missing <trackid> {tid_text!r}") from None
                where = f"{loc}: object trackid={tid}"
                box = _xml_box(obj, where)
                _check_box(box, frame_size, where)
                track = boxes.setdefault(tid, np.zeros((n, 4)))
                if track[k].any():
                    raise DataError(f"{where}: trackid appears twice in the frame")
                track[k] = box
        frames = tuple(f"{data_dir}/{jpegs[s]}" for s in stems)
        # The fingerprint of a video is that of its first, middle and last XML: all of them
        # would be 1.1M stats on VID train for every process that verifies the index.
        sample = sorted({stems[0], stems[len(stems) // 2], stems[-1]}) if stems else []
        annotations = tuple(f"{ann_dir}/{xmls[s]}" for s in sample)
        out = []
        for tid in sorted(boxes):
            b = boxes[tid]
            visible = (b[:, 2] > 0) & (b[:, 3] > 0)
            out.append(Track(f"{unit}/{tid}", frames, b, visible, size, annotations))
        return out


# ---------------------------------------------------------------- ImageNet DET

class ImagenetDet(_Ilsvrc):
    """ILSVRC DET ``split``: every object of every image is a one-frame track."""
    kind, task = "det", "DET"

    def units(self) -> list[str]:
        """XML files, relative to ``Annotations/DET/<split>``."""
        top = fs.join(self.root, self.ann_rel)
        units = [p for p in _walk(top) if p.endswith(".xml")]
        if not units:
            raise DataError(f"{top}: no XML annotations (not an ImageNet DET {self.split} split)")
        return units

    def parse(self, unit: str) -> list[Track]:
        name = unit[:-len(".xml")] if unit.endswith(".xml") else unit
        ann_rel, frame_rel = f"{self.ann_rel}/{unit}", f"{self.data_rel}/{name}.JPEG"
        loc = fs.join(self.root, ann_rel)
        ann = _read_xml(loc)
        objects = list(ann.iter("object"))
        if not objects:
            return []
        if fs.size(fs.join(self.root, frame_rel)) is None:
            raise DataError(f"{fs.join(self.root, frame_rel)}: file not found (annotated by {loc})")
        size = _xml_size(ann, loc)
        out = []
        for j, obj in enumerate(objects):
            where = f"{loc}: object {j}" + (f" ({obj.findtext('name').strip()})" if obj.findtext("name") else "")
            box = _xml_box(obj, where)
            _check_box(box, size, where)
            out.append(Track(f"{name}/{j}", (frame_rel,), box[None], np.ones(1, bool), size, (ann_rel,)))
        return out


# ---------------------------------------------------------------- COCO

class Coco:
    """COCO ``instances_<split>.json``: every non-crowd annotation with a positive size."""
    kind = "coco"

    def __init__(self, root: str, split: str = "train2017"):
        self.root, self.split = str(root), split
        self.annotation = f"annotations/instances_{split}.json"

    def units(self) -> list[str]:
        loc = fs.join(self.root, self.annotation)
        if fs.size(loc) is None:
            raise DataError(f"{loc}: file not found (not a COCO {self.split} split)")
        return [self.annotation]

    def _load(self, loc: str) -> dict:
        d = _read_json(loc)
        if not isinstance(d, dict) or not isinstance(d.get("images"), list) \
                or not isinstance(d.get("annotations"), list):
            raise DataError(f"{loc}: not a COCO instances file (needs \"images\" and \"annotations\" lists)")
        return d

    def parse(self, unit: str) -> list[Track]:
        from pycocotools.coco import COCO

        loc = fs.join(self.root, unit)
        d = self._load(loc)
        need = ("id", "image_id", "category_id") if "categories" in d else ("id", "image_id")
        for j, a in enumerate(d["annotations"]):  # what createIndex indexes by
            missing = [k for k in need if not isinstance(a, dict) or k not in a]
            if missing:
                what = f"id={a['id']}" if isinstance(a, dict) and "id" in a else f"{j}"
                raise DataError(f"{loc}: annotation {what}: missing {', '.join(missing)}")
        for j, im in enumerate(d["images"]):
            if not isinstance(im, dict) or "id" not in im or "file_name" not in im:
                raise DataError(f"{loc}: image {j}: needs \"id\" and \"file_name\"")
        coco = COCO()
        coco.dataset = d
        try:
            with contextlib.redirect_stdout(io.StringIO()):  # createIndex prints progress
                coco.createIndex()
        except (KeyError, TypeError) as e:
            raise DataError(f"{loc}: malformed COCO file ({type(e).__name__}: {e})") from None
        out = []
        for a in d["annotations"]:
            where = f"{loc}: annotation id={a['id']}"
            if a["image_id"] not in coco.imgs:
                raise DataError(f"{where}: image_id {a['image_id']} is not among the images")
            if a.get("iscrowd", 0):
                continue
            try:
                box = np.array(a["bbox"], np.float64).reshape(4)
            except (KeyError, TypeError, ValueError):
                raise DataError(f"{where}: \"bbox\" must be 4 numbers, got {a.get('bbox')!r}") from None
            if not (box[2] > 0 and box[3] > 0):
                continue
            img = coco.imgs[a["image_id"]]
            size = (int(img.get("width", 0)), int(img.get("height", 0)))
            _check_box(box, size, where)
            out.append(Track(f"{a['image_id']}/{a['id']}", (f"{self.split}/{img['file_name']}",), box[None],
                             np.ones(1, bool), size, (unit,)))
        return out


# ---------------------------------------------------------------- crop511

def crop511_box(box_xyxy, out: int = CROP_SIZE, exemplar: int = EXEMPLAR_SIZE) -> np.ndarray:
    """Original-image box ``(x1, y1, x2, y2)`` (or ``(w, h)``) -> xywh box in a crop511 crop.

    pysot's ``TrkDataset._get_bbox``: scale = 127 / s_z with s_z = sqrt((w + p)(h + p)),
    p = 0.5 (w + h), centred at ``imw // 2`` = 255. pysot counts in pixel indices (crops are made
    by ``crop_hwc``, which maps the crop square's corners to pixel indices 0 and 510), so 255 is
    the centre of pixel 255: 255.5 = out / 2 in this project's continuous coordinates.
    """
    b = [float(v) for v in box_xyxy]
    w, h = (b[2] - b[0], b[3] - b[1]) if len(b) == 4 else (b[0], b[1])
    p = 0.5 * (w + h)
    scale = exemplar / math.sqrt((w + p) * (h + p))
    cw, ch = w * scale, h * scale
    return np.array([out / 2 - cw / 2, out / 2 - ch / 2, cw, ch], np.float64)


def _frame_order(key: str) -> tuple:
    return (0, int(key), key) if key.isdigit() else (1, 0, key)


class Crop511:
    """Pre-cropped 511x511 search crops (``<video>/<frame>.<track>.x.jpg``) and their JSON."""
    kind = "crop511"

    def __init__(self, root: str, annotation: str = "train.json"):
        # annotation: relative to root, or pysot's place beside the crop511 folder (../train.json)
        self.root, self.annotation = str(root), annotation
        if not fs.exists(fs.join(self.root, annotation)):
            if fs.exists(fs.join(self.root, "..", annotation)):
                self.annotation = f"../{annotation}"
        self._location = fs.join(self.root, self.annotation)
        self._labels: dict | None = None

    def __getstate__(self) -> dict:  # a worker re-reads the JSON rather than receive a pickled copy
        return {**self.__dict__, "_labels": None}

    def labels(self) -> dict:
        """The annotation JSON, read once."""
        if self._labels is None:
            loc = self._location
            d = _read_json(loc)
            if not isinstance(d, dict) or not d:
                raise DataError(f"{loc}: empty annotation file (expected {{video: {{track: {{frame: box}}}}}})")
            self._labels = d
        return self._labels

    def units(self) -> list[str]:
        return sorted(self.labels())

    def parse(self, unit: str) -> list[Track]:
        loc = self._location
        video = self.labels().get(unit)
        if not isinstance(video, dict):
            problem = "not in the file" if video is None else "not a {track: ...} object"
            raise DataError(f"{loc}: video {unit!r}: {problem}")
        out = []
        for track in sorted(video):
            where = f"{loc}: video {unit} track {track}"
            frames = video[track]
            if not isinstance(frames, dict):
                raise DataError(f"{where}: not a {{frame: box}} object")
            keys, boxes = [], []
            for key in sorted(frames, key=_frame_order):
                if key == "frames":  # pysot adds a list of frame numbers here
                    continue
                b = frames[key]
                if not (isinstance(b, list) and len(b) in (2, 4)
                        and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in b)):
                    raise DataError(f"{where} frame {key}: box must be [x1, y1, x2, y2] or [w, h], got {b!r}")
                w, h = (b[2] - b[0], b[3] - b[1]) if len(b) == 4 else b
                if w <= 0 or h <= 0:  # pysot's _filter_zero drops these
                    continue
                keys.append(key)
                boxes.append(crop511_box(b))
            if not keys:
                raise DataError(f"{where}: no frame with a positive-size box")
            boxes = np.array(boxes, np.float64)
            visible = np.ones(len(keys), bool)
            bad = box_problems(boxes, visible, (CROP_SIZE, CROP_SIZE))
            if bad:
                raise DataError(f"{where} frame {keys[bad[0][0]]}: {bad[0][1]}")
            out.append(Track(f"{unit}/{track}", tuple(f"{unit}/{k}.{track}.x.jpg" for k in keys), boxes, visible,
                             (CROP_SIZE, CROP_SIZE), (self.annotation,)))
        return out


LAYOUTS = {"vid": ImagenetVid, "det": ImagenetDet, "coco": Coco, "crop511": Crop511}
