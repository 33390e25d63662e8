"""End-to-end smoke: every phase through a real ``ray job submit`` with the micro configs.

Shares the session's Ray head and MLflow server (conftest.py), runs the phases in order with
the pipeline driver's own hand-over (devcluster/pipeline.run_phases), then checks through the
MLflow client that each run finished and that its artifacts are right, not merely present.
A phase whose job or micro config is not written yet is skipped with that reason.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import torch

from ray_jobs.common import PARENT_TAG, PHASE_TAG
from devcluster.pipeline import PHASES, ROOT, ensure_data, run_phases

pytestmark = [pytest.mark.slow, pytest.mark.services]

PHASE = {ph.name: ph for ph in PHASES}


def _missing(phase) -> list[str]:
    need = [phase.path, f"configs/{phase.config}_micro.yaml"]
    return [p for p in need if not (ROOT / p).is_file()]


@pytest.fixture(scope="module")
def smoke(submit_job, mlflow_server, tmp_path_factory):
    """Run all available phases once; {phase: run id}, plus the MLflow client."""
    from mlflow.tracking import MlflowClient

    if _missing(PHASES[0]):
        pytest.skip(f"phase 1 not written yet: {_missing(PHASES[0])}")
    base = tmp_path_factory.mktemp("smoke")
    ensure_data(base, size="tiny")
    names = [ph.name for ph in PHASES if not _missing(ph)]
    runs = run_phases(lambda ph, args: submit_job(ph.module, *args, timeout=900), "micro", names,
                      time.strftime("%H%M%S"), base / "ray", data_base=base)
    return runs, MlflowClient(mlflow_server.uri), base


def _run_of(smoke, name: str):
    runs, client, base = smoke
    phase = PHASE[name]
    for needed in [phase] + [PHASE[src] for _, src in phase.inputs]:
        if _missing(needed):
            pytest.skip(f"phase {needed.name} not written yet: {_missing(needed)}")
    assert name in runs, f"phase {name} did not run (an earlier phase is missing): {runs}"
    run = client.get_run(runs[name])
    assert run.info.status == "FINISHED"
    assert run.data.tags[PHASE_TAG] == name
    for key, src in phase.inputs:  # lineage: the input run is recorded
        if key != "supernet" or name == "search":
            assert run.data.tags.get(PARENT_TAG) == runs[src], (key, run.data.tags)
    return run, client, base


def _checkpoint(client, run, tmp: Path) -> dict:
    path = client.download_artifacts(run.info.run_id, "checkpoint/checkpoint.pt", str(tmp))
    return torch.load(path, map_location="cpu", weights_only=False)


def test_pretrain_run_and_checkpoint(smoke, tmp_path):
    from lighttrack.models import ClassSupernet

    run, client, _ = _run_of(smoke, "pretrain")
    ckpt = _checkpoint(client, run, tmp_path)
    model = ClassSupernet(int(run.data.params["model.num_classes"]))
    model.load_state_dict(ckpt["model"])  # strict: every tensor present, shapes right
    assert any(k.startswith("top1") or k.endswith("loss") for k in run.data.metrics), run.data.metrics


def test_supernet_run_and_checkpoint(smoke, tmp_path):
    from lighttrack.models import TrackSupernet

    run, client, _ = _run_of(smoke, "supernet")
    TrackSupernet().load_state_dict(_checkpoint(client, run, tmp_path)["model"])
    # phase 2 read the five kinds of source of the paper's mix, each through the index its driver built
    sources = json.loads(run.data.params["data.sources"])
    assert sorted(s["kind"] for s in sources) == ["coco", "crop511", "det", "got10k", "vid"]
    from lighttrack.data import fs
    assert all(fs.exists(s["index"]) for s in sources), sources  # a file here, an object in test_cluster's bucket


def test_search_best_arch_and_candidates(smoke, tmp_path):
    import pyarrow.parquet as pq

    from lighttrack.arch import parse
    from lighttrack.models.complexity import count

    run, client, _ = _run_of(smoke, "search")
    best = json.loads(Path(client.download_artifacts(run.info.run_id, "best_arch.json", str(tmp_path)))
                      .read_text())
    arch = parse(best["arch"])
    recount = count(arch)
    assert (best["macs"], best["params"]) == (recount.macs, recount.params)
    assert 0.0 <= best["ao"] <= 1.0
    table = pq.read_table(client.download_artifacts(run.info.run_id, "candidates.parquet", str(tmp_path)))
    trials = [v for k, v in run.data.metrics.items() if k.split("/")[-1] == "trials"]
    assert trials, f"search run logs no 'trials' metric: {sorted(run.data.metrics)}"
    assert table.num_rows == int(trials[0])  # one row per trial
    rows = table.to_pylist()
    assert str(arch) in {str(parse(r["arch"])) for r in rows}  # the best is one of them
    assert max(r["ao"] for r in rows) == pytest.approx(best["ao"])


def test_retrain_run_and_checkpoint(smoke, tmp_path):
    from lighttrack.arch import parse
    from lighttrack.models import StaticTracker

    run, client, _ = _run_of(smoke, "retrain")
    arch = parse(run.data.tags["lighttrack.arch"])
    search_best = json.loads(Path(client.download_artifacts(
        smoke[0]["search"], "best_arch.json", str(tmp_path / "s"))).read_text())
    assert str(arch) == str(parse(search_best["arch"]))  # phase 4 trained the found one
    StaticTracker.build(arch).load_state_dict(_checkpoint(client, run, tmp_path)["model"])


def test_bad_operational_input_through_ray_job_submit(submit_job, mlflow_server):
    """Unknown config key and a wrong-phase input end the job with one clear line, no work."""
    phase = PHASE["supernet"]
    if _missing(phase):
        pytest.skip(f"{_missing(phase)} not written yet")
    logs = submit_job(phase.module, "--config", "configs/supernet_micro.yaml", "--name", "bad",
                      "--set", "no_such_key=1", check=False)
    assert "error:" in logs and "unknown key(s) ['no_such_key']" in logs, logs[-3000:]
    assert "Started training" not in logs and "epoch 1/" not in logs
    logs = submit_job(phase.module, "--config", "configs/supernet_micro.yaml", "--name", "bad2",
                      "--set", f"init='{'0' * 32}'", check=False)
    assert f"MLflow run {'0' * 32} does not exist" in logs, logs[-3000:]
