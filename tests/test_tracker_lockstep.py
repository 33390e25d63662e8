"""The lockstep evaluator tracks like the one-sequence tracker, K sequences at a time."""
from __future__ import annotations

from collections import deque

import numpy as np
import pytest
import torch

from lighttrack.geometry import crop
from lighttrack.tracker import PRESETS, Tracker
from lighttrack.tracker.evaluation import evaluate_split, open_split, read_results, run_sequence
from lighttrack.tracker.lockstep import (CPU_MAX_BATCH, _Lockstep, auto_batch, crop_batch, crop_tensor,
                                        track_lockstep)
from lighttrack.tracker.runtime import TorchNet

from tracker_oracle import ColourNet, HandDataset, HandSequence, hand_sequences

synth = pytest.importorskip("lighttrack.data.synth")
PARAMS = PRESETS["vot2019"]


@pytest.fixture(scope="module")
def embedded(tmp_path_factory):
    root = tmp_path_factory.mktemp("embedded")
    synth.write(root, seed=0, size="tiny", workers=1)
    return root


def _uneven() -> list[HandSequence]:
    """Hand-made sequences of 40, 23, 9, 2 and 1 frames; some with absent frames; one small
    target (288 search region) so a step runs two crop sides."""
    seqs = hand_sequences(40)
    cut = []
    for seq, n in zip(seqs, (40, 23, 9, 2, 1)):
        absent = np.zeros(n, bool)
        absent[n // 2:n // 2 + 3] = n > 5
        cut.append(HandSequence(seq.name, seq.boxes[:n], seq.frame_size, absent))
    return cut


def _serial(net, seqs, params=PARAMS) -> dict[str, np.ndarray]:
    return {s.name: run_sequence(Tracker(net, params), s)[0] for s in seqs}


@pytest.mark.parametrize("batch", [1, 2, 3, "auto"])
def test_lockstep_boxes_equal_the_one_sequence_tracker_on_uneven_sequences(batch):
    net, seqs = ColourNet(), _uneven()
    ref = _serial(net, seqs)
    results = list(track_lockstep(net, seqs, PARAMS, batch=batch))
    assert sorted(r.index for r in results) == list(range(len(seqs)))  # each sequence once
    for r in results:
        assert r.name == seqs[r.index].name
        assert r.boxes.shape == (len(seqs[r.index].frames), 4) and r.times.shape == (len(r.boxes),)
        np.testing.assert_array_equal(r.boxes[0], seqs[r.index].boxes[0])
        np.testing.assert_allclose(r.boxes, ref[r.name], atol=1e-3, rtol=0)
        assert (r.times > 0).all()
    # the boxes moved: a net that answered the same map everywhere would prove nothing
    assert max(np.abs(ref[s.name] - s.boxes[0]).max() for s in seqs) > 5


def test_a_small_target_runs_the_large_search_region_beside_the_others():
    seqs = _uneven()
    run = _Lockstep(ColourNet(), seqs, PARAMS, 5, device_crops=False, threads=1)
    first = {j: run._read(seqs[j], 0) for j in range(5)}
    started = run._start(list(range(5)), deque(range(5)), first)
    sides = {run.slots[i].seq.name: run.slots[i].search_size for i in started}
    assert sides["tiny"] == PARAMS.large_search_size and sides["drift"] == PARAMS.search_size
    run._step([i for i in started if len(run.slots[i].seq.frames) > 1])  # both sides in one step
    assert all(run.slots[i].k == 2 for i in started if len(run.slots[i].seq.frames) > 1)


def test_evaluate_split_scores_lockstep_and_one_sequence_runs_identically(embedded, tmp_path):
    dataset = open_split(embedded, "val")
    net = ColourNet()
    one = evaluate_split(Tracker(net, PARAMS), dataset, tmp_path / "one", PARAMS, plot=False)
    lock = evaluate_split(net, dataset, tmp_path / "lock", PARAMS, plot=False, batch=2)
    assert lock["ao"] == one["ao"] and lock["sr50"] == one["sr50"] and lock["frames"] == one["frames"]
    for name in dataset.sequence_names:
        np.testing.assert_allclose(read_results(tmp_path / "lock", name)[0],
                                   read_results(tmp_path / "one", name)[0], atol=1e-3, rtol=0)


def test_a_supernet_path_in_lockstep_matches_it_batch_one(embedded):
    from lighttrack.arch import resolve
    from lighttrack.models import TrackSupernet

    torch.manual_seed(0)
    path = TrackSupernet("paper").eval().path(resolve("lighttrack-mobile")).eval()
    dataset = open_split(embedded, "val")
    seqs = [dataset.sequence(i) for i in range(len(dataset))]
    for s in seqs:
        s.frames = s.frames[:8]
        s.boxes, s.absent = s.boxes[:8], s.absent[:8]
    ref = _serial(TorchNet(path), seqs)
    for r in track_lockstep(path, seqs, PARAMS, batch=3):
        np.testing.assert_allclose(r.boxes, ref[r.name], atol=1e-3, rtol=0)


class _OneAtATime:
    """A NumPy net whose graphs take one crop (like a deployed export)."""

    takes_raw_crops = False
    max_batch = 1

    def __init__(self):
        self.net, self.batches = TorchNet(ColourNet()), []

    def template(self, z):
        self.batches.append(len(z))
        return self.net.template(z)

    def search(self, zf, x):
        self.batches.append(len(x))
        return self.net.search(zf, x)


def test_a_net_with_a_fixed_batch_of_one_is_fed_one_crop_at_a_time():
    net, seqs = _OneAtATime(), _uneven()
    ref = _serial(ColourNet(), seqs)
    for r in track_lockstep(net, seqs, PARAMS, batch=4):
        np.testing.assert_allclose(r.boxes, ref[r.name], atol=1e-3, rtol=0)
    assert set(net.batches) == {1}


def test_auto_batch_is_bounded_by_sequences_device_cap_and_memory():
    cpu = torch.device("cpu")
    assert auto_batch(3, 320 * 240 * 3, cpu) == 3
    assert auto_batch(100, 320 * 240 * 3, cpu) == CPU_MAX_BATCH
    assert auto_batch(100, 1 << 45, cpu) == 1  # frames larger than memory: still one slot


def test_bad_initial_box_names_the_sequence():
    seq = HandSequence("zero-width", np.array([[10, 10, 0, 20], [10, 10, 5, 20]], np.float64))
    with pytest.raises(ValueError, match="zero-width"):
        list(track_lockstep(ColourNet(), [seq], PARAMS, batch=1))
    away = HandSequence("far-away", np.array([[500, 10, 20, 20], [10, 10, 20, 20]], np.float64))
    with pytest.raises(ValueError, match="far-away.*entirely outside the 320x240 frame"):
        list(track_lockstep(ColourNet(), [away], PARAMS, batch=1))
    with pytest.raises(ValueError, match="batch"):
        list(track_lockstep(ColourNet(), [seq], PARAMS, batch=0))


def test_crop_tensor_matches_the_opencv_crop(embedded):
    from lighttrack.data import fs
    import cv2

    image = fs.read_image(str(embedded / "got10k" / "val" / open_split(embedded, "val").sequence_names[0]
                              / "00000001.jpg"))
    h, w = image.shape[:2]
    pad = cv2.mean(image)[:3]
    t = torch.from_numpy(image).permute(2, 0, 1)
    cases = [((w / 2, h / 2), 100.0, 128), ((10.3, 5.7), 300.5, 256),  # far over the corner
             ((w - 3.2, h / 2), 57.2, 288), ((w / 3, h / 3), 20.0, 256),  # upsampled 12x
             ((-500.0, -500.0), 80.0, 128)]  # entirely outside: the pad colour
    for center, side, out in cases:
        ours = crop_tensor(t, torch.tensor(center), torch.tensor(side), out, torch.tensor(pad))
        ref = crop(image, center, side, out, pad).astype(np.float32)
        diff = np.abs(ours.permute(1, 2, 0).numpy() - ref)
        assert diff.mean() < 0.35 and diff.max() <= 1.0, (center, side, out, diff.mean(), diff.max())


def test_crop_batch_crops_each_frame_as_alone():
    """One grid_sample for a step's frames gives each frame's own crop (own centre, side, pad)."""
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (3, 3, 60, 80), generator=g, dtype=torch.uint8)
    centers = torch.tensor([[40.0, 30.0], [3.5, 70.0], [-20.0, 10.0]], dtype=torch.float64)
    sides = torch.tensor([25.0, 90.5, 50.0], dtype=torch.float64)
    pads = torch.tensor([[10.0, 20.0, 30.0], [0.0, 0.0, 0.0], [200.0, 100.0, 50.0]])
    batch = crop_batch(images, centers, sides, 32, pads)
    for i in range(3):
        alone = crop_tensor(images[i], centers[i], sides[i], 32, pads[i])
        assert torch.allclose(batch[i], alone, atol=1e-4), i


