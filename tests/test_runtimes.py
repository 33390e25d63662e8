"""Deployment runtimes: a tiny tracker exported to every runtime installed here, each
checked against eager PyTorch (heads on real crops, boxes over a rendered sequence); a
wrong graph is refused at export; a runtime that cannot run here says why."""
from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest
import torch

from lighttrack.arch import resolve
from lighttrack.models.static import StaticTracker
from lighttrack.tracker import PRESETS
from lighttrack.tracker.export import calibration_crops, export_tracker, write_card
from lighttrack.tracker.parity import BOX_PX, HEAD_REL, ParityError, RenderedSequence, check_parity, latency_ms
from lighttrack.tracker.runtime import ExportedNet, load_net
from lighttrack.tracker.runtimes import RUNTIMES, RuntimeUnavailable, get_runtime

# OpenVINO, in a process that had run the data tests before, corrupted the heap (SIGSEGV
# late in the suite, CI of session 18; dropping OpenVINO made it go, the file alone
# passes): this file runs in a pytest process of its own, test_runtimes_process.py
pytestmark = pytest.mark.skipif(os.environ.get("LIGHTTRACK_TEST_PROCESS") != "runtimes",
                                reason="run in a process of its own by tests/test_runtimes_process.py")
pytest.importorskip("onnxruntime")
ARCH = resolve("smallest")
PARAMS = PRESETS["vot2019"]


def _net(seed: int = 0) -> StaticTracker:
    torch.manual_seed(seed)
    net = StaticTracker.build(ARCH)
    for m in net.modules():  # non-trivial BN statistics, so that folding is exercised
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 2.0)
    return net.eval()


@pytest.fixture(scope="module")
def sequence():
    return RenderedSequence.render(seed=3, frames=24)


@pytest.fixture(scope="module")
def crops(sequence):
    return calibration_crops([(sequence.read_frame(k), sequence.boxes[k]) for k in range(0, 24, 8)])


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """One export folder with every runtime that runs here (one search size: CI time)."""
    net = _net()
    out = tmp_path_factory.mktemp("runtimes")
    here = [r for r in RUNTIMES if RUNTIMES[r].missing() is None]
    files = export_tracker(net, out, search_sizes=(256,), torch_export=False, runtimes=here)
    write_card(out, arch=ARCH, files=files, params=PARAMS)
    return net, out, files


def _skip_unless_here(name: str) -> None:
    reason = RUNTIMES[name].missing()
    if reason:
        pytest.skip(reason)


@pytest.mark.parametrize("name", sorted(RUNTIMES))
def test_each_runtime_follows_eager_pytorch(name, exported, sequence, crops):
    _skip_unless_here(name)
    net, out, files = exported
    group = "onnx" if name == "onnxruntime" else name
    assert set(files[group]) == {"template", "search_256"}
    assert all((out / f).is_file() for f in files[group].values())
    runtime_net = ExportedNet(out, name)
    p = check_parity(net, runtime_net, sequence, PARAMS, crops, runtime=name)
    assert p["passed"] and p["heads_rel_max"] <= HEAD_REL and p["boxes_px"] <= BOX_PX
    assert p["frames"] == 24 and p["crops"] == len(crops)
    ms = latency_ms(runtime_net, repeats=3)
    assert ms["search_256"] > 0 and ms["template"] > 0


def test_x86_cpu_runtimes_are_installed_with_the_project():
    """The `runtimes` extra is part of the install: where a runtime runs on an x86 CPU it
    is tested, not skipped."""
    import platform

    if platform.machine() not in ("x86_64", "AMD64"):
        pytest.skip(f"{platform.machine()}: the x86 wheels are what the install pins")
    for name in ("onnxruntime", "openvino", "ncnn", "executorch"):
        assert RUNTIMES[name].missing() is None, RUNTIMES[name].missing()


def test_a_graph_that_differs_from_eager_is_refused(exported, sequence, crops):
    """Parity against another network's weights: the check fails, naming the figures."""
    _, out, _ = exported
    with pytest.raises(ParityError, match=r"onnxruntime: exported graphs differ from eager PyTorch: heads .* "
                                          r"relative \(tolerance 0.001"):
        check_parity(_net(seed=1), ExportedNet(out, "onnxruntime"), sequence, PARAMS, crops, runtime="onnxruntime")


def test_ncnn_gets_planar_float_images_and_the_others_raw_uint8(exported):
    _skip_unless_here("ncnn")
    _, out, _ = exported
    x = np.random.default_rng(0).integers(0, 256, (1, 16, 12, 3), dtype=np.uint8)
    planar = ExportedNet(out, "ncnn")._image(x)
    assert planar.dtype == np.float32 and planar.shape == (1, 3, 16, 12)
    np.testing.assert_array_equal(planar[0, 2], x[0, :, :, 2])
    assert ExportedNet(out, "onnxruntime")._image(x).dtype == np.uint8
    assert [r for r in RUNTIMES if RUNTIMES[r].planar] == ["ncnn"]


