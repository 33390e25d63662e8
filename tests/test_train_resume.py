"""A training worker killed mid-run (``LIGHTTRACK_TEST_FAULT_STEP``, a test-only hook): Ray Train
restarts the worker group from the last epoch checkpoint, the job finishes, and MLflow
holds exactly one run for it, with every epoch logged once."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    from lighttrack.data.synth import write
    out = tmp_path_factory.mktemp("synth")
    write(out, seed=0, size="tiny")
    return out


@pytest.mark.slow
def test_killed_worker_resumes_from_checkpoint_one_mlflow_run(tiny_data, tmp_path):
    from mlflow.tracking import MlflowClient
    db = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"} | {"MLFLOW_TRACKING_URI": db,
                                                                          "LIGHTTRACK_TEST_FAULT_STEP": "3"}
    cmd = [sys.executable, "-m", "ray_jobs.pretrain_backbone", "--config", "configs/pretrain_micro.yaml",
           "--name", "resume-test", "--storage-path", str(tmp_path / "runs"), "--address", "local",  # a private local Ray
           "--set", f"data_root={tiny_data / 'imagenet'}", "--set", "epochs=3",
           "--set", "run.max_failures=2"]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-4000:]
    assert "[fault injection] rank 0" in log  # the worker really died at step 3 (epoch 2)
    client = MlflowClient(db)
    exp = client.get_experiment_by_name("lighttrack")
    runs = client.search_runs([exp.experiment_id])
    assert len(runs) == 1, [r.info.run_id for r in runs]
    run = runs[0]
    assert run.info.status == "FINISHED"
    assert run.data.tags["lighttrack.phase"] == "pretrain"
    # resumed, not restarted: epoch 0 (checkpointed before the kill) is logged exactly once
    hist = client.get_metric_history(run.info.run_id, "train_loss")  # logged once per epoch
    assert sorted(m.step for m in hist) == [2, 4, 6], [(m.step, m.value) for m in hist]
    assert [a.path for a in client.list_artifacts(run.info.run_id, "checkpoint")] == ["checkpoint/checkpoint.pt"]
    # re-running the finished job neither trains again nor creates a second run
    again = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert again.returncode == 0, (again.stdout + again.stderr)[-4000:]
    assert "finished already with this config: nothing to do" in again.stdout
    assert "Started training worker group" not in again.stdout + again.stderr  # found out on the driver
    assert len(client.search_runs([exp.experiment_id])) == 1
