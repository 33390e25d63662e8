"""Tracker: presets, window, penalty, size update, template size, clamping, oracle AO."""
from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest

from lighttrack import config
from lighttrack.geometry import STRIDE, TEMPLATE_SIZE, context_size, grid_points
from lighttrack.tracker import PRESETS, Tracker, TrackerParams, load_params
from lighttrack.tracker.decode import decode, hanning_window, score_grid, size_change_penalty
from lighttrack.tracker.evaluation import run_sequence
from lighttrack.tracker.metrics import got10k_scores, got10k_sequence_ious

from tracker_oracle import OracleNet, hand_sequences


# -- parameters ------------------------------------------------------------------------------
def test_presets_hold_published_and_released_values():
    v, r = PRESETS["vot2019"], PRESETS["released"]
    assert (v.penalty_k, v.lr, v.window_influence) == (0.007, 0.616, 0.225)
    assert (r.penalty_k, r.window_influence, r.lr) == (0.062, 0.38, 0.765)
    assert load_params("released", ["lr=0.5"]).lr == 0.5
    assert load_params("released", ["lr=0.5"]).penalty_k == 0.062
    with pytest.raises(config.ConfigError, match="unknown key"):
        load_params("vot2019", ["learning_rate=0.5"])
    with pytest.raises(config.ConfigError, match="multiple of 16"):
        TrackerParams(search_size=250)


# -- hand-made maps --------------------------------------------------------------------------
def test_hanning_window_is_unnormalised_outer_product():
    for s in (16, 18):
        w = hanning_window(s)
        assert w.shape == (s, s)
        np.testing.assert_allclose(w, np.outer(np.hanning(s), np.hanning(s)))
        assert w.max() < 1.0 and w.min() == 0.0 and w.sum() > 1.0  # not normalised to sum 1


def test_penalty_values_by_hand():
    k = 0.1
    assert size_change_penalty(np.float64(40), np.float64(20), 40, 20, k) == pytest.approx(1.0)
    # twice the size, same ratio: s_c = 2, r_c = 1
    assert size_change_penalty(np.float64(80), np.float64(40), 40, 20, k) == pytest.approx(math.exp(-k))
    # same sz (square 30x30 -> sz 60; 40x20: p=30 -> sqrt(70*50)=59.16), ratio 2 -> 1: r_c = 2
    sz = lambda w, h: math.sqrt((w + (w + h) / 2) * (h + (w + h) / 2))
    expected = math.exp(-(2 * max(sz(30, 30) / sz(40, 20), sz(40, 20) / sz(30, 30)) - 1) * k)
    assert size_change_penalty(np.float64(30), np.float64(30), 40, 20, k) == pytest.approx(expected)


def _maps(s=16, peaks=(), box=(40, 40)):
    """cls logits with given (row, col, logit) peaks (else -6) and reg boxes of size ``box``."""
    cls = np.full((s, s), -6.0)
    for r, c, v in peaks:
        cls[r, c] = v
    reg = np.empty((4, s, s))
    reg[[0, 2]] = box[0] / 2
    reg[[1, 3]] = box[1] / 2
    return cls, reg


def _decide(cls, reg, last: float, params: TrackerParams, s: int = 16):
    """``decode`` of one pair of maps after a square ``last`` x ``last`` box, with the context
    that makes that box ``last`` crop px too (128 / (1 + 2 context) = last: scale_z = 1)
    -> (row, col), score, penalty, box."""
    p = dataclasses.replace(params, context=(TEMPLATE_SIZE / last - 1) / 2)
    d = decode(cls[None, None], reg[None], np.array([[500.0, 500.0]]), np.array([[last, last]], np.float64),
               np.array([[1e4, 1e4]]), score_grid(s, 256), p)
    return divmod(int(d.cell[0]), s), float(d.score[0]), float(d.penalty[0]), d.box[0]


def test_window_pulls_choice_to_the_centre():
    cls, reg = _maps(peaks=[(8, 8, 1.0), (1, 14, 3.0)])  # weaker peak at centre, stronger at corner
    assert _decide(cls, reg, 40, TrackerParams(window_influence=0.0))[0] == (1, 14)
    cell, score, _, _ = _decide(cls, reg, 40, TrackerParams(window_influence=0.4))
    assert cell == (8, 8) and score == pytest.approx(1 / (1 + math.exp(-1.0)))


def test_penalty_prefers_the_size_kept():
    cls, reg = _maps(peaks=[(8, 7, 2.0), (8, 9, 2.0)])
    reg[:, 8, 9] = 60  # cell (8, 9) regresses a 120 x 120 box, (8, 7) a 40 x 40 one
    p = TrackerParams(window_influence=0.0, penalty_k=0.5)
    cell, _, penalty, box = _decide(cls, reg, 40, p)
    assert cell == (8, 7) and penalty == pytest.approx(1.0)
    # last size 120 x 120: now the big box wins
    assert _decide(cls, reg, 120, p)[0] == (8, 9)
    # decoded box = grid point -/+ ltrb
    g = grid_points(16)
    np.testing.assert_allclose(box, [g[7] - 20, g[8] - 20, g[7] + 20, g[8] + 20])


