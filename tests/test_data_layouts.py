"""VID / DET / COCO / crop511 layouts: hand-written fixtures, malformed files, the synthetic
round trip from the embedded GOT-10k split, and a VID split read from s3://."""
from __future__ import annotations

import json
import math
import xml.etree.ElementTree as ET
from pathlib import Path

import cv2
import numpy as np
import pytest

from lighttrack import geometry
from lighttrack.data import fs, layouts, synth
from lighttrack.data.fs import DataError
from lighttrack.data.layouts import LAYOUTS, Coco, Crop511, ImagenetDet, ImagenetVid, crop511_box
from lighttrack.data.readers import Got10k
from lighttrack.data.synth_layouts import write_layouts

W, H = 64, 48


# ---------------------------------------------------------------- fixture writers

def _jpeg(path: Path, w: int = W, h: int = H) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = np.full((h, w, 3), 90, np.uint8)
    assert cv2.imwrite(str(path), img)


def _ilsvrc_xml(path: Path, objects: list[dict], w: int = W, h: int = H) -> None:
    """objects: {"trackid"?: int, "name": str, "box": (xmin, ymin, xmax, ymax)}."""
    ann = ET.Element("annotation")
    ET.SubElement(ann, "filename").text = path.stem
    size = ET.SubElement(ann, "size")
    ET.SubElement(size, "width").text = str(w)
    ET.SubElement(size, "height").text = str(h)
    for o in objects:
        obj = ET.SubElement(ann, "object")
        if "trackid" in o:
            ET.SubElement(obj, "trackid").text = str(o["trackid"])
        ET.SubElement(obj, "name").text = o.get("name", "n01")
        bb = ET.SubElement(obj, "bndbox")
        for k, v in zip(("xmin", "ymin", "xmax", "ymax"), o["box"]):
            ET.SubElement(bb, k).text = str(v)
    path.parent.mkdir(parents=True, exist_ok=True)
    ET.ElementTree(ann).write(path)


VIDEO = "ILSVRC2015_VID_train_0000/ILSVRC2015_train_00000000"
# frame -> {trackid: (xmin, ymin, xmax, ymax)}; trackid 3 is gone in frame 2
VID_BOXES = [{0: (1, 2, 11, 22), 3: (30, 10, 50, 40)},
             {0: (2, 3, 12, 23), 3: (31, 11, 51, 41)},
             {0: (3, 4, 13, 24)},
             {0: (4, 5, 14, 25), 3: (33, 13, 53, 43)}]


def _write_vid(root: Path, video: str = VIDEO, frames=VID_BOXES, split: str = "train") -> None:
    for k, objs in enumerate(frames):
        _ilsvrc_xml(root / "Annotations/VID" / split / video / f"{k:06d}.xml",
                    [{"trackid": t, "box": b} for t, b in objs.items()])
        _jpeg(root / "Data/VID" / split / video / f"{k:06d}.JPEG")


def _write_det(root: Path, name: str, objects: list[tuple], jpeg: bool = True) -> None:
    _ilsvrc_xml(root / "Annotations/DET/train" / f"{name}.xml",
                [{"name": f"n0{j}", "box": b} for j, b in enumerate(objects)])
    if jpeg:
        _jpeg(root / "Data/DET/train" / f"{name}.JPEG")


def _coco_dict() -> dict:
    return {"images": [{"id": 5, "file_name": "000000000005.jpg", "width": W, "height": H},
                       {"id": 9, "file_name": "000000000009.jpg", "width": W, "height": H}],
            "annotations": [{"id": 1, "image_id": 5, "bbox": [1.5, 2, 10, 20], "iscrowd": 0, "category_id": 1},
                            {"id": 2, "image_id": 9, "bbox": [0, 0, 30, 30], "iscrowd": 1, "category_id": 1},
                            {"id": 3, "image_id": 9, "bbox": [4, 5, 6, 7], "iscrowd": 0, "category_id": 1},
                            {"id": 4, "image_id": 9, "bbox": [4, 5, 0, 7], "iscrowd": 0, "category_id": 1}],
            "categories": [{"id": 1, "name": "thing"}]}


