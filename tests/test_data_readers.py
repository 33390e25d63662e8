"""Readers for GOT-10k, LaSOT and folder layouts, local and file:// URIs; the official toolkit agrees."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from lighttrack.data import synth
from lighttrack.data.classification import ClassificationConfig, build_classification
from lighttrack.data.fs import DataError
from lighttrack.data.readers import FolderSequences, Got10k, Lasot, open_tracking


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth")
    synth.write(out, seed=3, size="tiny")
    return out


def test_got10k_val_sequence_info_and_frames(root):
    r = Got10k(root / "got10k", "val")
    assert len(r) == synth.SIZES["tiny"].val and r.sequence_names[0] == "GOT-10k_Val_000001"
    info = r.get_sequence_info(0)
    n = len(info["bbox"])
    assert info["bbox"].shape == (n, 4) and info["valid"].all()
    meta = r.meta(0)
    np.testing.assert_array_equal(info["visible"], (meta["absence"] == 0) & (meta["cover"] > 0))
    frames = r.get_frames(0, [0, n - 1])
    assert frames[0].shape == (240, 320, 3) and frames[0].dtype == np.uint8
    seq = r.sequence(0)
    assert len(seq.frames) == n and seq.frames[0].endswith("00000001.jpg")
    np.testing.assert_array_equal(seq.read_frame(n - 1), frames[1])
    assert meta["resolution"] == "(320, 240)"


def test_official_toolkit_reads_the_embedded_val_split(root):
    from got10k.datasets import GOT10k
    ours = Got10k(root / "got10k", "val")
    theirs = GOT10k(str(root / "got10k"), subset="val", return_meta=True)
    assert theirs.seq_names == ours.sequence_names
    for i in range(len(ours)):
        img_files, anno, meta = theirs[i]
        seq = ours.sequence(i)
        assert [Path(f) for f in img_files] == [Path(f) for f in seq.frames]
        np.testing.assert_allclose(anno, seq.boxes)
        for key in ("cover", "absence", "cut_by_image"):
            np.testing.assert_array_equal(meta[key], ours.meta(i)[key])
        assert meta["resolution"] == "(320, 240)"


def test_official_toolkit_reads_the_test_split_with_first_boxes_only(root):
    from got10k.datasets import GOT10k
    theirs = GOT10k(str(root / "got10k"), subset="test")
    ours = Got10k(root / "got10k", "test")
    img_files, anno = theirs[0]
    seq = ours.sequence(0)
    assert anno.shape == (1, 4) and seq.boxes.shape == (1, 4)
    assert len(img_files) == len(seq.frames) > 1
    np.testing.assert_allclose(anno, seq.boxes)


def test_file_uri_reads_the_same_as_a_local_path(root):
    local = Got10k(root / "got10k", "train")
    uri = Got10k((root / "got10k").as_uri(), "train")
    assert uri.sequence_names == local.sequence_names
    np.testing.assert_array_equal(uri.get_sequence_info(1)["bbox"], local.get_sequence_info(1)["bbox"])
    np.testing.assert_array_equal(uri.get_frames(1, [2])[0], local.get_frames(1, [2])[0])
    assert uri.sequence(1).frames[0].startswith("file://")


def _as_lasot(src: Got10k, dst: Path) -> None:
    for i, name in enumerate(src.sequence_names[:2]):
        d = dst / "shape" / f"shape-{i + 1}"
        (d / "img").mkdir(parents=True)
        seq = src.sequence(i)
        for k, f in enumerate(seq.frames):
            shutil.copy(f, d / "img" / f"{k + 1:08d}.jpg")
        np.savetxt(d / "groundtruth.txt", seq.boxes, fmt="%d", delimiter=",")
        (d / "full_occlusion.txt").write_text(",".join(str(int(a)) for a in seq.absent))
        (d / "out_of_view.txt").write_text(",".join("0" for _ in seq.absent))


def test_lasot_and_folder_layouts(root, tmp_path):
    src = Got10k(root / "got10k", "train")
    _as_lasot(src, tmp_path / "lasot")
    lasot = Lasot(tmp_path / "lasot")
    assert lasot.sequence_names == ["shape-1", "shape-2"]
    info = lasot.get_sequence_info(0)
    np.testing.assert_array_equal(info["visible"], src.get_sequence_info(0)["visible"])
    np.testing.assert_allclose(info["bbox"], np.round(src.get_sequence_info(0)["bbox"]) , atol=1)
    assert lasot.get_frames(0, [0])[0].shape == (240, 320, 3)
    # A generic folder: frames next to a tab-separated groundtruth.txt; the root may be the sequence.
    seq_dir = tmp_path / "folder" / "walk"
    seq_dir.mkdir(parents=True)
    seq = src.sequence(0)
    for k, f in enumerate(seq.frames):
        shutil.copy(f, seq_dir / f"frame{k:04d}.jpg")
    np.savetxt(seq_dir / "groundtruth.txt", seq.boxes, fmt="%.2f", delimiter="\t")
    for where in (tmp_path / "folder", seq_dir):
        folder = FolderSequences(where)
        assert folder.sequence_names == ["walk"]
        assert len(folder.sequence(0).frames) == len(seq.frames)
        np.testing.assert_allclose(folder.get_sequence_info(0)["bbox"], seq.boxes, atol=0.01)
    assert isinstance(open_tracking("lasot", tmp_path / "lasot"), Lasot)
    # LaSOT's labels are one comma-separated line: the check reads them as the reader does
    from lighttrack.data.check import check_dataset
    assert check_dataset(tmp_path / "lasot", decode=False) == []
    (tmp_path / "lasot" / "shape" / "shape-2" / "out_of_view.txt").write_text("0,1")
    problems = check_dataset(tmp_path / "lasot", decode=False)
    assert len(problems) == 1 and "out_of_view.txt" in problems[0].path and "2 labels for" in problems[0].message


def test_reader_errors_name_the_file(root, tmp_path):
    with pytest.raises(DataError, match="list.txt"):
        Got10k(tmp_path, "val")
    (tmp_path / "val").mkdir()
    (tmp_path / "val" / "list.txt").write_text("\n")
    with pytest.raises(DataError, match="empty split"):
        Got10k(tmp_path, "val")
    with pytest.raises(DataError, match="split must be"):
        Got10k(root / "got10k", "dev")
    with pytest.raises(DataError, match="unknown dataset kind"):
        open_tracking("vot", root)
    bad = tmp_path / "seq"
    shutil.copytree(root / "got10k" / "val" / "GOT-10k_Val_000001", bad / "val" / "S")
    (bad / "val" / "list.txt").write_text("S\n")
    gt = bad / "val" / "S" / "groundtruth.txt"
    lines = gt.read_text().splitlines()
    lines[2] = "1,2,3"
    gt.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"groundtruth.txt:3: expected 4 values"):
        Got10k(bad, "val").get_sequence_info(0)


def test_classification_folder_via_imagefolder(root):
    train, val = build_classification(ClassificationConfig(root=(root / "imagenet").as_uri(), size=64))
    assert train.classes == list(sorted(synth.SHAPES)) == val.classes
    assert len(train) == 10 * synth.SIZES["tiny"].cls_train and len(val) == 10 * synth.SIZES["tiny"].cls_val
    x, y = train[0]
    assert x.shape == (3, 64, 64) and x.dtype.is_floating_point and 0 <= y < 10
    xv, _ = val[0]
    # Eval transform is deterministic; the training one (random resized crop) is not.
    assert (val[0][0] == xv).all() and not all((train[0][0] == x).all() for _ in range(3))
    raw = train.loader(train.samples[0][0])
    assert raw.shape == (96, 96, 3)  # OpenCV decode, RGB
