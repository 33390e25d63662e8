"""ray_jobs/common.py: bad operational input is refused with a clear message before any work.

Uses the real shared MLflow server and Ray head from conftest.py (no mocks).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import mlflow
import pytest

from lighttrack.config import ConfigError
from ray_jobs import capacity, common
from ray_jobs.common import OpsError
from devcluster.services import free_port

ROOT = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------- MLflow

def test_setup_mlflow_unreachable_server_fails_fast(monkeypatch):
    uri = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    t0 = time.monotonic()
    with pytest.raises(OpsError, match="is not reachable") as e:
        common.setup_mlflow("x")
    assert uri in str(e.value) and "MLFLOW_TRACKING_URI" in str(e.value)
    assert time.monotonic() - t0 < 15


def test_setup_mlflow_default_and_missing_sqlite_directory(monkeypatch, tmp_path):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    assert common._default_tracking_uri() == f"sqlite:///{tmp_path / 'mlflow.db'}"
    uri = f"sqlite:///{tmp_path / 'nope' / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    with pytest.raises(OpsError, match=f"directory {tmp_path / 'nope'} does not exist"):
        common.setup_mlflow("x")


def test_setup_mlflow_sqlite_keeps_artifacts_beside_the_database(monkeypatch, tmp_path):
    """Not in ./mlruns of the directory the job was started from (MLflow's default)."""
    (tmp_path / "store").mkdir()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}")
    try:
        common.setup_mlflow("beside")
        exp = mlflow.get_experiment_by_name("beside")
        assert exp.artifact_location == (tmp_path / "store" / "mlartifacts").as_uri()
        with mlflow.start_run():
            mlflow.log_text("x", "a.txt")
        assert (tmp_path / "store" / "mlartifacts").is_dir() and not (tmp_path / "mlruns").exists()
        common.setup_mlflow("beside")  # an existing experiment is kept as it is
    finally:
        mlflow.set_tracking_uri(None)


@pytest.fixture()
def tracking(mlflow_server, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server.uri)
    assert common.setup_mlflow("test-common") == mlflow_server.uri
    return mlflow_server.uri


def _make_run(phase: str | None, finish: bool = True, artifact: dict | None = None) -> str:
    tags = {common.PHASE_TAG: phase} if phase else {}
    run = mlflow.start_run(tags=tags)
    if artifact is not None:
        mlflow.log_dict(artifact, "best_arch.json")
    if finish:
        mlflow.end_run()
    else:
        mlflow.end_run(status="RUNNING")
    return run.info.run_id


@pytest.mark.services
def test_resolve_run_input_downloads_the_artifact(tracking):
    run_id = _make_run("search", artifact={"arch": "smallest", "macs": 123})
    got = common.resolve_run_input(run_id, "search", "best_arch.json")
    assert got.run_id == run_id
    assert json.loads(got.path.read_text()) == {"arch": "smallest", "macs": 123}


@pytest.mark.services
def test_resolve_run_input_refuses_missing_run(tracking):
    missing = "0123456789abcdef0123456789abcdef"
    with pytest.raises(OpsError, match=f"run {missing} does not exist at {tracking}"):
        common.resolve_run_input(missing, "supernet", "checkpoint")


@pytest.mark.services
def test_resolve_run_input_refuses_wrong_phase(tracking):
    run_id = _make_run("pretrain")
    with pytest.raises(OpsError, match="is a pretrain run .* needs a 'supernet' run"):
        common.resolve_run_input(run_id, "supernet", "checkpoint")
    untagged = _make_run(None)
    with pytest.raises(OpsError, match="is a untagged run"):
        common.resolve_run_input(untagged, "supernet", "checkpoint")


@pytest.mark.services
def test_resolve_run_input_refuses_unfinished_run_and_missing_artifact(tracking):
    running = _make_run("search", finish=False)
    with pytest.raises(OpsError, match="did not finish: status RUNNING"):
        common.resolve_run_input(running, "search", "best_arch.json")
    done = _make_run("search", artifact={"arch": "smallest"})
    with pytest.raises(OpsError, match=r"has no artifact 'candidates.parquet'; it has \['best_arch.json'\]"):
        common.resolve_run_input(done, "search", "candidates.parquet")


def test_resolve_run_input_paths_and_garbage(tmp_path):
    f = tmp_path / "best_arch.json"
    f.write_text("{}")
    got = common.resolve_run_input(str(f), "search", "best_arch.json")
    assert got.path == f.resolve() and got.run_id is None
    with pytest.raises(OpsError, match="neither an existing path nor an MLflow run id"):
        common.resolve_run_input("no/such/file.pt", "supernet", "checkpoint")
    with pytest.raises(ValueError, match="not one of"):
        common.resolve_run_input(str(f), "phase5", "x")


