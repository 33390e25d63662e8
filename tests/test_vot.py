"""VOT short-term (issue 21): regions, the supervised experiment, accuracy, robustness and
EAO on hand-made sequences whose figures are known by construction, and the same numbers
as the VOT toolkit on the same result files (when its environment, .venv-vot, exists)."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

from lighttrack.tracker import vot

ROOT = Path(__file__).resolve().parents[1]
TOOLKIT = ROOT / ".venv-vot" / "bin" / "python"


def _seq(n: int, polygon: bool = False, size=(200, 150)) -> vot.VotSequence:
    """A target moving right by 1 px a frame; ground truth as boxes or as their corners."""
    boxes = [np.array([20.0 + k, 30.0, 40.0, 30.0]) for k in range(n)]
    regions = [np.array([[x, y], [x + w - 1, y], [x + w - 1, y + h - 1], [x, y + h - 1]]) if polygon else
               np.array([x, y, w, h]) for x, y, w, h in boxes]
    tags = {"occlusion": np.arange(n) % 2 == 0}
    return vot.VotSequence("hand", [f"f{k}" for k in range(n)], regions, size, tags)


class Scripted:
    """A tracker that returns the ground truth, except at ``lost`` frames, where it jumps
    far away (a failure); frames are their indices (read_frame is the identity)."""

    def __init__(self, seq: vot.VotSequence, lost: set[int]):
        self.seq, self.lost = seq, lost
        seq.read_frame = lambda k: k

    def initialize(self, frame: int, box) -> None:
        pass

    def track(self, frame: int):
        box = vot.region_box(self.seq.regions[frame])
        return (box + [150, 100, 0, 0] if frame in self.lost else box), 1.0


# -- regions ------------------------------------------------------------------------------
def test_pixel_overlap_of_boxes_and_polygons():
    a = np.array([0.0, 0, 10, 10])
    assert vot.overlap(a, a) == 1.0
    assert vot.overlap(a, np.array([5.0, 0, 10, 10])) == pytest.approx(50 / 150)  # 5x10 of 15x10 pixels
    assert vot.overlap(a, np.array([20.0, 20, 5, 5])) == 0.0
    corners = np.array([[0.0, 0], [9, 0], [9, 9], [0, 9]])  # the same 10x10 pixels as a polygon
    assert vot.overlap(a, corners) == 1.0
    # bounded by the image: the part outside does not count
    assert vot.overlap(np.array([-10.0, 0, 20, 10]), np.array([0.0, 0, 10, 10]), size=(100, 100)) == 1.0


def test_a_rotated_rectangle_becomes_a_box_of_the_same_centre_and_area():
    w, h, t = 40.0, 20.0, np.deg2rad(30)
    corners = np.array([[-w / 2, -h / 2], [w / 2, -h / 2], [w / 2, h / 2], [-w / 2, h / 2]])
    poly = corners @ np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]]).T + [100, 50]
    x, y, bw, bh = vot.region_box(poly)
    assert (x + (bw - 1) / 2, y + (bh - 1) / 2) == pytest.approx((100, 50))
    assert (bw - 1) * (bh - 1) == pytest.approx(w * h)
    with pytest.raises(vot.DataError, match="5 values"):
        vot.parse_region("1,2,3,4,5", "gt.txt:3")


# -- the experiment ----------------------------------------------------------------------------
def test_failures_reinitialise_five_frames_later_and_accuracy_skips_ten():
    seq = _seq(60)
    traj = vot.run_supervised(Scripted(seq, {10, 25}), seq)
    codes = {k: e for k, e in enumerate(traj) if isinstance(e, int)}
    assert codes == {0: 1, 10: 2, **{k: 0 for k in range(11, 15)}, 15: 1, 25: 2, **{k: 0 for k in range(26, 30)},
                     30: 1}
    ov = vot.sequence_overlaps(traj, seq)
    acc, counted = vot.accuracy(traj, ov)
    # left out: 0-9, 10, 11-14, 15-24, 25, 26-29, 30-39 -> frames 40..59 counted, all exact
    assert counted == 20 and acc == 1.0
    s = vot.score_vot({"hand": traj}, _Dataset([seq]))
    assert s["failures"] == 2 and s["robustness"] == 2 and s["accuracy"] == 1.0


def test_a_failure_within_five_frames_of_the_end_has_no_new_start():
    seq = _seq(40)
    traj = vot.run_supervised(Scripted(seq, {37}), seq)
    assert traj[37] == vot.FAILURE and traj[38:] == [0, 0]
    parts = vot.fragments(traj, vot.sequence_overlaps(traj, seq))
    assert [(len(o), ok) for o, ok in parts] == [(37, False)]


def test_eao_of_known_fragments():
    # One fragment tracked perfectly to the end of a 300-frame sequence: 1 at every length.
    perfect = np.r_[0.0, np.ones(299)]  # frame 0 is the initialisation (overlap 0, not averaged)
    curve = vot.eao_curve([(perfect, True)])
    assert curve[1:] == pytest.approx(1.0)
    # Plus one that fails after 100 frames: 1 up to length 99, then 99 / length (zeros after).
    failed = np.r_[0.0, np.ones(99)]
    curve = vot.eao_curve([(perfect, True), (failed, False)])
    lengths = np.arange(46, 292)
    expected = np.mean([(1 + (1 if j < 100 else 99 / j)) / 2 for j in lengths])
    assert np.mean(curve[46:292]) == pytest.approx(expected)


def test_tags_split_accuracy_and_failures():
    seq = _seq(80)
    traj = vot.run_supervised(Scripted(seq, {40, 61}), seq)  # 40 is tagged (even), 61 is not
    s = vot.score_vot({"hand": traj}, _Dataset([seq]))
    assert s["tags"]["occlusion"]["failures"] == 1 and s["tags"]["occlusion"]["accuracy"] == 1.0


def test_the_baseline_stays_at_each_start_box(tmp_path):
    seq = _seq(100)
    stay = vot.run_supervised(None, seq)  # the target moves 1 px a frame: IoU 0 after 40 frames
    assert stay[0] == vot.INITIALIZATION and stay[40] == vot.FAILURE and stay[45] == vot.INITIALIZATION
    vot.write_trajectory(tmp_path, "hand", stay)
    back = vot.read_trajectory(tmp_path, "hand")
    assert [isinstance(e, int) for e in back] == [isinstance(e, int) for e in stay]
    assert (tmp_path / "hand" / "hand_001.txt").read_text().splitlines()[:2] == ["1", "20.0000,30.0000,40.0000,30.0000"]


class _Dataset:
    def __init__(self, seqs):
        self.seqs, self.sequence_names = seqs, [s.name for s in seqs]

    def __len__(self):
        return len(self.seqs)

    def sequence(self, i):
        return self.seqs[i]


# -- the layout and the toolkit ----------------------------------------------------------------
@pytest.fixture(scope="module")
def vot_set(tmp_path_factory):
    """3 rendered sequences of 300-320 frames in the VOT layout (boxes and rotated polygons),
    with the result files of a noisy tracker that fails now and then, and of the baseline."""
    from lighttrack.data.synth_vot import write_vot

    root = tmp_path_factory.mktemp("vot")
    write_vot(root / "sequences", sequences=3, frames=(300, 320))
    ds = vot.VotDataset(root / "sequences")
    rng = np.random.default_rng(0)
    for i in range(len(ds)):
        seq = ds.sequence(i)
        seq.read_frame = lambda k: k

        class Noisy:
            def initialize(self, k, box):
                pass

            def track(self, k, seq=seq):
                box = vot.region_box(seq.regions[k]) + rng.normal(0, 3, 4) * [1, 1, 0.5, 0.5]
                return (box + [150, 100, 0, 0] if rng.random() < 0.012 else box), 1.0

        vot.write_trajectory(root / "noisy", seq.name, vot.run_supervised(Noisy(), seq))
        vot.write_trajectory(root / "stay", seq.name, vot.run_supervised(None, seq))
    return root, ds


def test_the_vot_layout_reads_back(vot_set):
    root, ds = vot_set
    seq = ds.sequence(1)  # written as rotated rectangles
    assert len(ds) == 3 and seq.regions[0].shape == (4, 2) and ds.sequence(0).regions[0].shape == (4,)
    assert len(seq.frames) == len(seq.regions) >= 300 and seq.size == (320, 240)
    assert set(seq.tags) == {"occlusion", "size_change", "motion_change"}
    assert seq.read_frame(0).shape == (240, 320, 3)


@pytest.mark.skipif(not TOOLKIT.exists(), reason="the VOT toolkit's environment .venv-vot is not installed "
                                                 "(bash scripts/install_vot.sh)")
@pytest.mark.parametrize("tracker", ["noisy", "stay"])
def test_accuracy_robustness_and_eao_equal_the_vot_toolkits(vot_set, tracker):
    root, ds = vot_set
    out = subprocess.run([str(TOOLKIT), str(ROOT / "scripts" / "vot_toolkit_scores.py"), str(root / "sequences"),
                          str(root / tracker)], capture_output=True, text=True, timeout=600, check=True)
    theirs = json.loads(out.stdout.strip().splitlines()[-1])
    trajectories = {name: vot.read_trajectory(root / tracker, name) for name in ds.sequence_names}
    ours = vot.score_vot(trajectories, ds)
    for i, name in enumerate(ds.sequence_names):
        seq = ds.sequence(i)
        assert vot.sequence_overlaps(trajectories[name], seq).tolist() == theirs["sequences"][name]["overlaps"]
        assert sum(isinstance(e, int) and e == vot.FAILURE for e in trajectories[name]) == theirs["sequences"][name]["failures"]
    assert ours["accuracy"] == pytest.approx(theirs["accuracy"], abs=1e-9)
    assert ours["robustness"] == pytest.approx(theirs["robustness"], abs=1e-9)
    assert ours["eao"] == pytest.approx(theirs["eao"], abs=1e-6)  # the toolkit sums in float32
    assert ours["failures"] > 0 and ours["eao_interval_covered"]


def test_evaluate_protocol_vot_writes_toolkit_results_and_the_baseline(tmp_path, capsys):
    from lighttrack import cli
    from lighttrack.data.synth_vot import write_vot

    write_vot(tmp_path / "ws" / "sequences", sequences=2, frames=(40, 50))  # a toolkit workspace's layout
    code = cli.main(["evaluate", "--protocol", "vot", "--dataset", str(tmp_path / "ws"), "--max-sequences", "1",
                     "--arch", "lighttrack-mobile", "--out", str(tmp_path / "res")])
    out = capsys.readouterr().out
    assert code == 0 and "a tracker that stays at its start box: EAO" in out
    assert "shorter than the EAO interval" in out
    ds = vot.open_vot(tmp_path / "ws")
    name = ds.sequence_names[0]
    lines = (tmp_path / "res" / name / f"{name}_001.txt").read_text().splitlines()
    assert lines[0] == "1" and len(lines) == len(ds.sequence(0))
    scores = json.loads((tmp_path / "res" / "scores.json").read_text())
    assert {"eao", "accuracy", "robustness", "baseline_eao", "beats_baseline"} <= set(scores)
    assert (tmp_path / "res" / "eao.png").is_file()
