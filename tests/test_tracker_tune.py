"""ray_jobs/tune_tracker.py as a real Ray job against a real MLflow server (services)."""
from __future__ import annotations

import pytest

from lighttrack.tracker import load_params

synth = pytest.importorskip("lighttrack.data.synth")


@pytest.mark.services
def test_tune_tracker_job_writes_the_best_values_and_logs_them(submit_job, mlflow_server, tmp_path):
    import mlflow

    data = tmp_path / "data"
    synth.write(data, seed=0, size="tiny", workers=1)
    out = tmp_path / "tracker.yaml"
    logs = submit_job("ray_jobs.tune_tracker", "--dataset", data, "--arch", "smallest",
                      "--max-sequences", "1", "--num-samples", "3", "--out", out, "--name", "tune-test",
                      "--storage-path", tmp_path / "ray", "--address", "auto")
    params = load_params(out)  # a valid TrackerParams file
    run_id = next(line.split("=", 1)[1] for line in logs.splitlines() if line.startswith("LIGHTTRACK_RUN_ID="))
    mlflow.set_tracking_uri(mlflow_server.uri)
    run = mlflow.get_run(run_id.strip())
    assert run.data.tags["lighttrack.phase"] == "tune" and run.data.tags["lighttrack.arch"].startswith("bb:")
    assert float(run.data.params["best.lr"]) == pytest.approx(params.lr)
    assert float(run.data.params["best.penalty_k"]) == pytest.approx(params.penalty_k)
    assert 0.0 <= run.data.metrics["best_ao"] <= 1.0
    trials = mlflow.search_runs(experiment_ids=[run.info.experiment_id],
                                filter_string=f"tags.mlflow.parentRunId = '{run.info.run_id}'")
    assert len(trials) == 3