@pytest.mark.services
def test_one_run_opener_tags_resumes_and_says_done(tracking, capsys):
    """Every job's run by one rule: new (phase, name, storage, parent tags; config as params;
    the run-id line), resumed while unfinished, "done" once finished with the same config,
    new again for another config."""
    @dataclass
    class Optim:
        lr: float = 0.1

    @dataclass
    class Cfg:
        epochs: int = 2
        optim: Optim = field(default_factory=Optim)

    exp = f"opener-{time.time_ns()}"
    mlflow.set_experiment(exp)  # as a job's setup_mlflow does
    run_id, status = common.open_run("supernet", "tagged", exp, Cfg(), {common.PARENT_TAG: "f" * 32}, "s3://b/runs")
    assert status == "new"
    line = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith(common.RUN_ID_PREFIX)]
    assert line == [f"{common.RUN_ID_PREFIX}{run_id}"]
    got = mlflow.get_run(run_id)
    assert got.info.run_name == "tagged" and got.data.params == {"epochs": "2", "optim.lr": "0.1"}
    assert got.data.tags[common.PHASE_TAG] == "supernet" and got.data.tags[common.PARENT_TAG] == "f" * 32
    with pytest.raises(RuntimeError), common.active_run(run_id):
        raise RuntimeError("lost the node")
    got = mlflow.get_run(run_id)
    assert got.info.status == "FAILED" and "lost the node" in got.data.tags[common.FAILURE_TAG]
    assert common.open_run("supernet", "tagged", exp, Cfg(), storage="s3://b/runs") == (run_id, "resumed")
    assert common.open_run("supernet", "tagged", exp, Cfg(), storage="s3://other")[1] == "new"  # other storage
    assert common.open_run("search", "tagged", exp, Cfg(), storage="s3://b/runs")[1] == "new"  # other phase
    with common.active_run(run_id):
        pass
    assert mlflow.get_run(run_id).info.status == "FINISHED"
    assert common.open_run("supernet", "tagged", exp, Cfg(), storage="s3://b/runs") == (run_id, "done")
    again, status = common.open_run("supernet", "tagged", exp, Cfg(epochs=3), storage="s3://b/runs")
    assert status == "new" and again != run_id
    with pytest.raises(ValueError, match="not one of"):
        common.open_run("phase5", "x", exp)


# ----------------------------------------------------------------------------- Ray

def test_connect_ray_unreachable_address_fails_before_init(monkeypatch):
    import ray

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    address = f"127.0.0.1:{free_port()}"
    t0 = time.monotonic()
    with pytest.raises(OpsError, match=f"Ray cluster at {address} is not reachable"):
        common.connect_ray(address)
    assert time.monotonic() - t0 < 10
    assert not ray.is_initialized()
    monkeypatch.setenv("RAY_ADDRESS", address)  # the environment variable is honoured too
    with pytest.raises(OpsError, match="not reachable"):
        common.connect_ray()


def test_connect_ray_rejects_dashboard_url_and_malformed_address():
    with pytest.raises(OpsError, match="dashboard URL"):
        common.connect_ray("http://127.0.0.1:8265")
    with pytest.raises(OpsError, match="not host:port"):
        common.connect_ray("somehost")


@pytest.mark.services
def test_connect_ray_reaches_the_shared_head(ray_cluster):
    # A separate process: the test process must not stay attached to the shared head.
    code = ("import ray; from ray_jobs.common import connect_ray; from ray_jobs.capacity import use_gpu; "
            f"connect_ray('{ray_cluster.address}'); "
            "print('CPU', ray.cluster_resources()['CPU'], 'GPU', use_gpu('auto'))")
    out = subprocess.run([sys.executable, "-c", code], env=ray_cluster.client_env(), cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "CPU 2.0 GPU False" in out.stdout


def test_storage_path_check():
    assert capacity.storage_path_check("s3://bucket/ckpt", num_nodes=4) == "s3://bucket/ckpt"
    assert capacity.storage_path_check("file:///mnt/shared", num_nodes=4) == "file:///mnt/shared"
    assert capacity.storage_path_check("runs/x", num_nodes=1) == str(Path("runs/x").resolve())
    assert capacity.storage_path_check(None, num_nodes=1) is None
    with pytest.raises(OpsError, match="'/tmp/ckpt' is a local path, but the Ray cluster has or can scale to 3 nodes"):
        capacity.storage_path_check("/tmp/ckpt", num_nodes=3)
    with pytest.raises(OpsError, match="no --storage-path was given"):
        capacity.storage_path_check(None, num_nodes=2)


# ----------------------------------------------------------------------------- CLI

@dataclass
class _Cfg:
    epochs: int = 1
    lr: float = 0.1


def test_common_args_and_unknown_config_key(tmp_path):
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text("epochs: 3\nlearning_rate: 0.5\n")
    p = common.add_common_args(argparse.ArgumentParser())
    args = p.parse_args(["--config", str(cfg_file)])
    with pytest.raises(ConfigError, match=r"c.yaml.*unknown key\(s\) \['learning_rate'\]"):
        common.load_config(_Cfg, args)
    args = p.parse_args(["--set", "epochs=5", "--set", "lr=0.01", "--use-gpu", "false"])
    assert common.load_config(_Cfg, args) == _Cfg(epochs=5, lr=0.01)
    assert capacity.use_gpu(args.use_gpu) is False and args.num_workers == 1


def test_run_main_turns_bad_input_into_one_error_line(capsys):
    def main(argv):
        raise OpsError("Ray cluster at 1.2.3.4:1 is not reachable")

    with pytest.raises(SystemExit) as e:
        common.run_main(main, [])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].endswith("error: Ray cluster at 1.2.3.4:1 is not reachable")


