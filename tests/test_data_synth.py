"""The embedded dataset: deterministic per seed, honest labels, hard enough to need tracking."""
from __future__ import annotations

import filecmp
from pathlib import Path

import numpy as np
import pytest

from lighttrack.cli import main
from lighttrack.data import synth
from lighttrack.data.readers import Got10k


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    x1, y1 = np.maximum(a[:, 0], b[:, 0]), np.maximum(a[:, 1], b[:, 1])
    x2 = np.minimum(a[:, 0] + a[:, 2], b[:, 0] + b[:, 2])
    y2 = np.minimum(a[:, 1] + a[:, 3], b[:, 1] + b[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    return inter / (a[:, 2] * a[:, 3] + b[:, 2] * b[:, 3] - inter)


@pytest.fixture(scope="module")
def written(tmp_path_factory) -> tuple[Path, Path]:
    a, b = (tmp_path_factory.mktemp(n) for n in "ab")
    assert main(["data", "synth", "--out", str(a), "--seed", "4", "--size", "tiny", "--workers", "1"]) == 0
    synth.write(b, seed=4, size="tiny", workers=2)  # worker count must not change the data
    return a, b


def test_same_seed_same_bytes_other_seed_differs(written):
    a, b = written
    seq = Path("got10k/val/GOT-10k_Val_000002")
    for name in ("groundtruth.txt", "cover.label", "absence.label", "00000005.jpg", "meta_info.ini"):
        assert filecmp.cmp(a / seq / name, b / seq / name, shallow=False), name
    assert filecmp.cmp(a / "imagenet/val/star/star_00002.JPEG", b / "imagenet/val/star/star_00002.JPEG", shallow=False)
    _, box4, _ = synth.render_sequence(np.random.default_rng((4, 1, 1)), 20)
    _, box5, _ = synth.render_sequence(np.random.default_rng((5, 1, 1)), 20)
    assert not np.allclose(box4, box5)


def test_layout_and_sizes(written):
    a, _ = written
    size = synth.SIZES["tiny"]
    for split in ("train", "val", "test"):
        names = (a / "got10k" / split / "list.txt").read_text().split()
        assert len(names) == getattr(size, split)
    test_seq = a / "got10k" / "test" / "GOT-10k_Test_000001"
    assert len((test_seq / "groundtruth.txt").read_text().splitlines()) == 1
    assert not (test_seq / "cover.label").exists()
    assert len(list((a / "imagenet" / "train").iterdir())) == len(synth.SHAPES)


def test_labels_are_consistent(written):
    a, _ = written
    for split in ("train", "val"):
        r = Got10k(a / "got10k", split)
        for i in range(len(r)):
            m, box = r.meta(i), r.get_sequence_info(i)["bbox"]
            np.testing.assert_array_equal(m["absence"], m["cover"] == 0)
            assert ((m["cover"] >= 0) & (m["cover"] <= 8)).all()
            assert (box[:, 2:] > 0).all() and (box[:, :2] >= 0).all()
            assert (box[:, 0] + box[:, 2] <= 320 + 1e-6).all() and (box[:, 1] + box[:, 3] <= 240 + 1e-6).all()
            touches = (box[:, 0] <= 1e-3) | (box[:, 1] <= 1e-3) | (box[:, 0] + box[:, 2] >= 320 - 1e-3) \
                | (box[:, 1] + box[:, 3] >= 240 - 1e-3)
            assert not (m["cut_by_image"].astype(bool) & ~touches).any()


def test_cover_bins():
    assert [synth.cover_label(v) for v in (0.0, 0.005, 0.1, 0.2, 0.5, 0.89, 0.95, 1.0)] == [0, 0, 1, 2, 4, 6, 7, 8]


def test_sequences_need_tracking_and_have_occlusion():
    # The bars of the issue on 5 default-length sequences rendered in memory (no JPEG).
    covers, ious = [], []
    for k in range(5):
        rng = np.random.default_rng((11, 1, k))
        n = int(rng.integers(60, 101))
        _, boxes, labels = synth.render_sequence(rng, n)
        keep = labels["cover"][1:] > 0
        ious.append(_iou(boxes[1:], np.repeat(boxes[:1], n - 1, 0))[keep])
        covers.append(labels["cover"])
    c = np.concatenate(covers)
    assert np.concatenate(ious).mean() <= 0.35  # a tracker that stays at the first box
    assert ((c > 0) & (c < 8)).mean() >= 0.10 and (c == 0).mean() >= 0.02


def test_bad_size_is_an_error(tmp_path, capsys):
    assert main(["data", "synth", "--out", str(tmp_path), "--size", "huge"]) == 2
    assert "--size must be one of" in capsys.readouterr().err


def test_difficulty_is_a_parameter(tmp_path):
    """medium is the set as first written; easy moves less, has no look-alike distractors and
    a blurred background; mixed writes the levels by turns; an unknown level is refused."""
    rng = lambda: np.random.default_rng((7, 1, 3))  # noqa: E731
    default = synth.render_sequence(rng(), 30)
    medium = synth.render_sequence(rng(), 30, difficulty=synth.DIFFICULTIES["medium"])
    assert np.array_equal(default[1], medium[1]) and np.array_equal(default[0][9], medium[0][9])

    def motion_and_edges(level: str) -> tuple[float, float]:
        moved, edges = [], []
        for k in range(4):
            images, boxes, _ = synth.render_sequence(np.random.default_rng((7, 1, k)), 30,
                                                     difficulty=synth.DIFFICULTIES[level])
            centre = boxes[:, :2] + boxes[:, 2:] / 2
            moved.append(np.linalg.norm(np.diff(centre, axis=0), axis=1).mean())
            edges.append(np.abs(np.diff(images[0].astype(np.float32), axis=1)).mean())
        return float(np.mean(moved)), float(np.mean(edges))

    easy, medium, hard = (motion_and_edges(level) for level in ("easy", "medium", "hard"))
    assert easy[0] < medium[0] < hard[0]  # target speed
    assert easy[1] < medium[1] < hard[1]  # background clutter: image gradients
    synth.write(tmp_path / "m", seed=0, size="tiny", difficulty="mixed")
    levels = [Got10k(str(tmp_path / "m/got10k"), "val").meta(i)["difficulty"] for i in range(3)]
    assert levels == ["easy", "medium", "hard"]
    assert main(["data", "synth", "--out", str(tmp_path / "x"), "--size", "tiny", "--difficulty", "extreme"]) == 2


def test_unlike_check_sequences(tmp_path):
    """`lighttrack data unlike`: GOT-10k val sequences a reader and `data check` accept, with a
    target that moves in straight runs and turns (so staying put loses it)."""
    assert main(["data", "unlike", "--out", str(tmp_path), "--sequences", "3"]) == 0
    assert main(["data", "check", str(tmp_path / "got10k")]) == 0
    val = Got10k(str(tmp_path / "got10k"), "val")
    assert len(val) == 3 and val.meta(0)["difficulty"] == "unlike"
    for i in range(3):
        seq = val.sequence(i)
        boxes = np.asarray(seq.boxes)
        assert len(seq.frames) == len(boxes) >= 60
        step = np.diff(boxes[:, :2] + boxes[:, 2:] / 2, axis=0)
        heading = np.arctan2(step[:, 1], step[:, 0])
        turns = np.abs(np.angle(np.exp(1j * np.diff(heading)))) > np.pi / 4
        assert turns.sum() >= 1  # an abrupt turn (or a bounce) at least once
        assert _iou(np.repeat(boxes[:1], len(boxes), 0), boxes).mean() < 0.6
