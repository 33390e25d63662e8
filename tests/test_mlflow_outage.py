"""The MLflow server stopped for 30 s in the middle of a training job (stopped and started
again by the id of its process, on the same address and store): the job trains on, its
writes wait and retry (``ray_jobs.outbox``), and afterwards every metric is in the run once."""
from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from devcluster.services import LocalMlflow
from tests.home import EMBEDDED, ROOT

OUTAGE_S, EPOCHS, STEPS = 30, 12, 4
pytestmark = [pytest.mark.slow, pytest.mark.services]


def test_training_goes_on_through_a_tracking_server_outage_and_logs_every_metric_once(tmp_path):
    from mlflow.tracking import MlflowClient

    server = LocalMlflow(tmp_path / "mlflow").start()
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"} | {"MLFLOW_TRACKING_URI": server.uri}
    cmd = [sys.executable, "-m", "ray_jobs.pretrain_backbone", "--config", "configs/pretrain_micro.yaml",
           "--name", "outage", "--storage-path", str(tmp_path / "runs"), "--address", "local",
           "--set", f"data_root={EMBEDDED / 'imagenet'}", "--set", f"epochs={EPOCHS}",
           "--set", f"steps_per_epoch={STEPS}", "--set", "run.log_every=1"]
    job = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        client = MlflowClient(server.uri)
        deadline, run_id = time.time() + 300, None
        while time.time() < deadline and job.poll() is None:  # the first epoch is in the run
            runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
            if runs and client.get_metric_history(runs[0].info.run_id, "train_loss"):
                run_id = runs[0].info.run_id
                break
            time.sleep(0.5)
        assert run_id, "the job logged no epoch: " + (job.stdout.read() if job.poll() is not None else "")
        server.stop()
        down = time.time()
        time.sleep(OUTAGE_S)
        server.start()
        up = time.time()
        out = job.communicate(timeout=900)[0]
    finally:
        if job.poll() is None:
            job.kill()
        server.stop()
    assert job.returncode == 0, out[-4000:]
    assert "for the tracking server; training goes on" in out and "tracking server back after" in out, out[-3000:]
    server.start()
    try:
        client = MlflowClient(server.uri)
        run = client.get_run(run_id)
        epochs = client.get_metric_history(run_id, "train_loss")
        steps = client.get_metric_history(run_id, "loss")
    finally:
        server.stop()
    assert run.info.status == "FINISHED"
    assert sorted(m.step for m in epochs) == [STEPS * (e + 1) for e in range(EPOCHS)]  # each epoch once
    assert sorted(m.step for m in steps) == list(range(1, EPOCHS * STEPS + 1))  # each step once
    during = [m for m in steps if down * 1000 < m.timestamp < up * 1000]  # measured while it was down
    print(f"outage {up - down:.0f} s: {len(during)} of {len(steps)} steps trained during it; "
          f"job ended {time.time() - up:.0f} s after the server came back")
    assert during, "training waited for the tracking server"
