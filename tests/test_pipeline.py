"""devcluster/pipeline.py: data roots made absolute for jobs, phase hand-over and skipping."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from lighttrack.config import parse_overrides
from devcluster import pipeline
from devcluster.services import ServiceError
from tests.home import HOME


def test_absolute_data_overrides(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "data_root: data/synth/imagenet\n"
        "epochs: 2\n"
        "data:\n"
        "  sources:\n"
        "    - {root: data/synth/got10k, kind: got10k, pairs_per_epoch: 8}\n"
        "    - {root: s3://bucket/lasot, kind: lasot}\n"
        "eval: {root: /abs/got10k, split: val}\n"
        "retrain: {data_root: data/x, model: {root: ''}}\n"
        "eval2: {val_root: data/v}\n")
    got = pipeline.absolute_data_overrides(cfg, tmp_path)
    parsed = parse_overrides(got)
    assert parsed == {
        "data_root": str(tmp_path / "data/synth/imagenet"),
        "data": {"sources": [
            {"root": str(tmp_path / "data/synth/got10k"), "kind": "got10k", "pairs_per_epoch": 8},
            {"root": "s3://bucket/lasot", "kind": "lasot"}]},
        "retrain": {"data_root": str(tmp_path / "data/x")},
        "eval2": {"val_root": str(tmp_path / "data/v")},
    }  # absolute paths, URIs and empty values are left alone
    assert any(item.startswith("data.sources=[") and json.loads(item.split("=", 1)[1]) for item in got)


def test_run_phases_hands_run_ids_on_and_skips_missing(tmp_path, monkeypatch):
    phases = (
        pipeline.Phase("pretrain", "ray_jobs.a", "a", ()),
        pipeline.Phase("supernet", "ray_jobs.b", "b", (("init", "pretrain"),)),
        pipeline.Phase("search", "ray_jobs.missing", "c", (("supernet", "supernet"),)),
        pipeline.Phase("retrain", "ray_jobs.d", "d", (("arch", "search"),)),
    )
    for rel in ("ray_jobs/a.py", "ray_jobs/b.py", "ray_jobs/d.py", "configs/a_micro.yaml",
                "configs/b_micro.yaml", "configs/c_micro.yaml", "configs/d_micro.yaml"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("root: data/r\n" if rel.endswith(".yaml") else "")
    monkeypatch.setattr(pipeline, "ROOT", tmp_path)
    monkeypatch.setattr(pipeline, "PHASES", phases)
    calls = []

    def submit(phase, args):
        calls.append((phase.name, args))
        return f"noise\n{pipeline.RUN_ID_PREFIX}{str(len(calls)) * 32}\n"

    runs = pipeline.run_phases(submit, "micro", [p.name for p in phases], "s", tmp_path / "ray", tmp_path)
    assert runs == {"pretrain": "1" * 32, "supernet": "2" * 32}  # search missing -> retrain skipped
    assert [c[0] for c in calls] == ["pretrain", "supernet"]
    args = calls[1][1]
    assert args[:4] == ["--config", str(Path("configs/b_micro.yaml")), "--name", "supernet-s"]
    assert f"root={tmp_path / 'data/r'}" in args and f"init='{'1' * 32}'" in args
    assert parse_overrides([f"init='{'1' * 32}'"]) == {"init": "1" * 32}  # stays a string

    with pytest.raises(ServiceError, match="printed no LIGHTTRACK_RUN_ID"):
        pipeline.run_phases(lambda ph, a: "no id here", "micro", ["pretrain"], "s", tmp_path, tmp_path)


def test_absolute_data_overrides_into_a_bucket(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("data_root: data/synth/imagenet\neval: {root: /abs/got10k}\n")
    got = parse_overrides(pipeline.absolute_data_overrides(cfg, "s3://bucket/prefix"))
    assert got == {"data_root": "s3://bucket/prefix/data/synth/imagenet"}


def test_the_console_shows_the_jobs_progress_lines_and_not_rays_own():
    from devcluster.pipeline import progress_line

    epoch = ("\x1b[36m(RayTrainWorker pid=27565)\x1b[0m [supernet-20261207-111819] epoch 2/4 148.8s "
             "train_loss=2.484 ETA 0:02:47")
    assert progress_line(epoch) == "[supernet-20261207-111819] epoch 2/4 148.8s train_loss=2.484 ETA 0:02:47"
    assert progress_line("search 600M_2M: 24 trials, 0 cache answers, 0 infeasible rejected, 91.4 s\n")
    assert progress_line("LIGHTTRACK_RUN_ID=" + "0" * 32) and progress_line("Traceback (most recent call last):")
    for ray_line in ("\x1b[36m(RayTrainWorker pid=1)\x1b[0m Reporting training result 2: TrainingReport(...)",
                     "\x1b[36m(TrainController pid=27478)\x1b[0m - (ip=127.0.0.1, pid=27565) world_rank=0",
                     "2026-12-07 11:30:04,197\tINFO sdk.py:520 -- WebSocket closed for job raysubmit_x",
                     "View detailed results here: /tmp/x"):
        assert progress_line(ray_line) is None, ray_line


@pytest.mark.slow
@pytest.mark.services
def test_pipeline_logs_to_the_users_tracking_server_and_starts_none(mlflow_server, tmp_path):
    """MLFLOW_TRACKING_URI set: every run goes to that server, and no server of ours starts."""
    import os
    import subprocess
    import sys

    from mlflow.tracking import MlflowClient

    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"} | {"MLFLOW_TRACKING_URI": mlflow_server.uri}
    out = subprocess.run([sys.executable, "-m", "devcluster.pipeline", "--size", "micro", "--phases", "pretrain",
                          "--out", str(tmp_path / "out"), "--data-base", str(HOME)], cwd=pipeline.ROOT, env=env, capture_output=True,
                         text=True, timeout=900)
    log = out.stdout + out.stderr
    assert out.returncode == 0, log[-4000:]
    assert f"MLFLOW_TRACKING_URI={mlflow_server.uri}" in log
    # the console: the job's progress lines; its whole output: the phase's log file
    assert re.search(r"pretrain \| \[pretrain-[\d-]+\] epoch 1/\d+ ", log), log[-4000:]
    assert "Reporting training result" not in log
    (phase_log,) = (tmp_path / "out" / "logs").glob("*/pretrain.log")
    assert "Reporting training result" in phase_log.read_text()
    assert not (tmp_path / "out" / "mlflow").exists()  # no sqlite store, no server of ours
    run_id = re.findall(r"phase pretrain done in \d+ s: MLflow run ([0-9a-f]{32})", log)
    assert run_id, log[-4000:]
    run = MlflowClient(mlflow_server.uri).get_run(run_id[-1])
    assert run.info.status == "FINISHED" and run.data.tags["lighttrack.phase"] == "pretrain"
