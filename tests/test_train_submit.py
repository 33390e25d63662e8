"""Phase 1 through a real ``ray job submit`` (shared Ray head with token auth + MLflow server).

The job is uploaded with ``--working-dir`` = the repo, connects to the cluster through the
``RAY_ADDRESS`` Ray sets for it, logs to the MLflow server given by ``MLFLOW_TRACKING_URI``
in the runtime env, and prints the ``LIGHTTRACK_RUN_ID=`` line the pipeline driver reads.
"""
from __future__ import annotations

import re
import time

import pytest
import torch

from ray_jobs.common import PHASE_TAG, RUN_ID_PREFIX

pytestmark = [pytest.mark.slow, pytest.mark.services]


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    from lighttrack.data.synth import write
    out = tmp_path_factory.mktemp("synth")
    write(out, seed=0, size="tiny")
    return out


def test_pretrain_micro_via_ray_job_submit(submit_job, mlflow_server, tiny_data, tmp_path):
    from mlflow.tracking import MlflowClient

    from lighttrack.models import ClassSupernet

    name = f"p1-submit-{time.strftime('%H%M%S')}"
    logs = submit_job("ray_jobs.pretrain_backbone", "--config", "configs/pretrain_micro.yaml",
                      "--name", name, "--storage-path", str(tmp_path / "runs"),
                      "--set", f"data_root={tiny_data / 'imagenet'}", timeout=900)
    ids = re.findall(rf"^{RUN_ID_PREFIX}([0-9a-f]{{32}})\s*$", logs, re.M)
    assert ids, logs[-4000:]
    assert "epoch 2/2" in logs  # the driver-side progress line of the last epoch
    client = MlflowClient(mlflow_server.uri)
    run = client.get_run(ids[-1])
    assert run.info.status == "FINISHED"
    assert run.info.run_name == name
    assert run.data.tags[PHASE_TAG] == "pretrain"
    assert run.data.params["epochs"] == "2" and run.data.params["model.num_classes"] == "10"
    # one epoch metric per epoch, step metrics every step (micro: log_every 1, 2 x 2 steps)
    assert [m.step for m in client.get_metric_history(run.info.run_id, "train_loss")] == [2, 4]
    assert sorted(m.step for m in client.get_metric_history(run.info.run_id, "loss")) == [1, 2, 3, 4]
    assert len(client.get_metric_history(run.info.run_id, "top1/path0")) == 2
    path = client.download_artifacts(run.info.run_id, "checkpoint/checkpoint.pt", str(tmp_path))
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    assert ckpt["epoch"] == 1 and ckpt["global_step"] == 4  # the last epoch's checkpoint
    ClassSupernet(10).load_state_dict(ckpt["model"])  # strict


def test_job_uploads_the_source_only_whatever_the_folder_holds(ray_cluster, tmp_path):
    """`... | tee run.log` in the project folder: a file growing during the upload, a
    database and a folder of logs beside the source never travel with a job."""
    import threading

    from devcluster.pipeline import ROOT
    from devcluster.services import submit_job

    strays = [ROOT / "lt-test-growing.log", ROOT / "lt-test.db", ROOT / "lt-test-logs"]
    strays[2].mkdir(exist_ok=True)
    (strays[2] / "old.log").write_text("x" * 1000)
    strays[1].write_bytes(b"\0" * 100_000)
    stop = threading.Event()

    def grow() -> None:
        with open(strays[0], "a") as f:
            while not stop.is_set():
                f.write("a log line that keeps coming\n")
                f.flush()
                time.sleep(0.005)

    writer = threading.Thread(target=grow, daemon=True)
    writer.start()
    try:
        logs = submit_job(ray_cluster, ["python", "-c", "import os; print('LISTING', sorted(os.listdir('.')))"],
                          working_dir=ROOT, timeout=300)
    finally:
        stop.set()
        writer.join()
        strays[0].unlink(missing_ok=True)
        strays[1].unlink(missing_ok=True)
        import shutil
        shutil.rmtree(strays[2], ignore_errors=True)
    listing = re.findall(r"^LISTING (.*)$", logs, re.M)
    assert listing, logs[-3000:]
    assert listing[-1] == "['configs', 'lighttrack', 'pyproject.toml', 'ray_jobs']"