def test_device_crops_track_like_host_crops(embedded, tmp_path):
    """The GPU loop's parts (torchvision decode, grid_sample crops, tensor post-processing),
    run on the CPU: within a grey level of the OpenCV crops, so within a pixel of its boxes."""
    dataset = open_split(embedded, "val")
    net = ColourNet()
    host = evaluate_split(net, dataset, tmp_path / "host", PARAMS, plot=False, batch=3)
    dev = evaluate_split(net, dataset, tmp_path / "dev", PARAMS, plot=False, batch=3, device_crops=True)
    assert abs(dev["ao"] - host["ao"]) < 0.02
    for name in dataset.sequence_names:
        a, b = read_results(tmp_path / "dev", name)[0], read_results(tmp_path / "host", name)[0]
        assert np.median(np.abs(a - b)) < 1.0


def test_onnxruntime_eval_net_batches_like_the_module():
    pytest.importorskip("onnxruntime")
    from lighttrack.arch import resolve
    from lighttrack.models import TrackSupernet
    from lighttrack.models.supernet import extract
    from lighttrack.tracker.export import OrtEvalNet

    torch.manual_seed(0)
    net = extract(TrackSupernet("paper").eval(), resolve("lighttrack-mobile")).eval()
    ort, ref = OrtEvalNet(net), TorchNet(net)
    rng = np.random.default_rng(0)
    z = rng.integers(0, 255, (3, 128, 128, 3), dtype=np.uint8)
    x = rng.integers(0, 255, (3, 288, 288, 3), dtype=np.uint8)
    from lighttrack.geometry import normalize

    zf = ort.template(z)
    np.testing.assert_allclose(zf, ref.template(normalize(z)).numpy(), atol=1e-3)
    for got, want in zip(ort.search(zf, x), ref.search(torch.from_numpy(zf), normalize(x))):
        assert got.shape == want.shape and got.shape[0] == 3
        np.testing.assert_allclose(got, want, atol=2e-3, rtol=1e-3)


