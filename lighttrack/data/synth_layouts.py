"""The embedded GOT-10k train split rewritten in the VID, DET, COCO and crop511 layouts.

``write_layouts(got10k_root, out)`` writes, from the same sequences:

- ``out/vid``: ILSVRC2015 VID train layout, one video per sequence
  (``ILSVRC2015_VID_train_0000/<sequence>``), trackid 0 from its boxes; a frame where the
  target is not visible has no object. Frames are hard links to the GOT-10k JPEGs.
- ``out/det``: ILSVRC DET train layout, 3 still images per sequence (drawn from three equal
  stretches of its visible frames), one object each.
- ``out/coco``: ``annotations/instances_train2017.json`` and ``train2017/``, 3 other stills per
  sequence, one annotation each, plus one ``iscrowd: 1`` annotation (left out by readers).
- ``out/crop511``: YouTube-BB-style crop511: every 10th frame (where visible) cropped the way
  pysot's ``par_crop.py`` does (511x511, context square s_z -> 127 px, mean-colour padding),
  ``<sequence>/<frame:06d>.00.x.jpg`` (JPEG quality 85), and ``train.json`` with the original
  boxes as ``[x1, y1, x2, y2]``.

Boxes are written with 4 decimals (the precision of GOT-10k's ``groundtruth.txt``), so the
VID/DET/COCO readers give back the GOT-10k boxes. Each of the four folders is rewritten.
"""
from __future__ import annotations

import json
import os
import shutil
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from .. import geometry
from . import fs
from .layouts import CROP_SIZE, EXEMPLAR_SIZE
from .readers import Got10k

__all__ = ["write_layouts", "LAYOUT_DIRS"]

LAYOUT_DIRS = ("vid", "det", "coco", "crop511")
VID_SUBSET = "ILSVRC2015_VID_train_0000"
DET_SUBSET = "ILSVRC2014_train_0000"
CLASS = "n00000001"  # one made-up WordNet id for the synthetic target class
STILLS = 3  # DET / COCO images per sequence
CROP_EVERY = 10  # crop511: every 10th frame


@dataclass
class _Seq:
    name: str
    frames: list[str]  # locations of the GOT-10k frames
    boxes: np.ndarray  # (N, 4) xywh
    visible: np.ndarray  # (N,) bool
    occluded: np.ndarray  # (N,) bool: cover label below "fully visible"
    size: tuple[int, int]  # (W, H)


def _num(v: float) -> str:
    return f"{v:.4f}".rstrip("0").rstrip(".")