def _write_coco(root: Path, d: dict | str | bytes) -> Path:
    p = root / "annotations" / "instances_train2017.json"
    p.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(d, dict):
        for im in d.get("images", []):
            _jpeg(root / "train2017" / im["file_name"])
        d = json.dumps(d)
    p.write_bytes(d.encode() if isinstance(d, str) else d)
    return p


def _write_crop511(root: Path, labels: dict | str | bytes) -> Path:
    if isinstance(labels, dict):
        for video, tracks in labels.items():
            for track, frames in tracks.items():
                for frame in frames:
                    if frame != "frames":
                        _jpeg(root / video / f"{frame}.{track}.x.jpg", 16, 16)  # content is not read
        labels = json.dumps(labels)
    root.mkdir(parents=True, exist_ok=True)
    p = root / "train.json"
    p.write_bytes(labels.encode() if isinstance(labels, str) else labels)
    return p


def _all(layout) -> list:
    return [t for u in layout.units() for t in layout.parse(u)]


# ---------------------------------------------------------------- well-formed layouts

def test_vid_tracks_two_ids_one_disappears(tmp_path):
    _write_vid(tmp_path)
    _write_vid(tmp_path, "ILSVRC2015_VID_train_0001/ILSVRC2015_train_00001000", [{}, {}])  # no object at all
    vid = ImagenetVid(str(tmp_path))
    assert vid.kind == "vid" and vid.root == str(tmp_path)
    assert vid.units() == [VIDEO, "ILSVRC2015_VID_train_0001/ILSVRC2015_train_00001000"]
    assert vid.parse("ILSVRC2015_VID_train_0001/ILSVRC2015_train_00001000") == []
    t0, t3 = vid.parse(VIDEO)
    assert (t0.name, t3.name) == (f"{VIDEO}/0", f"{VIDEO}/3")
    frames = tuple(f"Data/VID/train/{VIDEO}/{k:06d}.JPEG" for k in range(4))
    assert t0.frames == frames and t3.frames == frames
    # the index fingerprints a video by its first, middle and last XML
    assert t0.annotations == tuple(f"Annotations/VID/train/{VIDEO}/{k:06d}.xml" for k in (0, 2, 3))
    assert t0.image_size == (W, H) and t0.boxes.dtype == np.float64
    np.testing.assert_array_equal(t0.boxes, [[1, 2, 10, 20], [2, 3, 10, 20], [3, 4, 10, 20], [4, 5, 10, 20]])
    np.testing.assert_array_equal(t0.visible, [True] * 4)
    np.testing.assert_array_equal(t3.boxes, [[30, 10, 20, 30], [31, 11, 20, 30], [0, 0, 0, 0], [33, 13, 20, 30]])
    np.testing.assert_array_equal(t3.visible, [True, True, False, True])


def test_vid_val_split_has_videos_directly_under_it(tmp_path):
    _write_vid(tmp_path, "ILSVRC2015_val_00000000", VID_BOXES[:2], split="val")
    vid = ImagenetVid(str(tmp_path), "val")
    assert vid.units() == ["ILSVRC2015_val_00000000"]
    names = [t.name for t in _all(vid)]
    assert names == ["ILSVRC2015_val_00000000/0", "ILSVRC2015_val_00000000/3"]
    with pytest.raises(DataError, match="Annotations/VID/train"):
        ImagenetVid(str(tmp_path), "train").units()


def test_det_objects_are_one_frame_tracks(tmp_path):
    _write_det(tmp_path, "ILSVRC2013_train/n01/n01_0001", [(1, 2, 11, 22), (20.5, 10, 40, 30)])
    _write_det(tmp_path, "ILSVRC2013_train/n01/n01_0002", [])  # no object: no track
    det = ImagenetDet(str(tmp_path))
    assert det.units() == ["ILSVRC2013_train/n01/n01_0001.xml", "ILSVRC2013_train/n01/n01_0002.xml"]
    tracks = _all(det)
    assert [t.name for t in tracks] == ["ILSVRC2013_train/n01/n01_0001/0", "ILSVRC2013_train/n01/n01_0001/1"]
    for t in tracks:
        assert t.frames == ("Data/DET/train/ILSVRC2013_train/n01/n01_0001.JPEG",)
        assert t.annotations == ("Annotations/DET/train/ILSVRC2013_train/n01/n01_0001.xml",)
        assert t.image_size == (W, H) and t.visible.tolist() == [True]
    np.testing.assert_array_equal(tracks[0].boxes, [[1, 2, 10, 20]])
    np.testing.assert_array_equal(tracks[1].boxes, [[20.5, 10, 19.5, 20]])


