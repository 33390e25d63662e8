"""A search trial (plain torch): recalibrated with models.bn.recalibrate_bn, order-free."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch.nn.modules.batchnorm import _BatchNorm

from lighttrack.arch import resolve
from lighttrack.models import TrackSupernet, recalibrate_bn
from lighttrack.search.evaluate import CandidateEvaluator, EvalConfig, load_supernet
from tests.home import EMBEDDED

SYNTH = EMBEDDED / "got10k"
CFG = dict(val_root=str(SYNTH), recalibrate_root=str(SYNTH), val_sequences=1, val_frames=5,
           recalibrate_batches=2, recalibrate_batch_size=2)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    if not (SYNTH / "val").is_dir():
        pytest.skip("embedded data missing: run `lighttrack data synth --out data/synth`")
    torch.manual_seed(0)
    net = TrackSupernet()
    # Non-trivial stored statistics, so "recalibrated" and "not" differ visibly.
    for m in net.modules():
        if isinstance(m, _BatchNorm):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
    path = tmp_path_factory.mktemp("supernet") / "checkpoint.pt"
    torch.save({"model": net.state_dict()}, path)
    return path


def _bn_stats(net, arch):
    return {id(m): (m.running_mean.clone(), m.running_var.clone())
            for m in net.path_modules(arch) for m in m.modules() if isinstance(m, _BatchNorm)}


def test_trial_recalibrates_with_models_bn(checkpoint):
    net, sid = load_supernet(checkpoint)
    stored = _bn_stats(net, resolve("lighttrack-mobile"))
    ev = CandidateEvaluator(net, sid, EvalConfig(**CFG))
    arch = resolve("lighttrack-mobile")
    r1 = ev.evaluate(arch)
    after = _bn_stats(net, arch)
    # The same re-estimate done directly with models.bn.recalibrate_bn on the trial's batches.
    ref, _ = load_supernet(checkpoint)
    path = ref.path(arch)
    recalibrate_bn(lambda b: path(b[0], b[1]), ev.batches)
    expected = _bn_stats(ref, arch)
    assert len(after) == len(expected) > 20
    for (m1, v1), (m2, v2) in zip(after.values(), expected.values()):
        torch.testing.assert_close(m1, m2, atol=1e-5, rtol=0)
        torch.testing.assert_close(v1, v2, atol=1e-5, rtol=0)
    assert any(not torch.allclose(a[0], b[0]) for a, b in zip(after.values(), stored.values()))
    assert r1["recal_batches"] == 2 and 0.0 <= r1["ao"] <= 1.0
    assert r1["macs"] == 530_411_008 and r1["params"] == 1_969_397
    # A result depends on the arch only: evaluating another one in between changes nothing.
    ev.evaluate(resolve("smallest"))
    assert ev.evaluate(arch)["ao"] == r1["ao"]


def test_without_recalibration_the_stored_statistics_are_used(checkpoint):
    net, sid = load_supernet(checkpoint)
    arch = resolve("smallest")
    stored = _bn_stats(net, arch)
    ev = CandidateEvaluator(net, sid, EvalConfig(**CFG, recalibrate=False))
    row = ev.evaluate(arch)
    assert row["recal_batches"] == 0 and ev.batches == []
    for (m1, v1), (m2, v2) in zip(_bn_stats(net, arch).values(), stored.values()):
        assert torch.equal(m1, m2) and torch.equal(v1, v2)
    ev_recal = CandidateEvaluator(net, sid, EvalConfig(**CFG))
    assert ev_recal.settings_id != ev.settings_id  # different settings, different cache key


def test_onnxruntime_backend_scores_the_candidate_it_recalibrated(checkpoint):
    """The in-memory ONNX export of the recalibrated candidate tracks like its torch path
    (boxes to float rounding), under its own settings id; auto keeps torch for few frames."""
    pytest.importorskip("onnxruntime")
    from lighttrack.config import ConfigError, from_dict

    net, sid = load_supernet(checkpoint)
    arch = resolve("lighttrack-mobile")
    torch_ev = CandidateEvaluator(net, sid, EvalConfig(**CFG, backend="torch"))
    ort_ev = CandidateEvaluator(net, sid, EvalConfig(**CFG, backend="onnxruntime", batch=2))
    assert CandidateEvaluator(net, sid, EvalConfig(**CFG)).backend == "torch"  # 5 frames: export not worth it
    assert ort_ev.settings_id != torch_ev.settings_id
    a, b = torch_ev.evaluate(arch), ort_ev.evaluate(arch)
    # Random weights give flat score maps: float rounding may move one frame's box by a pixel
    # or so, a few thousandths of AO over these 4 scored frames (seen: 2.0e-3 on the full set).
    assert b["ao"] == pytest.approx(a["ao"], abs=5e-3) and b["macs"] == a["macs"]
    for bad in (dict(backend="tensorrt"), dict(batch=-1)):  # refused where a config loads
        with pytest.raises(ConfigError, match="eval."):
            from_dict(EvalConfig, {**CFG, **bad}, "eval")


def test_candidates_are_scored_in_memory_on_the_split_read_once(checkpoint, tmp_path, monkeypatch):
    """The validation split is read and checked when the evaluator is built, never again per
    candidate, and no result files are written unless a work_dir asks for them."""
    import tempfile

    net, sid = load_supernet(checkpoint)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # a stray temporary folder would land here
    ev = CandidateEvaluator(net, sid, EvalConfig(**CFG, backend="torch"))

    def no_reading(i):
        raise AssertionError("a candidate read the validation split again")

    monkeypatch.setattr(ev.val.reader, "sequence", no_reading)
    rows = [ev.evaluate(resolve(a)) for a in ("smallest", "lighttrack-mobile")]
    assert all(0.0 <= r["ao"] <= 1.0 for r in rows) and not any(tmp_path.iterdir())
    kept = CandidateEvaluator(net, sid, EvalConfig(**CFG, backend="torch"), work_dir=tmp_path / "work")
    assert kept.evaluate(resolve("smallest"))["ao"] == rows[0]["ao"]
    assert (tmp_path / "work" / "eval00000" / "scores.json").is_file()