def test_the_card_lists_weights_files_beside_graphs(exported):
    _, out, files = exported
    if "openvino" not in files:
        pytest.skip(RUNTIMES["openvino"].missing())
    card = json.loads((out / "model_card.json").read_text())
    assert "openvino/template.xml" in card["sha256"] and "openvino/template.bin" in card["sha256"]


def test_an_export_without_a_runtime_names_what_it_has(exported, tmp_path):
    _skip_unless_here("openvino")
    _, out, _ = exported
    copy = shutil.copytree(out, tmp_path / "export")  # the shared export stays whole
    card = json.loads((copy / "model_card.json").read_text())
    card["files"].pop("openvino")
    (copy / "model_card.json").write_text(json.dumps(card))
    with pytest.raises(FileNotFoundError, match=r"no openvino graphs in this export .*--runtime openvino"):
        ExportedNet(copy, "openvino")


def test_tensorrt_without_a_gpu_says_so_before_anything_is_written(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is here")
    assert "needs a CUDA GPU" in RUNTIMES["tensorrt"].missing()
    with pytest.raises(RuntimeUnavailable, match="tensorrt: needs a CUDA GPU"):
        export_tracker(_net(), tmp_path / "x", runtimes=["tensorrt"])
    assert not any((tmp_path / "x").iterdir())


def test_unknown_runtime_is_named():
    with pytest.raises(ValueError, match=r"unknown runtime 'tflite'; one of \["):
        get_runtime("tflite")


def test_load_net_exports_a_checkpoint_on_the_fly(tmp_path):
    _skip_unless_here("openvino")
    net = _net()
    torch.save(net.state_dict(), tmp_path / "ck.pt")
    on_the_fly = load_net(ARCH, tmp_path / "ck.pt", backend="openvino", work_dir=tmp_path / "export")
    assert isinstance(on_the_fly, ExportedNet) and on_the_fly.runtime.name == "openvino"
    z = np.random.default_rng(0).integers(0, 256, (1, 128, 128, 3), dtype=np.uint8)
    from lighttrack.geometry import normalize

    with torch.no_grad():
        ref = net.template(torch.from_numpy(normalize(z))).numpy()
    np.testing.assert_allclose(on_the_fly.template(z), ref, atol=1e-4 * np.abs(ref).max())


def test_a_latency_budget_names_its_runtime_and_refuses_another_table():
    from lighttrack.costs import CostTable
    from lighttrack.search.budget import Budget, BudgetError, CostModel, check_possible
    from lighttrack.search.latency import LatencyTable

    b = Budget.parse("600M,2M,8ms@openvino")
    assert (b.latency_max_ms, b.latency_runtime, b.label) == (8.0, "openvino", "600M_2M_8ms-openvino")
    assert Budget.parse("600M,2M,8ms").latency_runtime is None
    with pytest.raises(BudgetError, match=r"unknown runtime 'tflite'"):
        Budget.parse("600M,2M,8ms@tflite")
    with pytest.raises(BudgetError, match=r"latency '8' is not|must end in 'ms'"):
        Budget.parse("600M,2M,8@openvino")
    table = LatencyTable(backend="torch", threads=1, search_size=256, ms=CostTable({}, 1.0))
    with pytest.raises(BudgetError, match=r"profiled on 'torch', not 'openvino'.*--runtime openvino"):
        check_possible(b, CostModel(latency=table))


@pytest.mark.parametrize("name", ["openvino", "ncnn", "executorch"])
def test_the_profiler_times_a_block_built_by_the_runtime(name):
    """A latency table's entries are the runtime's own graphs: each block's runner
    computes what the torch block computes."""
    _skip_unless_here(name)
    from lighttrack.search.profiler import _steps, make_runner

    net = _net()
    _, module, _, _ = _steps(net)[0]  # the stem + first depthwise-separable block
    x = torch.randn(1, 3, 64, 64)
    run = make_runner(module, [x], name, threads=1)
    with torch.no_grad():
        ref = module(x).numpy()
    np.testing.assert_allclose(run(x.numpy()), ref, atol=1e-4 * np.abs(ref).max())


def test_every_runtime_gives_the_eager_ao_to_3_decimals_on_the_embedded_val(exported, tmp_path):
    """The tiny embedded val (3 sequences), tracked by eager PyTorch and by every runtime."""
    from lighttrack.tracker.evaluation import evaluate_split, open_split

    from tests.home import EMBEDDED

    net, out, files = exported
    dataset = open_split(str(EMBEDDED / "got10k"), "val", None, 0)
    eager = evaluate_split(net, dataset, tmp_path / "eager", PARAMS, plot=False)
    for name in [r for r in RUNTIMES if RUNTIMES[r].missing() is None]:
        s = evaluate_split(ExportedNet(out, name), dataset, tmp_path / name, PARAMS, plot=False)
        assert round(s["ao"], 3) == round(eager["ao"], 3), (name, s["ao"], eager["ao"])
        assert s["baseline_ao"] == eager["baseline_ao"]