def test_coco_leaves_out_crowd_and_empty_boxes(tmp_path):
    _write_coco(tmp_path, _coco_dict())
    coco = Coco(str(tmp_path))
    assert coco.units() == ["annotations/instances_train2017.json"]
    tracks = _all(coco)
    assert [t.name for t in tracks] == ["5/1", "9/3"]
    assert tracks[0].frames == ("train2017/000000000005.jpg",)
    assert tracks[1].frames == ("train2017/000000000009.jpg",)
    np.testing.assert_array_equal(tracks[0].boxes, [[1.5, 2, 10, 20]])
    np.testing.assert_array_equal(tracks[1].boxes, [[4, 5, 6, 7]])
    assert tracks[0].image_size == (W, H) and tracks[0].annotations == ("annotations/instances_train2017.json",)


def test_crop511_boxes_in_crop_pixels(tmp_path, monkeypatch):
    labels = {"vidB": {"00": {"000002": [10, 10, 30, 30], "000000": [100, 50, 140, 110], "000001": [5, 5, 5, 9],
                              "frames": [0, 1, 2]}},
              "a/vidA": {"01": {"000007": [0, 0, 20, 20]}, "00": {"000003": [7, 7, 47, 67]}}}
    _write_crop511(tmp_path, labels)
    reads = []
    read_text = fs.read_text
    monkeypatch.setattr(layouts.fs, "read_text", lambda loc: reads.append(loc) or read_text(loc))
    crop = Crop511(str(tmp_path))
    assert crop.units() == ["a/vidA", "vidB"]
    tracks = _all(crop)
    assert len(reads) == 1  # the JSON is read once for units() and every parse()
    assert [t.name for t in tracks] == ["a/vidA/00", "a/vidA/01", "vidB/00"]
    b = tracks[2]
    # "frames" is skipped, the zero-width box of frame 1 dropped, frames sorted by key
    assert b.frames == ("vidB/000000.00.x.jpg", "vidB/000002.00.x.jpg")
    assert b.image_size == (511, 511) and b.annotations == ("train.json",) and b.visible.all()
    # 20x20 box: p = 20, s_z = sqrt(40 * 40) = 40, 20 * 127 / 40 = 63.5 px, centred at 511 / 2
    np.testing.assert_allclose(b.boxes[1], [255.5 - 31.75, 255.5 - 31.75, 63.5, 63.5])
    # 40x60 box: p = 50, s_z = sqrt(90 * 110)
    s = 127 / math.sqrt(9900)
    np.testing.assert_allclose(b.boxes[0], [255.5 - 20 * s, 255.5 - 30 * s, 40 * s, 60 * s])
    np.testing.assert_allclose(tracks[0].boxes[0], b.boxes[0])  # same size, another place: same crop box
    np.testing.assert_allclose(crop511_box([40, 60]), b.boxes[0])  # pysot's (w, h) form
    assert LAYOUTS == {"vid": ImagenetVid, "det": ImagenetDet, "coco": Coco, "crop511": Crop511}


# ---------------------------------------------------------------- malformed files

def test_vid_jpeg_without_xml(tmp_path):
    _write_vid(tmp_path)
    (tmp_path / "Annotations/VID/train" / VIDEO / "000002.xml").unlink()
    with pytest.raises(DataError, match=r"000002\.xml: file not found"):
        ImagenetVid(str(tmp_path)).parse(VIDEO)


def test_vid_xml_without_jpeg(tmp_path):
    _write_vid(tmp_path)
    (tmp_path / "Data/VID/train" / VIDEO / "000001.JPEG").unlink()
    with pytest.raises(DataError, match=r"000001\.JPEG: file not found"):
        ImagenetVid(str(tmp_path)).parse(VIDEO)


