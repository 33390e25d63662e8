"""`lighttrack data check`: every bad-input case is reported, all at once, with file and line."""
from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from lighttrack.cli import main
from lighttrack.data import fs, synth
from lighttrack.data.check import check_dataset

SEQ = "GOT-10k_Train_000001"


@pytest.fixture(scope="module")
def clean(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth")
    synth.write(out, seed=1, size="tiny")
    return out


@pytest.fixture
def copy(clean, tmp_path) -> Path:
    dst = tmp_path / "ds"
    shutil.copytree(clean, dst)
    return dst


def _edit_row(path: Path, line: int, text: str) -> None:
    rows = path.read_text().splitlines()
    rows[line - 1] = text
    path.write_text("\n".join(rows) + "\n")


def test_clean_dataset_has_no_problem(clean, capsys):
    assert check_dataset(clean) == []
    assert check_dataset(clean.as_uri()) == []
    assert check_dataset(clean / "got10k") == [] and check_dataset(clean / "imagenet") == []
    assert check_dataset(clean / "got10k" / "val") == []
    assert main(["data", "check", str(clean)]) == 0
    assert "ok" in capsys.readouterr().out


@pytest.mark.parametrize("case, expect", [
    ("missing_frame", f"{SEQ}/00000004.jpg: missing frame"),
    ("corrupt_frame", f"{SEQ}/00000002.jpg: corrupt image"),
    ("empty_frame", f"{SEQ}/00000002.jpg: empty file"),
    ("columns", f"{SEQ}/groundtruth.txt:3: expected 4 values, got 5"),
    ("nan", f"{SEQ}/groundtruth.txt:5: NaN"),
    ("text", f"{SEQ}/groundtruth.txt:6: not a number"),
    ("size", f"{SEQ}/groundtruth.txt:7: non-positive box size"),
    ("fewer_frames", "fewer frames"),
    ("empty_split", "val/list.txt: empty split"),
    ("no_list", "test/list.txt: file not found"),
    ("missing_seq", "GOT-10k_Train_000099: sequence folder listed in list.txt does not exist"),
    ("cover", f"{SEQ}/cover.label:2: label 9 not in 0..8"),
    ("labels_length", f"{SEQ}/absence.label: "),
    ("meta", f"{SEQ}/meta_info.ini: no valid 'resolution"),
    ("test_rows", "test split: expected only the first frame's box"),
    ("image_class", "imagenet/val/star: class folder without images"),
])
def test_each_bad_input_is_reported_with_file_and_line(copy, case, expect):
    seq = copy / "got10k" / "train" / SEQ
    gt = seq / "groundtruth.txt"
    n = len(gt.read_text().splitlines())
    if case == "missing_frame":
        (seq / "00000004.jpg").unlink()
    elif case == "corrupt_frame":
        (seq / "00000002.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    elif case == "empty_frame":
        (seq / "00000002.jpg").write_bytes(b"")
    elif case == "columns":
        _edit_row(gt, 3, "1,2,3,4,5")
    elif case == "nan":
        _edit_row(gt, 5, "1,2,nan,4")
    elif case == "text":
        _edit_row(gt, 6, "1,2,three,4")
    elif case == "size":
        _edit_row(gt, 7, "10,20,0,5")
        _edit_row(seq / "absence.label", 7, "0")
    elif case == "fewer_frames":
        gt.write_text(gt.read_text() + "1,1,5,5\n")
        for lab in ("absence", "cover", "cut_by_image"):
            p = seq / f"{lab}.label"
            p.write_text(p.read_text() + "0\n")
    elif case == "empty_split":
        (copy / "got10k" / "val" / "list.txt").write_text("")
    elif case == "no_list":
        (copy / "got10k" / "test" / "list.txt").unlink()
    elif case == "missing_seq":
        p = copy / "got10k" / "train" / "list.txt"
        p.write_text(p.read_text() + "GOT-10k_Train_000099\n")
    elif case == "cover":
        _edit_row(seq / "cover.label", 2, "9")
    elif case == "labels_length":
        (seq / "absence.label").write_text("0\n" * (n - 1))
    elif case == "meta":
        (seq / "meta_info.ini").write_text("[METAINFO]\nurl: x\n")
    elif case == "test_rows":
        p = copy / "got10k" / "test" / "GOT-10k_Test_000001" / "groundtruth.txt"
        p.write_text(p.read_text() * 2)
    elif case == "image_class":
        for f in (copy / "imagenet" / "val" / "star").iterdir():
            f.unlink()
    problems = [str(p) for p in check_dataset(copy)]
    assert any(expect in p for p in problems), problems


def test_every_problem_is_reported_at_once_by_the_cli(copy, capsys):
    seq = copy / "got10k" / "train" / SEQ
    (seq / "00000004.jpg").unlink()
    _edit_row(seq / "groundtruth.txt", 3, "1,2,3")
    _edit_row(copy / "got10k" / "val" / "GOT-10k_Val_000002" / "groundtruth.txt", 2, "1,2,nan,4")
    (copy / "imagenet" / "train" / "ring" / "ring_00001.JPEG").write_bytes(b"junk")
    assert main(["data", "check", str(copy)]) == 1
    out = capsys.readouterr()
    lines = out.out.splitlines()
    assert any("00000004.jpg: missing frame" in s for s in lines)
    assert any(f"{SEQ}/groundtruth.txt:3: expected 4 values" in s for s in lines)
    assert any("GOT-10k_Val_000002/groundtruth.txt:2: NaN" in s for s in lines)
    assert any("ring_00001.JPEG: corrupt image" in s for s in lines)
    assert "problem(s)" in out.err


def test_absent_frames_may_have_empty_boxes(copy):
    seq = copy / "got10k" / "train" / SEQ
    _edit_row(seq / "groundtruth.txt", 4, "0,0,0,0")
    _edit_row(seq / "absence.label", 4, "1")
    _edit_row(seq / "cover.label", 4, "0")
    assert check_dataset(copy / "got10k") == []


def test_unknown_layout_and_missing_root(tmp_path):
    assert "not found" in str(check_dataset(tmp_path / "nope")[0])
    (tmp_path / "x.txt").write_text("hello")
    assert "no dataset layout recognised" in str(check_dataset(tmp_path)[0])


def test_opencv_decode_gives_rgb(tmp_path):
    bgr = np.zeros((8, 8, 3), np.uint8)
    bgr[..., 2] = 255  # red in OpenCV's BGR order
    cv2.imwrite(str(tmp_path / "red.png"), bgr)
    rgb = fs.read_image(str(tmp_path / "red.png"))
    assert rgb[0, 0].tolist() == [255, 0, 0]
    with pytest.raises(fs.DataError, match="red.jpg: file not found"):
        fs.read_image(str(tmp_path / "red.jpg"))


def test_quick_check_finds_missing_and_empty_frames_without_decoding(copy):
    seq = copy / "got10k" / "train" / SEQ
    (seq / "00000004.jpg").unlink()
    (seq / "00000002.jpg").write_bytes(b"")
    (seq / "00000003.jpg").write_bytes(b"junk")
    quick = [str(p) for p in check_dataset(copy / "got10k", decode=False)]
    assert any("00000004.jpg: missing frame" in p for p in quick)
    assert any("00000002.jpg: empty file" in p for p in quick)
    assert not any("00000003.jpg" in p for p in quick)  # corrupt content needs decode=True
    assert any("00000003.jpg: corrupt image" in str(p) for p in check_dataset(copy / "got10k"))
