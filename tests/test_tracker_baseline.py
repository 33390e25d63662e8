"""The AO of a tracker that stays at the first box, beside every AO, on the same frames."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lighttrack.tracker import PRESETS, Tracker
from lighttrack.tracker.evaluation import baseline_line, evaluate_split, open_split

from tracker_oracle import HandDataset, HandSequence, OracleNet, hand_sequences

synth = pytest.importorskip("lighttrack.data.synth")


class StayTracker(Tracker):
    """Answers the first box for every frame: its AO is the baseline by definition."""

    def __init__(self):
        self.timings = {}

    def initialize(self, image, box):
        self.first = np.asarray(box, np.float64)

    def track(self, image):
        return self.first.copy(), 1.0


@pytest.fixture(scope="module")
def embedded(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("embedded")
    synth.write(root, seed=0, size="tiny", workers=1)
    return root


def _with_absent_frames() -> HandDataset:
    seqs = []
    for seq in hand_sequences(30):
        absent = np.zeros(len(seq.boxes), bool)
        absent[10:16] = True  # not scored, by either
        seqs.append(HandSequence(seq.name, seq.boxes, seq.frame_size, absent))
    return HandDataset(seqs)


@pytest.mark.parametrize("protocol", ["got10k", "otb"])
def test_a_tracker_that_stays_put_scores_exactly_the_baseline(embedded, tmp_path, protocol):
    for name, dataset in (("embedded", open_split(embedded, "val")), ("absent", _with_absent_frames())):
        s = evaluate_split(StayTracker(), dataset, tmp_path / protocol / name, protocol=protocol, plot=False)
        key = "ao" if protocol == "got10k" else "success_auc"
        assert s[key] == s[f"baseline_{key}"] and not s["beats_baseline"], (name, s)


def test_absent_frames_count_for_the_baseline_as_for_the_tracker(tmp_path):
    full = HandDataset(hand_sequences(30))
    partial = _with_absent_frames()
    a = evaluate_split(StayTracker(), full, tmp_path / "a", protocol="got10k", plot=False)
    b = evaluate_split(StayTracker(), partial, tmp_path / "b", protocol="got10k", plot=False)
    # frames 10-15, where a drifting target is far from its first box, no longer count
    assert b["baseline_ao"] > a["baseline_ao"] and b["baseline_ao"] == b["ao"]


def test_a_tracker_that_follows_the_target_beats_it_and_the_line_says_so(embedded, tmp_path):
    dataset = open_split(embedded, "val")
    oracle = OracleNet([dataset.sequence(i).boxes for i in range(len(dataset))])
    tracker = Tracker(oracle, PRESETS["vot2019"])
    oracle.tracker = tracker
    s = evaluate_split(tracker, dataset, tmp_path / "oracle", plot=False)
    assert s["beats_baseline"] and s["ao"] > s["baseline_ao"] + 0.3
    assert "beats it" in baseline_line(s) and f"{s['baseline_ao']:.4f}" in baseline_line(s)
    stay = evaluate_split(StayTracker(), dataset, tmp_path / "stay", plot=False)
    assert "does NOT beat it" in baseline_line(stay)
    assert s["baseline_ao"] == stay["ao"]  # the same frames, whoever is scored


def test_search_rows_carry_the_baseline_of_the_cut_frames(embedded, tmp_path):
    """val_frames cuts every sequence: the baseline is scored on the cut frames too."""
    import torch

    from lighttrack.arch import resolve
    from lighttrack.models import TrackSupernet
    from lighttrack.search.evaluate import CandidateEvaluator, EvalConfig

    got = str(embedded / "got10k")
    cfg = dict(val_root=got, recalibrate_root=got, recalibrate_batches=1, recalibrate_batch_size=2, backend="torch")
    torch.manual_seed(0)
    net = TrackSupernet().eval()
    cut = CandidateEvaluator(net, "sid", EvalConfig(**cfg, val_frames=6))
    row = cut.evaluate(resolve("smallest"))
    stay_cut = evaluate_split(StayTracker(), cut.val.reader, tmp_path / "cut", protocol="got10k", plot=False)
    stay_full = evaluate_split(StayTracker(), open_split(embedded, "val"), tmp_path / "full", plot=False)
    assert row["baseline_ao"] == stay_cut["ao"] != stay_full["ao"]


def test_pipeline_summary_says_plainly_when_the_baseline_is_not_beaten():
    from devcluster.pipeline import _versus

    assert "does NOT beat it" in _versus(0.100, 0.103)
    assert "beats it by 0.0500" in _versus(0.153, 0.103)
    assert _versus(0.2, None) == ""


def test_per_difficulty_scores_and_their_baselines(tmp_path):
    """A mixed embedded set is scored per difficulty level too, each level's AO beside the
    stay-at-first-box AO of the same sequences; a set of one level has no such figures."""
    root = tmp_path / "mixed"
    synth.write(root, seed=1, size=synth.SynthSize(train=1, val=6, test=1, frames=(12, 16), cls_train=1, cls_val=1),
                difficulty="mixed")
    dataset = open_split(root, "val")
    oracle = OracleNet([dataset.sequence(i).boxes for i in range(len(dataset))])
    tracker = Tracker(oracle, PRESETS["vot2019"])
    oracle.tracker = tracker
    s = evaluate_split(tracker, dataset, tmp_path / "oracle", plot=False)
    stay = evaluate_split(StayTracker(), dataset, tmp_path / "stay", plot=False)
    assert list(s["by_difficulty"]) == ["easy", "medium", "hard"]
    for level, g in s["by_difficulty"].items():
        assert g["sequences"] == 2
        assert g["baseline_ao"] == stay["by_difficulty"][level]["ao"] == stay["by_difficulty"][level]["baseline_ao"]
        assert g["ao"] > g["baseline_ao"], level
    plain = tmp_path / "plain"
    synth.write(plain, seed=1, size=synth.SynthSize(train=1, val=2, test=1, frames=(12, 16), cls_train=1, cls_val=1))
    assert "by_difficulty" not in evaluate_split(StayTracker(), open_split(plain, "val"), tmp_path / "p", plot=False)