def test_training_job_config_paths_become_absolute(tmp_path, monkeypatch):
    """Ray Train workers do not run in the driver's directory: relative data roots and
    checkpoint paths that exist here are resolved before the config reaches them."""
    from ray_jobs.train_job import absolute_paths
    (tmp_path / "data" / "got10k").mkdir(parents=True)
    (tmp_path / "best_arch.json").write_text("{}")
    monkeypatch.chdir(tmp_path)
    cfg = {"data_root": "data", "init": "0123abcd" * 4, "arch": "best_arch.json",
           "data": {"sources": [{"root": "data/got10k", "kind": "got10k"}, {"root": "s3://b/got10k"}]},
           "eval": {"root": "missing/folder", "split": "val"}, "name": "data"}
    out = absolute_paths(cfg)
    assert out["data_root"] == str(tmp_path / "data")
    assert out["arch"] == str(tmp_path / "best_arch.json")
    assert out["data"]["sources"][0]["root"] == str(tmp_path / "data" / "got10k")
    assert out["data"]["sources"][1]["root"] == "s3://b/got10k"
    assert out["init"] == "0123abcd" * 4  # an MLflow run id, not a path
    assert out["eval"]["root"] == "missing/folder"  # left for the reader's own clear error
    assert out["name"] == "data"  # only path fields change


@pytest.mark.services
def test_capacity_counts_the_autoscalers_node_types_not_only_live_nodes(tmp_path):
    """A cluster scaled to zero has its head only: the node types the autoscaler publishes
    decide --use-gpu auto and the local-storage check (a private head: the record stays)."""
    from devcluster.services import LocalRay

    head = LocalRay(num_cpus=1).start()
    code = f"""
import ray
from ray.core.generated import autoscaler_pb2
from ray.experimental.internal_kv import _internal_kv_put
from ray_jobs.capacity import cluster_capacity, storage_path_check, use_gpu
from ray_jobs.common import OpsError, connect_ray
connect_ray('{head.address}')
print('BEFORE', cluster_capacity(), use_gpu('auto'), storage_path_check('/tmp/x'))
config = autoscaler_pb2.ClusterConfig(node_group_configs=[
    autoscaler_pb2.NodeGroupConfig(name='head', resources={{'CPU': 1}}, min_count=1, max_count=1),
    autoscaler_pb2.NodeGroupConfig(name='gpu', resources={{'CPU': 8, 'GPU': 1}}, min_count=0, max_count=4),
    autoscaler_pb2.NodeGroupConfig(name='unused', resources={{'CPU': 8}}, min_count=0, max_count=0)])
_internal_kv_put(ray._raylet.GCS_AUTOSCALER_CLUSTER_CONFIG_KEY.encode(), config.SerializeToString(),
                 namespace=ray._raylet.GCS_AUTOSCALER_STATE_NAMESPACE.encode())
print('AFTER', cluster_capacity(), use_gpu('auto'), use_gpu('false'))
try:
    storage_path_check('/tmp/x')
except OpsError as e:
    print('REFUSED', e)
"""
    try:
        out = subprocess.run([sys.executable, "-c", code], env=head.client_env(), cwd=ROOT,
                             capture_output=True, text=True, timeout=120)
    finally:
        head.stop()
    assert out.returncode == 0, out.stderr[-3000:]
    assert "BEFORE Capacity(live_nodes=1, max_nodes=1, max_gpus=0.0, max_cpus=1.0, node_types='') False /tmp/x" in out.stdout, out.stdout
    assert "AFTER Capacity(live_nodes=1, max_nodes=5, max_gpus=4.0, max_cpus=33.0, node_types='gcs') True False" in out.stdout, out.stdout
    assert "REFUSED --storage-path '/tmp/x' is a local path, but the Ray cluster has or can scale to 5 nodes" \
        in out.stdout