# -- fixed-output nets for the update rules -------------------------------------------------
class FixedNet:
    """Answers every frame with the same maps; records the inputs it was given."""

    takes_raw_crops = False

    def __init__(self, cls, reg):
        self.cls, self.reg, self.inputs = cls, reg, []

    def template(self, z):
        self.inputs.append(("z", z))
        return np.zeros((1, 4, 8, 8), np.float32)

    def search(self, zf, x):
        self.inputs.append(("x", x))
        s = x.shape[-1] // STRIDE
        assert self.cls.shape[-1] == s, "map size must follow the crop size"
        return self.cls[None, None], self.reg[None]


def _frame(w=320, h=240, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_size_learning_rate_applied_once():
    # Centre cell predicts a box twice the current size (in crop px) at the centre.
    w0, h0 = 60.0, 40.0
    scale_z = TEMPLATE_SIZE / context_size(w0, h0)
    big = (2 * w0 * scale_z, 2 * h0 * scale_z)
    cls, reg = _maps(peaks=[(8, 8, 2.0)], box=big)
    params = TrackerParams(window_influence=0.0)
    tracker = Tracker(FixedNet(cls, reg), params)
    image = _frame()
    tracker.initialize(image, (100, 100, w0, h0))
    box, score = tracker.track(image)
    d = tracker.decision
    lr = d.penalty * d.score * params.lr
    assert score == pytest.approx(1 / (1 + math.exp(-2.0)))
    assert d.penalty == pytest.approx(math.exp(-params.penalty_k))  # s_c = 2, r_c = 1
    once = (1 - lr) * w0 + lr * 2 * w0
    twice = (1 - lr) * w0 + lr * (lr * 2 * w0 + (1 - lr) * w0)  # released code: effective lr^2
    assert box[2] == pytest.approx(once, rel=1e-9)
    assert box[3] == pytest.approx((1 - lr) * h0 + lr * 2 * h0, rel=1e-9)
    assert abs(box[2] - twice) > 5.0
    # the centre stays (the chosen box is centred on the crop centre)
    np.testing.assert_allclose(box[:2] + box[2:] / 2, [130, 120], atol=1e-9)


def test_template_and_search_crops_share_one_scale():
    cls, reg = _maps(peaks=[(8, 8, 2.0)])
    net = FixedNet(cls, reg)
    tracker = Tracker(net, PRESETS["vot2019"])
    image = _frame(seed=3)
    tracker.initialize(image, (120, 90, 50, 40))
    tracker.track(image)
    (_, z), (_, x) = net.inputs
    assert z.shape == (1, 3, 128, 128) and x.shape == (1, 3, 256, 256)
    s_z = context_size(50, 40)
    assert tracker.search_crop.size == pytest.approx(s_z * 256 / 128)
    # Same centre, same scale: the middle 128 x 128 of the search crop IS the template crop.
    mid = x[..., 64:192, 64:192]
    assert np.abs(mid - z).max() < 0.05  # normalised units; cv2's sub-pixel rounding only
    # With the released 127-px template (s_x = s_z * 256/127) the two would disagree.
    from lighttrack.geometry import crop, normalize
    c = (145.0, 110.0)
    x127 = normalize(crop(image, c, s_z * 256 / 127, 256, tuple(image.reshape(-1, 3).mean(0)))[None])
    assert np.abs(x127[..., 64:192, 64:192] - z).mean() > 10 * np.abs(mid - z).mean()


def test_small_target_uses_large_search_region():
    cls18, reg18 = _maps(s=18, peaks=[(9, 9, 2.0)], box=(20, 20))
    image = _frame(640, 480)
    net = FixedNet(cls18, reg18)
    tracker = Tracker(net, PRESETS["vot2019"])
    tracker.initialize(image, (300, 200, 15, 15))  # 225 / 307200 = 0.07% of the frame
    tracker.track(image)
    assert net.inputs[-1][1].shape == (1, 3, 288, 288) and tracker.window.shape == (18, 18)
    assert tracker.search_crop.size == pytest.approx(context_size(15, 15) * 288 / 128)
    # switched off by configuration
    cls, reg = _maps(peaks=[(8, 8, 2.0)], box=(20, 20))
    net16 = FixedNet(cls, reg)
    off = Tracker(net16, TrackerParams(large_search=False))
    off.initialize(image, (300, 200, 15, 15))
    off.track(image)
    assert net16.inputs[-1][1].shape == (1, 3, 256, 256)


def test_box_is_clamped_to_the_frame():
    # The chosen cell sits in the far corner and regresses a huge box.
    cls, reg = _maps(peaks=[(15, 15, 6.0)], box=(4000, 4000))
    tracker = Tracker(FixedNet(cls, reg), TrackerParams(window_influence=0.0, penalty_k=0.0, lr=1.0))
    image = _frame(320, 240)
    tracker.initialize(image, (280, 200, 30, 30))
    for _ in range(5):
        box, _ = tracker.track(image)
        cx, cy = box[:2] + box[2:] / 2
        assert 0 <= cx <= 320 and 0 <= cy <= 240
        assert 10 <= box[2] <= 320 and 10 <= box[3] <= 240
    assert box[2] == pytest.approx(320) and box[3] == pytest.approx(240)
    # and a vanishing box stays at least 10 px
    cls, reg = _maps(peaks=[(8, 8, 6.0)], box=(0.0, 0.0))
    tiny = Tracker(FixedNet(cls, reg), TrackerParams(window_influence=0.0, penalty_k=0.0, lr=1.0))
    tiny.initialize(image, (100, 100, 30, 30))
    box, _ = tiny.track(image)
    assert box[2] == pytest.approx(10) and box[3] == pytest.approx(10)


def test_bad_input_is_rejected_clearly():
    tracker = Tracker(FixedNet(*_maps(peaks=[(8, 8, 1.0)])))
    with pytest.raises(RuntimeError, match="before initialize"):
        tracker.track(_frame())
    with pytest.raises(ValueError, match="uint8"):
        tracker.initialize(np.zeros((10, 10, 3), np.float32), (1, 1, 5, 5))
    with pytest.raises(ValueError, match="positive w, h"):
        tracker.initialize(_frame(), (1, 1, 0, 5))
    h, w = _frame().shape[:2]
    for outside in ((-20, 5, 20, 10), (w, 5, 10, 10), (5, h + 3, 10, 10)):  # touching the edge from outside
        with pytest.raises(ValueError, match="entirely outside"):
            tracker.initialize(_frame(), outside)
    tracker.initialize(_frame(), (-5, -5, 10, 10))  # partly inside: a legal start
    with pytest.raises(TypeError, match="template"):
        Tracker(object())


# -- end to end -----------------------------------------------------------------------------
@pytest.mark.parametrize("preset,stride", [("vot2019", 16), ("released", 16), ("vot2019", 8)])
def test_oracle_net_tracks_hand_made_sequences(preset, stride):
    """Stride 8: a wide-space stage-2 output (32x32 maps at 256 px; the tracker reads the
    stride off the map size for its window and box decoding)."""
    net = OracleNet(stride=stride)
    tracker = Tracker(net, PRESETS[preset])
    ious = []
    for seq in hand_sequences():
        net.attach(tracker, seq.boxes)
        boxes, _ = run_sequence(tracker, seq)
        ious.append(got10k_sequence_ious(boxes, seq.boxes, seq.absent, seq.frame_size))
    ao = got10k_scores(np.concatenate(ious))["ao"]
    assert ao >= 0.9, f"oracle AO {ao:.3f} with preset {preset}, stride {stride}"
    assert tracker.window.shape == (tracker.search_size // stride,) * 2


# -- one decode for both trackers -------------------------------------------------------------
def test_boxes_equal_those_of_the_tracker_before_its_decode_was_shared():
    """tests/tracker_golden_boxes.json: the one-sequence tracker's boxes (6 decimals) on the
    hand-made sequences with ColourNet, recorded by the NumPy decode that came before
    ``tracker.decode`` (issue 35)."""
    from tracker_oracle import ColourNet

    golden = json.loads((Path(__file__).parent / "tracker_golden_boxes.json").read_text())
    for preset in ("vot2019", "released"):
        for seq in hand_sequences(30):
            boxes, _ = run_sequence(Tracker(ColourNet(), PRESETS[preset]), seq)
            np.testing.assert_allclose(boxes, golden[f"{preset}/{seq.name}"], atol=1e-4, rtol=0,
                                       err_msg=f"{preset}/{seq.name}")


def test_decode_gives_the_same_on_numpy_arrays_and_torch_tensors():
    """The one decode runs on the one-sequence tracker's arrays and the lockstep slots' tensors."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    b, s, side = 5, 18, 288
    cls = rng.normal(0, 2, (b, 1, s, s))
    reg = rng.uniform(0, 80, (b, 4, s, s))
    reg[0, :, 4, 4] = 0.0  # a vanishing box: its sides are floored, not divided by 0
    center = rng.uniform(-10, 330, (b, 2))
    size = rng.uniform(5, 150, (b, 2))
    frame = np.tile([320.0, 240.0], (b, 1))
    p = PRESETS["released"]
    a = decode(cls, reg, center, size, frame, score_grid(s, side), p)
    t = decode(*(torch.from_numpy(v) for v in (cls, reg, center, size, frame)), score_grid(s, side, "cpu"), p)
    for name in ("center", "size", "cell", "score", "penalty", "pscore", "box"):
        np.testing.assert_allclose(getattr(t, name).numpy(), getattr(a, name), rtol=1e-12, atol=1e-9, err_msg=name)
    assert (a.center >= 0).all() and (a.center <= frame).all() and (a.size >= p.min_size).all()
    # row by row, each sequence decodes as alone
    for i in range(b):
        one = decode(cls[i:i + 1], reg[i:i + 1], center[i:i + 1], size[i:i + 1], frame[i:i + 1], score_grid(s, side), p)
        np.testing.assert_array_equal(one.center[0], a.center[i])
