"""One metric everywhere a tracker is scored (tracker/validation.py): GOT-10k AO or VOT EAO
as the search's fitness, in phase 2/4 validation and in the model card."""
from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from lighttrack.arch import resolve
from lighttrack.data.fs import DataError
from lighttrack.data.synth_vot import write_vot
from lighttrack.models import StaticTracker, TrackSupernet
from lighttrack.search import cache
from lighttrack.search.evaluate import CandidateEvaluator, EvalConfig
from lighttrack.tracker import Tracker
from lighttrack.tracker import vot
from lighttrack.tracker.params import PRESETS
from lighttrack.tracker.validation import open_validation, score
from tests.home import EMBEDDED

SYNTH = EMBEDDED / "got10k"


@pytest.fixture(scope="module")
def vot_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("vot") / "sequences"
    write_vot(root, seed=3, sequences=2, frames=(60, 66))
    return root


@pytest.fixture(scope="module")
def tracker_net():
    torch.manual_seed(0)
    return StaticTracker.build(resolve("lighttrack-mobile")).eval()


def test_eao_validation_is_the_vot_experiment_with_its_baseline(vot_root, tracker_net, tmp_path):
    val = open_validation(str(vot_root), metric="eao", frames=50)
    assert [len(s) for s in val.sequences] == [50, 50] and val.frames == 100
    got = score(tracker_net, val, PRESETS["vot2019"])
    # the same figures as the VOT experiment run by hand on the same cut sequences
    seqs = val.sequences
    trajectories = {s.name: vot.run_supervised(Tracker(tracker_net, PRESETS["vot2019"]), s) for s in seqs}
    ref = vot.score_vot(trajectories, seqs)
    assert got["metric"] == "eao" and got["fitness"] == pytest.approx(ref["eao"])
    assert got["failures"] == ref["failures"] and got["baseline_fitness"] == pytest.approx(ref["baseline_eao"])
    with pytest.raises(DataError, match=r"longest sequence \(cut to 40 frames\) has 40 frames"):
        open_validation(str(vot_root), metric="eao", frames=40)  # EAO would average nothing
    with pytest.raises(DataError, match="list.txt"):  # a GOT-10k root is no VOT folder
        open_validation(str(SYNTH), metric="eao")
    with pytest.raises(ValueError, match="not one of"):
        open_validation(str(SYNTH), metric="auc")


@pytest.fixture(scope="module")
def supernet():
    torch.manual_seed(0)
    return TrackSupernet().eval()


def _cfg(**kw) -> EvalConfig:
    base = dict(val_root=str(SYNTH), recalibrate_root=str(SYNTH), val_sequences=1, val_frames=6,
                recalibrate_batches=1, recalibrate_batch_size=2, backend="torch")
    return EvalConfig(**(base | kw))


def test_search_fitness_by_eao_has_its_own_settings_and_the_ao_ids_stay(supernet, vot_root):
    if not (SYNTH / "val").is_dir():
        pytest.skip("embedded data missing")
    arch = resolve("lighttrack-mobile")
    ao = CandidateEvaluator(supernet, "sid", _cfg())
    eao = CandidateEvaluator(supernet, "sid", _cfg(metric="eao", val_root=str(vot_root), val_frames=50))
    # The AO settings id is the one computed before the metric existed: old caches stay valid.
    before = cache.settings_id(sequences=cache.fingerprint_sequences(ao.val.sequences), tracker=ao.params,
                               recal_batches=1, recal_batch_size=2, seed=0, recal_data=f"{SYNTH}:train")
    assert ao.settings_id == before and eao.settings_id != before
    row_ao, row_eao = ao.evaluate(arch), eao.evaluate(arch)
    assert row_ao["metric"] == "ao" and row_ao["fitness"] == row_ao["ao"] and row_ao["eao"] is None
    assert row_ao["baseline_fitness"] == row_ao["baseline_ao"]
    assert row_eao["metric"] == "eao" and row_eao["fitness"] == row_eao["eao"] and row_eao["ao"] is None
    assert row_eao["baseline_fitness"] == row_eao["baseline_eao"] and row_eao["failures"] >= 0
    assert 0.0 <= row_eao["fitness"] <= 1.0