def _place(src: str, dst: Path) -> None:
    """Hard-link ``src`` at ``dst`` (a copy across filesystems, a download from a URI)."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.exists():
        dst.unlink()
    local = fs.local_path(src)
    if local is None:
        dst.write_bytes(fs.read_bytes(src))
        return
    try:
        os.link(local, dst)
    except OSError:
        shutil.copyfile(local, dst)


def _sub(parent: ET.Element, tag: str, text: str | None = None) -> ET.Element:
    el = ET.SubElement(parent, tag)
    if text is not None:
        el.text = text
    return el


def _xml(folder: str, filename: str, size: tuple[int, int], objects: list[tuple[dict, np.ndarray]]) -> ET.ElementTree:
    """An ILSVRC annotation; ``objects`` are (leading fields, xywh box)."""
    ann = ET.Element("annotation")
    _sub(ann, "folder", folder)
    _sub(ann, "filename", filename)
    _sub(_sub(ann, "source"), "database", "lighttrack synthetic")
    s = _sub(ann, "size")
    _sub(s, "width", str(size[0]))
    _sub(s, "height", str(size[1]))
    for fields, (x, y, w, h) in objects:
        obj = _sub(ann, "object")
        tail = {k: fields.pop(k) for k in ("occluded", "generated") if k in fields}
        for k, v in fields.items():
            _sub(obj, k, str(v))
        bb = _sub(obj, "bndbox")
        for k, v in (("xmax", x + w), ("xmin", x), ("ymax", y + h), ("ymin", y)):  # ILSVRC's order
            _sub(bb, k, _num(v))
        for k, v in tail.items():
            _sub(obj, k, str(v))
    tree = ET.ElementTree(ann)
    ET.indent(tree)
    return tree


def _stills(seq: _Seq, rng: np.random.Generator) -> list[int]:
    """One visible frame from each of ``STILLS`` equal stretches of the visible frames."""
    vis = np.flatnonzero(seq.visible)
    return [int(rng.choice(part)) for part in np.array_split(vis, STILLS) if len(part)]


def _write_vid(seqs: list[_Seq], out: Path) -> int:
    tracks = 0
    for seq in seqs:
        unit = f"{VID_SUBSET}/{seq.name}"
        ann_dir, data_dir = out / "Annotations/VID/train" / unit, out / "Data/VID/train" / unit
        ann_dir.mkdir(parents=True, exist_ok=True)
        for k, src in enumerate(seq.frames):
            _place(src, data_dir / f"{k:06d}.JPEG")
            objects = [({"trackid": 0, "name": CLASS, "occluded": int(seq.occluded[k]), "generated": 0}, seq.boxes[k])
                       ] if seq.visible[k] else []
            _xml(unit, f"{k:06d}", seq.size, objects).write(ann_dir / f"{k:06d}.xml")
        tracks += bool(seq.visible.any())
    return tracks


def _write_det(seqs: list[_Seq], out: Path, seed: int) -> int:
    images = 0
    for i, seq in enumerate(seqs):
        for k in _stills(seq, np.random.default_rng((seed, 1, i))):
            name = f"{seq.name}_{k:06d}"
            _place(seq.frames[k], out / "Data/DET/train" / DET_SUBSET / f"{name}.JPEG")
            tree = _xml(DET_SUBSET, name, seq.size, [({"name": CLASS}, seq.boxes[k])])
            (out / "Annotations/DET/train" / DET_SUBSET).mkdir(parents=True, exist_ok=True)
            tree.write(out / "Annotations/DET/train" / DET_SUBSET / f"{name}.xml")
            images += 1
    return images


def _rle(mask: np.ndarray) -> dict:
    """COCO's uncompressed RLE (column-major run lengths, starting with zeros), as crowd
    annotations in ``instances_*.json`` store their masks."""
    flat = mask.ravel(order="F")
    bounds = np.concatenate([[0], np.flatnonzero(np.diff(flat)) + 1, [flat.size]])
    counts = np.diff(bounds).tolist()
    counts = [0] + counts if flat[0] else counts
    return {"counts": counts, "size": list(mask.shape)}


def _write_coco(seqs: list[_Seq], out: Path, seed: int) -> int:
    images, annotations = [], []
    for i, seq in enumerate(seqs):
        for k in _stills(seq, np.random.default_rng((seed, 2, i))):
            image_id = len(images) + 1
            file_name = f"{image_id:012d}.jpg"
            _place(seq.frames[k], out / "train2017" / file_name)
            images.append({"id": image_id, "file_name": file_name, "width": seq.size[0], "height": seq.size[1],
                           "source": f"{seq.name}/{k + 1:08d}.jpg"})
            x, y, w, h = (round(float(v), 4) for v in seq.boxes[k])
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": 1,
                                "bbox": [x, y, w, h], "area": round(w * h, 4), "iscrowd": 0,
                                "segmentation": [[x, y, round(x + w, 4), y, round(x + w, 4), round(y + h, 4),
                                                  x, round(y + h, 4)]]})
    if images:  # one crowd region (the top-left quarter of the first image), to be filtered out
        img = images[0]
        w, h = img["width"] // 2, img["height"] // 2
        mask = np.zeros((img["height"], img["width"]), np.uint8)
        mask[:h, :w] = 1
        annotations.append({"id": len(annotations) + 1, "image_id": img["id"], "category_id": 1,
                            "bbox": [0, 0, w, h], "area": w * h, "iscrowd": 1, "segmentation": _rle(mask)})
    d = {"info": {"description": "lighttrack synthetic (from the embedded GOT-10k train split)"},
         "licenses": [], "images": images, "annotations": annotations,
         "categories": [{"id": 1, "name": "object", "supercategory": "synthetic"}]}
    (out / "annotations").mkdir(parents=True, exist_ok=True)
    (out / "annotations" / "instances_train2017.json").write_text(json.dumps(d))
    return sum(1 for a in annotations if not a["iscrowd"])


def _write_crop511(seqs: list[_Seq], out: Path) -> int:
    labels = {}
    for seq in seqs:
        track = {}
        for k in range(0, len(seq.frames), CROP_EVERY):
            if not seq.visible[k]:
                continue
            x, y, w, h = seq.boxes[k]
            image = fs.read_image(seq.frames[k])  # (H, W, 3) RGB
            # par_crop.py: the search crop is the context square scaled by 511/127 (s_x = s_z + 2 pad)
            s_x = geometry.context_size(w, h) * CROP_SIZE / EXEMPLAR_SIZE
            pad = tuple(float(v) for v in image.reshape(-1, 3).mean(0))
            crop = geometry.crop(image, (x + w / 2, y + h / 2), s_x, CROP_SIZE, pad=pad)
            ok, buf = cv2.imencode(".jpg", cv2.cvtColor(crop, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 85])
            if not ok:
                raise OSError(f"{seq.name}/{k:06d}: JPEG encoding failed")
            (out / seq.name).mkdir(parents=True, exist_ok=True)
            (out / seq.name / f"{k:06d}.00.x.jpg").write_bytes(buf.tobytes())
            track[f"{k:06d}"] = [round(float(v), 4) for v in (x, y, x + w, y + h)]
        if track:
            labels[seq.name] = {"00": track}
    out.mkdir(parents=True, exist_ok=True)
    (out / "train.json").write_text(json.dumps(labels, indent=1, sort_keys=True))
    return len(labels)


def _sequences(reader: Got10k, count: int) -> list[_Seq]:
    seqs = []
    for i in range(count):
        seq = reader.sequence(i)
        first = fs.read_image(seq.frames[0])
        seqs.append(_Seq(seq.name, seq.frames, seq.boxes, ~seq.absent, seq.meta["cover"] < 8,
                         (first.shape[1], first.shape[0])))
    return seqs


def write_layouts(got10k_root: str, out: str | os.PathLike, seed: int = 0, sequences: int | None = None) -> dict:
    """Write ``out/{vid,det,coco,crop511}`` from the first ``sequences`` (default: all)
    sequences of the GOT-10k train split at ``got10k_root``; returns {layout kind: tracks}."""
    reader = Got10k(got10k_root, "train")
    count = len(reader) if sequences is None else min(int(sequences), len(reader))
    seqs = _sequences(reader, count)
    out = Path(out)
    for kind in LAYOUT_DIRS:
        if (out / kind).exists():
            shutil.rmtree(out / kind)
    return {"vid": _write_vid(seqs, out / "vid"),
            "det": _write_det(seqs, out / "det", seed),
            "coco": _write_coco(seqs, out / "coco", seed),
            "crop511": _write_crop511(seqs, out / "crop511")}