def test_vid_box_outside_the_image(tmp_path):
    frames = [dict(f) for f in VID_BOXES]
    frames[1][3] = (70, 11, 90, 41)
    _write_vid(tmp_path, frames=frames)
    with pytest.raises(DataError) as e:
        ImagenetVid(str(tmp_path)).parse(VIDEO)
    msg = str(e.value)
    assert f"{VIDEO}/000001.xml: object trackid=3: box [70.0, 11.0, 20.0, 30.0] outside the 64x48 image" in msg


def test_vid_broken_xml_names_the_file(tmp_path):
    _write_vid(tmp_path)
    (tmp_path / "Annotations/VID/train" / VIDEO / "000003.xml").write_text("<annotation><size>")
    with pytest.raises(DataError, match=r"000003\.xml: not valid XML: .*line 1"):
        ImagenetVid(str(tmp_path)).parse(VIDEO)


def test_det_box_outside_the_image_and_missing_jpeg(tmp_path):
    _write_det(tmp_path, "s/a", [(1, 2, 11, 22), (1, 50, 11, 60)])
    _write_det(tmp_path, "s/b", [(1, 2, 11, 22)], jpeg=False)
    det = ImagenetDet(str(tmp_path))
    bad = r"s/a\.xml: object 1 \(n01\): box \[1\.0, 50\.0, 10\.0, 10\.0\] outside the 64x48 image"
    with pytest.raises(DataError, match=bad):
        det.parse("s/a.xml")
    with pytest.raises(DataError, match=r"Data/DET/train/s/b\.JPEG: file not found"):
        det.parse("s/b.xml")


@pytest.mark.parametrize("content", [b"", "{}", "[1, 2]", "{\"images\": []"])
def test_coco_empty_or_invalid_json(tmp_path, content):
    p = _write_coco(tmp_path, content)
    with pytest.raises(DataError, match=str(p)):
        Coco(str(tmp_path)).parse("annotations/instances_train2017.json")


def test_coco_annotation_of_an_unknown_image(tmp_path):
    d = _coco_dict()
    d["annotations"].append({"id": 7, "image_id": 123, "bbox": [1, 1, 5, 5], "iscrowd": 0, "category_id": 1})
    p = _write_coco(tmp_path, d)
    with pytest.raises(DataError, match=rf"{p}: annotation id=7: image_id 123"):
        Coco(str(tmp_path)).parse("annotations/instances_train2017.json")
    del d["annotations"][-1]["category_id"]
    _write_coco(tmp_path, d)
    with pytest.raises(DataError, match=rf"{p}: annotation id=7: missing category_id"):
        Coco(str(tmp_path)).parse("annotations/instances_train2017.json")
    with pytest.raises(DataError, match="instances_val2017.json: file not found"):
        Coco(str(tmp_path), "val2017").units()


@pytest.mark.parametrize("content", [b"", "{}", "  \n"])
def test_crop511_empty_json(tmp_path, content):
    p = _write_crop511(tmp_path, content)
    with pytest.raises(DataError, match=f"{p}: empty annotation file"):
        Crop511(str(tmp_path)).units()


def test_crop511_track_without_a_positive_box(tmp_path):
    p = _write_crop511(tmp_path, {"v1": {"00": {"000000": [1, 1, 9, 9]},
                                         "01": {"000000": [5, 5, 5, 9], "000001": [0, 0, 0, 0], "frames": [0, 1]}}})
    with pytest.raises(DataError, match=rf"{p}: video v1 track 01: no frame with a positive-size box"):
        Crop511(str(tmp_path)).parse("v1")


# ---------------------------------------------------------------- round trip from the embedded data

@pytest.fixture(scope="module")
def embedded(tmp_path_factory):
    base = tmp_path_factory.mktemp("embedded")
    synth.write(base, seed=0, size="tiny")
    summary = write_layouts(str(base / "got10k"), base / "layouts", seed=0)
    return base, summary