def test_node_types_come_from_the_autoscalers_config_file(tmp_path, monkeypatch):
    """No record in the GCS (Ray's autoscaler publishes none): the launcher's config file on
    the head gives the worker types; the head's type and the global max_workers cap apply."""
    from ray_jobs.capacity import CLUSTER_CONFIG_ENV, _node_types_from_file
    from ray_jobs.common import OpsError

    path = tmp_path / "ray_bootstrap_config.yaml"
    path.write_text("max_workers: 5\nhead_node_type: head\navailable_node_types:\n"
                    "  head: {resources: {CPU: 0}, max_workers: 0}\n"
                    "  cpu_worker: {resources: {CPU: 16}, min_workers: 0, max_workers: 4}\n"
                    "  gpu_worker: {resources: {CPU: 8, GPU: 1}, max_workers: 8}\n")
    monkeypatch.setenv(CLUSTER_CONFIG_ENV, str(path))
    assert _node_types_from_file() == ([({"CPU": 16}, 4), ({"CPU": 8, "GPU": 1}, 1)], str(path))  # 4 + 1: the cap
    path.write_text("available_node_types: [not, a, mapping]\n")
    with pytest.raises(OpsError, match="ray_bootstrap_config.yaml: not a Ray cluster config"):
        _node_types_from_file()
    monkeypatch.setenv(CLUSTER_CONFIG_ENV, str(tmp_path / "missing.yaml"))
    with pytest.raises(OpsError, match="missing.yaml does not exist"):
        _node_types_from_file()
    monkeypatch.delenv(CLUSTER_CONFIG_ENV)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # no ~/ray_bootstrap_config.yaml: live nodes only
    assert _node_types_from_file() == ([], "")


@pytest.mark.services
def test_a_job_on_an_autoscaling_cluster_at_zero_decides_from_its_node_types():
    """A head with no CPUs whose autoscaler (Ray's, on its fake provider) may start 2 plain
    nodes and 1 with a GPU, none started: a job's driver on that head counts 4 nodes and a
    GPU, so --use-gpu auto says yes and a local --storage-path is refused before any work."""
    from devcluster.services import LocalRay, submit_job

    head = LocalRay(num_cpus=0, node_types={"cpu": {"resources": {"CPU": 1}, "max_workers": 2},
                                            "gpu": {"resources": {"CPU": 1, "GPU": 1}, "max_workers": 1}})
    code = ("import ray\nfrom ray_jobs.capacity import cluster_capacity, storage_path_check, use_gpu\n"
            "from ray_jobs.common import OpsError, connect_ray\n"
            "ray.init()\nprint('CAP', cluster_capacity(), use_gpu('auto'))\n"
            "try:\n    storage_path_check('/tmp/x')\nexcept OpsError as e:\n    print('REFUSED', e)\n"
            "for n in (3, 4):\n    try:\n        cluster_capacity().check_fits('search workers', n, 1.0)\n"
            "        print('FITS', n)\n    except OpsError as e:\n        print('NOFIT', e)\n"
            "print('ALIVE', len([n for n in ray.nodes() if n['Alive']]))\n")
    head.start()
    try:
        logs = submit_job(head, ["python", "-c", code], working_dir=ROOT, timeout=180)
    finally:
        head.stop()
    assert "CAP Capacity(live_nodes=1, max_nodes=4, max_gpus=1.0, max_cpus=3.0, node_types='" in logs, logs[-3000:]
    assert "autoscaling.json') True" in logs  # the head autoscaler's own config file
    assert "FITS 3" in logs and "NOFIT search workers: 4 worker(s) of 1 CPU / 0 GPU need 4 CPUs" in logs
    assert "REFUSED --storage-path '/tmp/x' is a local path, but the Ray cluster has or can scale to 4 nodes" in logs
    assert "ALIVE 1" in logs  # the decision started no node


def test_set_takes_several_values_and_repeats_the_same_way_in_jobs_and_cli():
    """One --set grammar everywhere: several KEY=VALUE after one flag, or the flag repeated."""
    from lighttrack import cli

    p = argparse.ArgumentParser()
    common.add_common_args(p)
    args = p.parse_args(["--set", "a=1", "b.c=2", "--set", "epochs=-1"])
    assert args.overrides == ["a=1", "b.c=2", "epochs=-1"]
    got = cli.build_parser().parse_args(["export", "--arch", "smallest", "--out", "x", "--set", "lr=0.5",
                                         "context=0.4", "--set", "penalty_k=0.01"])
    assert got.set == ["lr=0.5", "context=0.4", "penalty_k=0.01"]