def test_ort_lanes_split_a_batch_and_give_the_one_session_outputs():
    """OrtEvalNet(threads=3): a batch of 7 is cut into 3 lanes, each run RUN_BATCH crops at
    a time; the rows come back in order and equal one session's."""
    pytest.importorskip("onnxruntime")
    from lighttrack.arch import resolve
    from lighttrack.models import TrackSupernet
    from lighttrack.models.supernet import extract
    from lighttrack.tracker.export import OrtEvalNet

    torch.manual_seed(0)
    net = extract(TrackSupernet("paper").eval(), resolve("lighttrack-mobile")).eval()
    one, lanes = OrtEvalNet(net, 1), OrtEvalNet(net, 3)
    assert len(lanes._template) == 3 and lanes.RUN_BATCH < 7
    rng = np.random.default_rng(1)
    z = rng.integers(0, 255, (7, 128, 128, 3), dtype=np.uint8)
    x = rng.integers(0, 255, (7, 256, 256, 3), dtype=np.uint8)
    zf = one.template(z)
    np.testing.assert_allclose(lanes.template(z), zf, atol=1e-5)
    for got, want in zip(lanes.search(zf, x), one.search(zf, x)):
        assert got.shape == want.shape and got.shape[0] == 7
        np.testing.assert_allclose(got, want, atol=1e-5)
    # a permuted batch permutes the outputs: no row is mixed up with another
    perm = rng.permutation(7)
    np.testing.assert_allclose(lanes.search(zf[perm], x[perm])[0], one.search(zf, x)[0][perm], atol=1e-5)


