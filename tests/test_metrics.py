"""Metrics on hand-made result files, and equality with the official got10k toolkit."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from lighttrack.tracker import metrics
from lighttrack.tracker.evaluation import read_results, score_results, write_results

GT = np.array([20.0, 10, 20, 20])


def test_iou_by_hand():
    a = np.array([[0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 10, 10]], float)
    b = np.array([[0, 0, 10, 10], [5, 0, 10, 10], [20, 20, 5, 5], [0, 0, 20, 20]], float)
    np.testing.assert_allclose(metrics.iou(a, b), [1, 50 / 150, 0, 0.25])
    with pytest.raises(ValueError, match="differ in length"):
        metrics.iou(a, b[:2])
    with pytest.raises(ValueError, match=r"\(N, 4\)"):
        metrics.iou(a[:, :3], b[:, :3])


def test_clip_to_image_follows_the_toolkit():
    boxes = np.array([[90, 10, 20, 20], [-10, 5, 30, 10], [50, 70, 10, 20]], float)
    np.testing.assert_allclose(metrics.clip_to_image(boxes, (100, 80)),
                               [[90, 10, 10, 20], [0, 5, 30, 10], [50, 70, 10, 10]])


def _hand_results():
    """Two sequences in a 100 x 80 image with IoUs known by hand (first frame = init)."""
    gt_a = np.array([GT, GT, GT, GT, [90, 10, 10, 20]])
    pred_a = np.array([GT, GT, GT + [10, 0, 0, 0], [0, 0, 5, 5], [90, 10, 20, 20]])
    absent_a = np.array([0, 0, 0, 1, 0], bool)  # frame 3 absent: not scored
    # frame 1: 1; frame 2: 200/600; frame 4 sticks out right -> clipped to the gt: 1
    gt_b = np.array([GT, GT, GT])
    pred_b = np.array([GT, GT + [0, 5, 0, 0], [60, 50, 10, 10]])
    absent_b = np.zeros(3, bool)
    # frame 1: 300/500 = 0.6; frame 2: 0
    ious = [1, 1 / 3, 1, 0.6, 0]
    return [("seq_a", pred_a, gt_a, absent_a), ("seq_b", pred_b, gt_b, absent_b)], np.array(ious)


def test_got10k_scores_by_hand():
    seqs, expected = _hand_results()
    pooled = np.concatenate([metrics.got10k_sequence_ious(p, g, a, (100, 80)) for _, p, g, a in seqs])
    np.testing.assert_allclose(pooled, expected, atol=1e-12)
    s = metrics.got10k_scores(pooled)
    assert s["ao"] == pytest.approx(expected.mean())
    assert s["sr50"] == pytest.approx(3 / 5)  # 1, 1, 0.6
    assert s["sr75"] == pytest.approx(2 / 5)
    assert s["success_curve"][0] == pytest.approx(4 / 5)  # IoU > 0
    with pytest.raises(ValueError, match="no frames"):
        metrics.got10k_scores(np.zeros(0))


def test_otb_scores_by_hand():
    gt = np.array([GT, GT, GT])
    pred = np.array([GT, GT + [10, 0, 0, 0], GT + [0, 30, 0, 0]])  # IoU 1, 1/3, 0; errors 0, 10, 30
    c = metrics.otb_sequence_curves(pred, gt)
    np.testing.assert_allclose(c["success"][[0, 6, 7, 20]], [2 / 3, 2 / 3, 1 / 3, 0])  # thr 0, .3, .35, 1
    assert c["precision"][20] == pytest.approx(2 / 3)
    assert c["norm_precision"][20] == pytest.approx(1 / 3)  # 0, 0.5, 1.5 gt sizes
    # absent frames are dropped
    c2 = metrics.otb_sequence_curves(pred, gt, absent=[0, 0, 1])
    assert c2["precision"][20] == pytest.approx(1.0)
    s = metrics.otb_scores([c, c2])
    assert s["success_auc"] == pytest.approx(np.mean((c["success"] + c2["success"]) / 2))
    assert s["precision"] == pytest.approx((2 / 3 + 1) / 2)


def test_result_files_round_trip_in_official_format(tmp_path):
    boxes = np.array([[1.23456, 2, 3, 4], [5, 6, 7, 8.5]])
    write_results(tmp_path, "GOT-10k_Val_000001", boxes, np.array([0.1, 0.02]))
    text = (tmp_path / "GOT-10k_Val_000001" / "GOT-10k_Val_000001_001.txt").read_text()
    assert text.splitlines() == ["1.235,2.000,3.000,4.000", "5.000,6.000,7.000,8.500"]
    b, t = read_results(tmp_path, "GOT-10k_Val_000001")
    np.testing.assert_allclose(b, [[1.235, 2, 3, 4], [5, 6, 7, 8.5]])
    np.testing.assert_allclose(t, [0.1, 0.02])
    with pytest.raises(FileNotFoundError, match="GOT-10k_Val_000002"):
        read_results(tmp_path, "GOT-10k_Val_000002")


# -- a tiny GOT-10k val split on disk, scored by us and by the official toolkit ----------------
def make_got10k(root: Path, seqs, size=(100, 80)) -> Path:
    """Write ``root/val`` in the GOT-10k layout; seqs = [(name, gt (N,4), absent (N,))]."""
    split = root / "val"
    split.mkdir(parents=True)
    (split / "list.txt").write_text("\n".join(s[0] for s in seqs) + "\n")
    w, h = size
    for name, gt, absent in seqs:
        d = split / name
        d.mkdir()
        for k in range(len(gt)):
            cv2.imwrite(str(d / f"{k + 1:08d}.jpg"), np.full((h, w, 3), 40 * k % 255, np.uint8))
        np.savetxt(d / "groundtruth.txt", gt, fmt="%.4f", delimiter=",")
        np.savetxt(d / "absence.label", absent.astype(int), fmt="%d")
        np.savetxt(d / "cover.label", np.where(absent, 0, 8), fmt="%d")
        np.savetxt(d / "cut_by_image.label", np.zeros(len(gt), int), fmt="%d")
        (d / "meta_info.ini").write_text(f"[METAINFO]\nobject_class: thing\nresolution: ({w}, {h})\n")
    return root


def toolkit_report(root: Path, results: Path, name: str) -> dict:
    """Run got10k.experiments.ExperimentGOT10k.report on ``results/GOT-10k/<name>``."""
    import matplotlib
    matplotlib.use("Agg")
    experiments = pytest.importorskip("got10k.experiments")
    exp = experiments.ExperimentGOT10k(str(root), subset="val", result_dir=str(results),
                                       report_dir=str(results.parent / "reports"))
    return exp.report([name])[name]["overall"]


def test_scores_equal_the_official_toolkit_on_hand_made_files(tmp_path):
    readers = pytest.importorskip("lighttrack.data.readers")
    seqs, expected = _hand_results()
    root = make_got10k(tmp_path / "got10k", [(n, g, a) for n, _, g, a in seqs])
    out = tmp_path / "results" / "GOT-10k" / "ours"
    rng = np.random.default_rng(0)
    for name, pred, _, _ in seqs:
        write_results(out, name, pred, rng.uniform(0.001, 0.05, len(pred)))
    ours = score_results(out, readers.Got10k(str(root), "val"))
    theirs = toolkit_report(root, tmp_path / "results", "ours")
    assert ours["ao"] == pytest.approx(expected.mean(), abs=1e-12)
    assert ours["ao"] == pytest.approx(theirs["ao"], abs=1e-12)
    assert ours["sr50"] == pytest.approx(theirs["sr"], abs=1e-12)
    assert ours["sr75"] == pytest.approx(theirs["succ_curve"][75], abs=1e-12)
    assert ours["fps"] == pytest.approx(theirs["speed_fps"], rel=1e-9)
    np.testing.assert_allclose(ours["success_curve"], theirs["succ_curve"], atol=1e-12)
    saved = json.loads((out / "scores.json").read_text())
    assert {"ao", "sr50", "sr75", "fps"} <= set(saved) and saved["ao"] == ours["ao"]
    assert (out / "success.png").stat().st_size > 1000


def test_otb_curves_equal_the_toolkit_otb_experiment():
    otb = pytest.importorskip("got10k.experiments.otb")
    rng = np.random.default_rng(1)
    gt = np.column_stack([rng.uniform(0, 200, (50, 2)), rng.uniform(10, 60, (50, 2))])
    pred = gt + rng.normal(0, 8, gt.shape)
    exp = otb.ExperimentOTB.__new__(otb.ExperimentOTB)
    exp.nbins_iou, exp.nbins_ce = 21, 51
    from got10k.utils.metrics import center_error, rect_iou
    succ, prec = exp._calc_curves(rect_iou(pred.copy(), gt.copy()), center_error(pred, gt))
    ours = metrics.otb_sequence_curves(pred, gt)
    np.testing.assert_allclose(ours["success"], succ, atol=1e-12)
    np.testing.assert_allclose(ours["precision"], prec, atol=1e-12)