def test_rows_cached_before_the_metric_existed_read_as_ao_rows(tmp_path):
    """A part file in the old schema (no metric/fitness columns) still reads, its fitness its AO."""
    old = pa.schema([f for f in cache.SCHEMA if f.name not in cache.SCORE_COLUMNS[:3] + cache.SCORE_COLUMNS[7:]])
    (tmp_path / "c").mkdir()
    pq.write_table(pa.Table.from_pylist([{"supernet_id": "s", "settings_id": "e", "arch": "a", "ao": 0.4,
                                          "baseline_ao": 0.3}], schema=old), tmp_path / "c" / "part-0.parquet")
    row = cache.EvalCache(str(tmp_path / "c")).rows()[0]
    assert row["fitness"] is None and row["metric"] is None
    assert cache.fitness(row) == 0.4 and cache.baseline_fitness(row) == 0.3 and cache.metric(row) == "ao"
    assert cache.fitness({"fitness": 0.2, "ao": None}) == 0.2


def test_searcher_and_pareto_rank_by_fitness():
    import nevergrad as ng  # noqa: F401

    from lighttrack.search import space
    from lighttrack.search.budget import Budget, BudgetCheck, CostModel
    from lighttrack.search.pareto import pareto_front
    from lighttrack.search.searcher import CandidateSource

    rows = [{"arch": "x", "fitness": 0.30, "ao": None, "macs": 10, "params": 1},
            {"arch": "y", "fitness": 0.20, "ao": None, "macs": 5, "params": 1},
            {"arch": "z", "fitness": 0.10, "ao": None, "macs": 20, "params": 2}]
    assert [r["arch"] for r in pareto_front(rows)] == ["y", "x"]  # z: lower EAO at more cost
    param = space.parametrization(0)
    opt = ng.optimizers.RandomSearch(parametrization=param, budget=4)
    src = CandidateSource(opt, BudgetCheck(Budget.parse("600M,2M"), CostModel()), 4)
    arch = src.next()
    src.complete(arch, {"fitness": 0.25, "eao": 0.25, "baseline_fitness": 0.1, "macs": 1, "params": 1})
    assert src.history[-1]["fitness"] == 0.25 and src.history[-1]["baseline_fitness"] == 0.1


def test_phase_2_and_4_validation_by_eao(vot_root, tracker_net, supernet):
    from lighttrack.train.config import TrackEvalConfig
    from lighttrack.train.track_eval import static_evaluator, supernet_evaluator

    cfg = TrackEvalConfig(metric="eao", root=str(vot_root), max_sequences=1, recalibrate_batches=0)
    got = static_evaluator(cfg)(tracker_net, 0)
    assert set(got) == {"val_eao", "val_accuracy", "val_failures", "val_baseline_eao"}
    assert 0.0 <= got["val_eao"] <= 1.0 and got["val_failures"] >= 0
    arch = resolve("lighttrack-mobile")
    sup = supernet_evaluator(cfg, [arch], None, torch.device("cpu"))(supernet, 0)
    assert set(sup) == {"val_eao/path0", "val_eao/mean", "val_baseline_eao"}
    assert sup["val_baseline_eao"] == got["val_baseline_eao"]  # the same frames


def test_model_card_carries_the_vot_scores(vot_root, tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    from lighttrack import cli

    code = cli.main(["export", "--arch", "lighttrack-mobile", "--out", str(tmp_path / "exp"), "--no-torch-export",
                     "--vot", str(vot_root.parent), "--max-sequences", "1"])
    assert code == 0
    card = json.loads((tmp_path / "exp" / "model_card.json").read_text())
    v = card["scores"]["vot"]
    assert v["sequences"] == 1 and 0.0 <= v["eao"] <= 1.0 and "baseline_eao" in v and "beats_baseline" in v
    assert v["eao_interval_covered"] is False  # 60-66 frames: shorter than [46, 291]


def test_a_job_checks_the_vot_folder_before_it_starts(tmp_path):
    from lighttrack.config import check_inputs

    with pytest.raises(DataError, match=r"eval\.val_root \(metric eao: a VOT sequences folder\).*list\.txt"):
        check_inputs(_cfg(metric="eao", val_root=str(tmp_path)), "eval")