def test_device_crops_read_png_frames_too(embedded, tmp_path):
    """Frames that are not JPEGs (a folder of PNGs) are decoded on the host and moved."""
    import cv2

    dataset = open_split(embedded, "val")
    seq = dataset.sequence(0)
    folder = tmp_path / "png" / seq.name
    folder.mkdir(parents=True)
    for k in range(6):
        cv2.imwrite(str(folder / f"{k + 1:08d}.png"), seq.read_frame(k)[..., ::-1])
    np.savetxt(folder / "groundtruth.txt", seq.boxes[:6], fmt="%.3f", delimiter=",")
    png = open_split(tmp_path / "png", layout="folder")
    net = ColourNet()
    host = {r.name: r.boxes for r in track_lockstep(net, [png.sequence(0)], PARAMS, batch=1)}
    dev = {r.name: r.boxes for r in track_lockstep(net, [png.sequence(0)], PARAMS, batch=1, device_crops=True)}
    assert np.abs(host[seq.name] - dev[seq.name]).max() < 2.0


def test_a_broken_sequence_at_the_end_of_the_split_stops_before_any_tracking(embedded, tmp_path):
    import shutil

    from lighttrack.data.fs import DataError

    root = tmp_path / "got10k"
    shutil.copytree(embedded / "got10k" / "val", root / "val")
    last = (root / "val" / "list.txt").read_text().split()[-1]
    (root / "val" / last / "groundtruth.txt").write_text("1,2,3\n")  # a line of 3 values
    with pytest.raises(DataError, match=rf"{last}.*groundtruth.txt:1"):
        evaluate_split(ColourNet(), open_split(root, "val"), tmp_path / "out", PARAMS, plot=False)
    assert not any((tmp_path / "out").rglob("*.txt"))  # no sequence was tracked first


def test_gpu_check_runs_its_evaluation_parts_on_the_cpu(tmp_path):
    """scripts/gpu_check.py meets a GPU only in sessions that are lent one; a dry run of its
    evaluation parts here (the same code on the CPU, a 4 x 6-frame split) keeps it working."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "scripts" / "gpu_check.py"
    subprocess.run([sys.executable, str(script), "--out", str(tmp_path), "--eval-device", "cpu", "--parts",
                    "eval,agree,runtimes", "--sequences", "4", "--frames", "6", "--runtimes", "onnxruntime",
                    "tensorrt", "--runtime-arch", "smallest"], check=True, timeout=600)
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    runs, agree, runtimes = report["lockstep"], report["agree"], report["runtimes"]
    assert "error" not in runs and "error" not in agree and "error" not in runtimes, (runs, agree, runtimes)
    assert runtimes["onnxruntime"]["passed"] and runtimes["onnxruntime"]["latency_ms"]["search_256"] > 0
    if not __import__("torch").cuda.is_available():
        assert "needs a CUDA GPU" in runtimes["missing"]["tensorrt"]
    assert runs["lockstep_device_full"]["frames"] == 4 * 6
    assert runs["lockstep_device_4seq"]["ao"] == runs["serial_4seq"]["ao"]
    assert agree["box_diff_px"]["max"] < 1e-3
