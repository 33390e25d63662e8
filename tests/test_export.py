"""Export: folded normalisation, torch.export and ONNX outputs equal PyTorch's, model card,
ONNX Runtime tracker, int8 graphs, checkpoint loading."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from lighttrack.arch import resolve
from lighttrack.geometry import normalize
from lighttrack.models.static import StaticTracker, fold_bn
from lighttrack.tracker import PRESETS, Tracker
from lighttrack.tracker.evaluation import run_sequence
from lighttrack.tracker.export import OPSET, RawInputNet, calibration_crops, export_tracker, quantize_int8, write_card
from lighttrack.tracker.runtime import ExportedNet, load_net, load_torch_net

from tracker_oracle import hand_sequences

pytest.importorskip("onnxruntime")
ARCH = resolve("smallest")


def _net(seed=0) -> StaticTracker:
    torch.manual_seed(seed)
    net = StaticTracker.build(ARCH)
    # non-trivial BN statistics so that folding is really exercised
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.1, 0.1)
    return net.eval()


def _crops(seed=0, side=256):
    rng = np.random.default_rng(seed)
    return (rng.integers(0, 256, (1, 128, 128, 3), dtype=np.uint8),
            rng.integers(0, 256, (1, side, side, 3), dtype=np.uint8))


def _reference(net, z, x):
    with torch.no_grad():
        zf = net.template(torch.from_numpy(normalize(z)))
        cls, reg = net.search(zf, torch.from_numpy(normalize(x)))
    return zf.numpy(), cls.numpy(), reg.numpy()


def _close(a, b, rel=1e-4):
    scale = max(float(np.abs(b).max()), 1e-3)
    assert np.abs(a - b).max() <= rel * scale, f"max diff {np.abs(a - b).max():.3g} vs scale {scale:.3g}"


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    net = _net()
    out = tmp_path_factory.mktemp("export")
    files = export_tracker(net, out, search_sizes=(256, 288))
    card = write_card(out, arch=ARCH, files=files, params=PRESETS["vot2019"],
                      complexity={"params": 123, "macs": 456}, scores={"ao": 0.5, "split": "val"},
                      source={"supernet": "sn-1", "run": "run-7"})
    return net, out, files, card


def test_raw_input_net_equals_the_normalised_net():
    net = _net()
    raw = RawInputNet(fold_bn(net))
    z, x = _crops(1)
    zf0, cls0, reg0 = _reference(net, z, x)
    with torch.no_grad():
        zf = raw.template(torch.from_numpy(z))
        cls, reg = raw.search(zf, torch.from_numpy(x))
    _close(zf.numpy(), zf0)
    _close(cls.numpy(), cls0)
    _close(reg.numpy(), reg0)


def test_tiled_se_gates_are_exact():
    from lighttrack.models.blocks import SqueezeExcite
    from lighttrack.models.static import TiledGateSE, tile_se_gates

    net = _net()
    tiled = tile_se_gates(net)
    n_se = sum(isinstance(m, SqueezeExcite) for m in net.modules())
    assert n_se == 8 and sum(isinstance(m, TiledGateSE) for m in tiled.modules()) == n_se
    assert not any(isinstance(m, TiledGateSE) for m in net.modules())  # the original is left as it was
    z, x = _crops(5)
    for a, b in zip(_reference(tiled, z, x), _reference(net, z, x)):
        _close(a, b, 1e-6)


def test_onnxruntime_keeps_the_se_products_in_its_blocked_layout(exported, tmp_path):
    """ONNX Runtime's NCHWc layout has no product with a broadcast (1, C, 1, 1) gate; untiled,
    every SE sent both operands out to NCHW and back (2-3 reorders per SE)."""
    import onnx
    import onnxruntime as ort

    _, out, files, _ = exported
    opts = ort.SessionOptions()
    opts.optimized_model_filepath = str(tmp_path / "optimised.onnx")
    opts.log_severity_level = 3
    ort.InferenceSession(str(out / files["onnx"]["search_256"]), opts, providers=["CPUExecutionProvider"])
    ops = [n.op_type for n in onnx.load(opts.optimized_model_filepath).graph.node]
    if "ReorderInput" not in ops and "ReorderOutput" not in ops:
        pytest.skip("this CPU's ONNX Runtime does not use the NCHWc layout")
    reorders = ops.count("ReorderInput") + ops.count("ReorderOutput")
    assert ops.count("Upsample") + ops.count("Resize") == 8  # one tiled gate per SE
    # what remains: into and out of the neck's correlation, and the two outputs
    assert reorders <= 8, f"{reorders} reorders for 8 SE blocks"


def test_onnx_outputs_equal_pytorch(exported):
    import onnx

    net, out, files, _ = exported
    assert set(files["onnx"]) == {"template", "search_256", "search_288"}
    assert onnx.load(str(out / files["onnx"]["template"])).opset_import[0].version == OPSET
    ort_net = ExportedNet(out)
    for side in (256, 288):
        z, x = _crops(2, side)
        zf0, cls0, reg0 = _reference(net, z, x)
        zf = ort_net.template(z)
        cls, reg = ort_net.search(zf, x)
        assert cls.shape == (1, 1, side // 16, side // 16) and reg.shape == (1, 4, side // 16, side // 16)
        _close(zf, zf0)
        _close(cls, cls0)
        _close(reg, reg0)
    with pytest.raises(ValueError, match="no exported search graph for 320x320"):
        ort_net.search(zf, np.zeros((1, 320, 320, 3), np.uint8))


def test_stride8_arch_exports_and_its_onnx_equals_pytorch(tmp_path):
    """A wide-space stage-2 output: 16x16 template features, 256-position correlation,
    32x32 maps; the card says so."""
    from lighttrack.arch import parse
    arch = parse("bb:k3e4,k5e6/k7e4,k3e6,k3e4+cls:128:k3,k5,skip,skip,skip,skip,skip,skip"
                 "+reg:192:k5,skip,skip,skip,skip,skip,skip,k3")
    torch.manual_seed(0)
    net = StaticTracker.build(arch).eval()
    files = export_tracker(net, tmp_path, search_sizes=(256,), torch_export=False)
    card = json.loads(write_card(tmp_path, arch=arch, files=files, params=PRESETS["vot2019"]).read_text())
    assert card["stride"] == 8 and card["outputs"]["zf"] == "raw template features (1, 40, 16, 16)"
    ort_net = ExportedNet(tmp_path)
    z, x = _crops(4)
    zf0, cls0, reg0 = _reference(net, z, x)
    zf = ort_net.template(z)
    cls, reg = ort_net.search(zf, x)
    assert zf.shape == (1, 40, 16, 16) and cls.shape == (1, 1, 32, 32) and reg.shape == (1, 4, 32, 32)
    _close(zf, zf0)
    _close(cls, cls0)
    _close(reg, reg0)


def test_torch_export_programs_equal_pytorch(exported):
    net, out, files, _ = exported
    z, x = _crops(3)
    zf0, cls0, reg0 = _reference(net, z, x)
    template = torch.export.load(str(out / files["torch_export"]["template"])).module()
    search = torch.export.load(str(out / files["torch_export"]["search_256"])).module()
    with torch.no_grad():
        zf = template(torch.from_numpy(z))
        cls, reg = search(zf, torch.from_numpy(x))
    _close(zf.numpy(), zf0)
    _close(cls.numpy(), cls0)
    _close(reg.numpy(), reg0)


def test_model_card_describes_the_artifacts(exported):
    _, out, files, card_path = exported
    card = json.loads(card_path.read_text())
    assert card["arch"] == str(ARCH) and card["arch_released"] == ARCH.to_released()
    assert (card["params"], card["macs"]) == (123, 456)
    assert card["scores"] == {"ao": 0.5, "split": "val"}
    assert card["tracker"]["penalty_k"] == 0.007 and card["tracker"]["lr"] == 0.616
    assert card["preprocessing"]["template_size"] == 128
    assert card["preprocessing"]["search_sizes"] == [256, 288]
    assert card["source"] == {"supernet": "sn-1", "run": "run-7"}
    assert card["opset"] == OPSET
    for group in files.values():
        for f in group.values():
            assert (out / f).is_file() and len(card["sha256"][f]) == 64


def test_onnxruntime_tracker_follows_the_torch_tracker(exported):
    net, out, _, _ = exported
    seq = hand_sequences(12)[0]
    torch_boxes, _ = run_sequence(Tracker(net), seq)
    ort_boxes, _ = run_sequence(Tracker(ExportedNet(out)), seq)
    np.testing.assert_allclose(ort_boxes, torch_boxes, atol=0.05)
    # the runtime is what load_net gives for an export directory
    assert isinstance(load_net(ARCH, out, backend="onnxruntime"), ExportedNet)


def test_int8_graphs_are_smaller_and_track(exported, tmp_path):
    _, out, files, _ = exported
    seq = hand_sequences(12)[1]
    crops = calibration_crops([(seq.read_frame(k), seq.boxes[k]) for k in range(0, 12, 3)])
    int8 = quantize_int8(out, {"onnx": {k: files["onnx"][k] for k in ("template", "search_256")}}, crops)
    for name, f in int8.items():
        assert (out / f).stat().st_size < 0.6 * (out / files["onnx"][name]).stat().st_size
    card = tmp_path / "card"
    card.mkdir()
    for f in list(int8.values()) + ["template.onnx", "search_256.onnx"]:
        (card / f).write_bytes((out / f).read_bytes())
    write_card(card, arch=ARCH, files={"onnx": {"template": "template.onnx", "search_256": "search_256.onnx"},
                                       "onnx_int8": int8}, params=PRESETS["vot2019"])
    boxes, _ = run_sequence(Tracker(ExportedNet(card, "onnxruntime", int8=True)), seq)
    assert np.isfinite(boxes).all() and boxes.shape == (12, 4)


def test_checkpoints_load_as_static_or_supernet(tmp_path):
    from lighttrack.models.supernet import TrackSupernet, extract

    net = _net(5)
    torch.save({"model": net.state_dict(), "epoch": 3}, tmp_path / "static.pt")
    z, x = _crops(4)
    _close(_reference(load_torch_net(ARCH, tmp_path / "static.pt"), z, x)[1], _reference(net, z, x)[1], 1e-6)
    torch.manual_seed(6)
    supernet = TrackSupernet().eval()
    torch.save(supernet.state_dict(), tmp_path / "supernet.pt")
    _close(_reference(load_torch_net(ARCH, tmp_path / "supernet.pt"), z, x)[2],
           _reference(extract(supernet, ARCH).eval(), z, x)[2], 1e-6)
    torch.save({"model": {"foo": torch.zeros(1)}}, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match="bad.pt: weights of something else than a LightTrack network"):
        load_torch_net(ARCH, tmp_path / "bad.pt")
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        load_torch_net(ARCH, tmp_path / "missing.pt")
    with pytest.raises(ValueError, match="training mode"):
        Tracker(StaticTracker.build(ARCH))


def test_supernet_path_tracks_like_its_extracted_static_tracker():
    from lighttrack.models.supernet import TrackSupernet, extract

    torch.manual_seed(7)
    supernet = TrackSupernet().eval()
    seq = hand_sequences(8)[2]
    path_boxes, _ = run_sequence(Tracker(supernet.path(ARCH)), seq)
    static_boxes, _ = run_sequence(Tracker(extract(supernet, ARCH).eval()), seq)
    np.testing.assert_allclose(path_boxes, static_boxes, atol=1e-3)