def test_round_trip_counts(embedded):
    base, summary = embedded
    got = Got10k(str(base / "got10k"), "train")
    n = len(got)
    assert summary == {"vid": n, "det": 3 * n, "coco": 3 * n, "crop511": n}  # tiny: the target is seen in each
    for kind, cls in LAYOUTS.items():
        tracks = _all(cls(str(base / "layouts" / kind)))
        assert len(tracks) == summary[kind], kind
        for t in tracks:
            for f in t.frames[:3]:
                assert (base / "layouts" / kind / f).is_file()


def test_round_trip_vid_boxes_equal_got10k(embedded):
    base, _ = embedded
    got = Got10k(str(base / "got10k"), "train")
    vid = ImagenetVid(str(base / "layouts" / "vid"))
    assert vid.units() == [f"ILSVRC2015_VID_train_0000/{n}" for n in got.sequence_names]
    for i, unit in enumerate(vid.units()):
        (track,) = vid.parse(unit)
        info = got.get_sequence_info(i)
        assert track.name == f"{unit}/0" and len(track.frames) == len(info["bbox"])
        assert track.image_size == (320, 240)
        np.testing.assert_array_equal(track.visible, info["visible"])
        np.testing.assert_allclose(track.boxes[info["visible"]], info["bbox"][info["visible"]], atol=1e-9)
        assert not track.boxes[~info["visible"]].any()
        np.testing.assert_array_equal(fs.read_image(str(base / "layouts" / "vid" / track.frames[0])),
                                      fs.read_image(got.sequence(i).frames[0]))


def test_round_trip_crop511_target_at_the_centre(embedded):
    base, _ = embedded
    got = Got10k(str(base / "got10k"), "train")
    root = base / "layouts" / "crop511"
    crop = Crop511(str(root))
    track = crop.parse(got.sequence_names[0])[0]
    frame = track.frames[0].split("/")[-1]
    k = int(frame.split(".")[0])
    x, y, w, h = got.get_sequence_info(0)["bbox"][k]
    s = 127 / geometry.context_size(w, h)
    np.testing.assert_allclose(track.boxes[0], [255.5 - w * s / 2, 255.5 - h * s / 2, w * s, h * s], rtol=1e-6)
    # the pixels there are the target's: resample both boxes to 24x24 and compare
    image = fs.read_image(got.sequence(0).frames[k])
    crop_img = fs.read_image(str(root / track.frames[0]))
    assert crop_img.shape == (511, 511, 3)
    bx, by, bw, bh = track.boxes[0]
    target = geometry.crop(image, (x + w / 2, y + h / 2), (w, h), 24).astype(float)
    there = geometry.crop(crop_img, (bx + bw / 2, by + bh / 2), (bw, bh), 24).astype(float)
    beside = geometry.crop(crop_img, (bx + 1.5 * bw, by + bh / 2), (bw, bh), 24).astype(float)
    err, err_beside = np.abs(there - target).mean(), np.abs(beside - target).mean()
    assert err < 8 and err < err_beside / 2, (err, err_beside)
    labels = json.loads((root / "train.json").read_text())
    np.testing.assert_allclose(labels[got.sequence_names[0]]["00"][f"{k:06d}"], [x, y, x + w, y + h], atol=1e-4)


# ---------------------------------------------------------------- s3://

def test_vid_from_s3(tmp_path, s3_server, monkeypatch):
    for key, value in s3_server.env.items():
        monkeypatch.setenv(key, value)
    _write_vid(tmp_path / "vid")
    uri = s3_server.upload(tmp_path / "vid", "layouts-test", "vid")
    vid = ImagenetVid(uri)
    assert vid.units() == [VIDEO]
    t0, t3 = vid.parse(VIDEO)
    assert t3.name == f"{VIDEO}/3" and t3.frames[0] == f"Data/VID/train/{VIDEO}/000000.JPEG"
    np.testing.assert_array_equal(t3.visible, [True, True, False, True])
    np.testing.assert_array_equal(t0.boxes[3], [4, 5, 10, 20])
    assert fs.read_image(fs.join(uri, t0.frames[0])).shape == (H, W, 3)
