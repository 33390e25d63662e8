"""The phases on a multi-node cluster of real parts, with data, checkpoints and runs in a bucket.

A Ray head with no CPUs and two worker nodes, each in its own mount namespace with a
private ``/tmp`` and the project's ``runs/`` and ``data/`` hidden (``LocalNode``): like a
second machine, a worker sees nothing the driver wrote locally. Data, Ray storage, the
evaluation cache and MLflow's artifacts live in an S3 server on 127.0.0.1 (moto). Every
phase goes through ``ray job submit``; phase 2 runs DDP across the two worker nodes and
the search's two evaluators sit one on each. The single-node smoke test's artifact checks
run here again, on this cluster's runs; then the faults: the driver's temporary folders
deleted mid-search, a worker node lost in phase 2, an evaluator's node lost in the search.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import threading
import time
from pathlib import Path

import pytest

from devcluster.pipeline import PHASES, ROOT, ensure_data, run_phases
from devcluster.services import LocalCluster, LocalNode, submit_job
# The single-node smoke test's checks, run again on this module's `smoke` fixture.
from tests.test_pipeline_smoke import (  # noqa: F401
    test_pretrain_run_and_checkpoint, test_retrain_run_and_checkpoint, test_search_best_arch_and_candidates,
    test_supernet_run_and_checkpoint,
)

pytestmark = [pytest.mark.slow, pytest.mark.services]

HIDDEN = (ROOT / "runs", ROOT / "data")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, s3_server):
    if LocalNode.unavailable():
        pytest.skip(LocalNode.unavailable())
    made = [d for d in HIDDEN if not d.exists()]  # a mount point is needed to hide a folder
    for d in made:
        d.mkdir()
    c = LocalCluster(tmp_path_factory.mktemp("cluster"), nodes=2, cpus_per_node=1, hide=HIDDEN, s3=s3_server)
    saved = dict(os.environ)
    os.environ.update(s3_server.env)  # this process reads the bucket too (the evaluation cache)
    try:
        c.start()
        yield c
    finally:
        c.stop()
        os.environ.clear()
        os.environ.update(saved)
        for d in made:  # empty unless this process wrote there, which users_files_untouched reports
            if not any(d.iterdir()):
                d.rmdir()


def _submit(cluster: LocalCluster, module: str, *args: str, on_line=None, check: bool = True,
            timeout: float = 900) -> str:
    env = json.dumps({"env_vars": cluster.job_env})
    return submit_job(cluster.head, ["python", "-m", module, *map(str, args)], working_dir=ROOT,
                      runtime_env_json=env, timeout=timeout, check=check, on_line=on_line)


@pytest.fixture(scope="module")
def smoke(cluster, tmp_path_factory):
    """Phases 1-4 (micro) on the cluster, data read from s3://; {phase: run id}, client, timing."""
    from mlflow.tracking import MlflowClient

    base = tmp_path_factory.mktemp("data")
    ensure_data(base, size="tiny")
    cluster.s3.upload(base / "data", "cluster", "data")  # -> s3://lighttrack/cluster/data/synth/...
    t0 = time.monotonic()
    runs = run_phases(lambda ph, args: _submit(cluster, ph.module, *args), "micro", [ph.name for ph in PHASES],
                      time.strftime("%H%M%S"), cluster.s3.uri("cluster", "runs"), data_base=cluster.s3.uri("cluster"),
                      extra={"supernet": ["--num-workers", "2"], "search": ["--workers", "2"]})
    print(f"micro pipeline on {len(cluster.workers)} worker nodes + head: {time.monotonic() - t0:.0f} s")
    return runs, MlflowClient(cluster.mlflow.uri), base


def _cache_rows(cluster: LocalCluster, supernet_run: str) -> list[dict]:
    from lighttrack.search.cache import EvalCache
    return EvalCache(cluster.s3.uri("cluster", "runs", "eval_cache", supernet_run)).rows()


def test_everything_a_job_keeps_is_in_the_bucket(smoke, cluster):
    import pyarrow.fs as pafs

    runs, client, _ = smoke
    for run_id in runs.values():  # MLflow's artifact store is the bucket, proxied by the server
        assert client.get_run(run_id).info.artifact_uri.startswith("mlflow-artifacts:")
    s3 = cluster.s3.filesystem()
    listed = [i.path for i in s3.get_file_info(pafs.FileSelector("lighttrack", recursive=True))]
    assert any(p.startswith("lighttrack/mlflow/") and p.endswith(f"{runs['retrain']}/artifacts/checkpoint/checkpoint.pt")
               for p in listed)
    # Ray Train checkpoints of phases 1, 2 and 4 at the storage path: lighttrack/cluster/runs/<job>/checkpoint_*/
    jobs = {p.split("/")[3].split("-")[0] for p in listed
            if p.startswith("lighttrack/cluster/runs/") and p.endswith("/checkpoint.pt")}
    assert jobs >= {"pretrain", "supernet", "retrain"}, jobs


def test_phase2_ran_ddp_on_two_nodes_and_the_search_on_both(smoke, cluster):
    runs, client, _ = smoke
    sn = client.get_run(runs["supernet"])
    assert sn.data.params["run.num_workers"] == "2"  # 1 CPU per worker node: one rank on each
    # the five kinds of source of the paper's mix, each read from the bucket through its index
    sources = json.loads(sn.data.params["data.sources"])
    assert sorted(s["kind"] for s in sources) == ["coco", "crop511", "det", "got10k", "vid"]
    assert all(s["index"].startswith(f"{s['root']}/.index/") and s["root"].startswith("s3://") for s in sources)
    rows = _cache_rows(cluster, runs["supernet"])
    search = client.get_run(runs["search"])
    mine = [r for r in rows if r["search"] == search.data.tags["lighttrack.job"]]
    trials = int(search.data.metrics["trials"])
    assert len(mine) == trials and len({r["arch"] for r in mine}) == trials  # one row per trial
    assert len({r["worker"].split(":")[0] for r in mine}) == 2, [r["worker"] for r in mine]  # two nodes
    assert json.loads(search.data.params["budgets"]) == ["600M_2M"]  # what ran, not the config's empty list
    assert search.data.params["run.workers"] == "2"
    # the cache went back to the supernet run, where the next search on it finds it
    parts = [a.path for a in client.list_artifacts(runs["supernet"], "eval_cache")]
    assert parts and all(p.endswith(".parquet") for p in parts), parts


def _new_tmp_dirs(since: float) -> list[Path]:
    return [p for p in Path("/tmp").glob("lt-*") if p.is_dir() and not p.name.startswith("lt-ray-")
            and p.stat().st_mtime >= since]


def test_search_survives_deleting_the_drivers_temporary_folders(smoke, cluster, tmp_path):
    """The driver (on the head) downloads the supernet into a temporary folder; once the
    search runs, nothing may depend on it: the folders go, best_arch.json still comes."""
    runs, client, _ = smoke
    t0 = time.time() - 1
    deleted: list[str] = []

    def on_line(line: str) -> None:
        if "evaluator(s) ready" in line:
            for d in _new_tmp_dirs(t0):
                shutil.rmtree(d, ignore_errors=True)
                deleted.append(d.name)

    logs = _submit(cluster, "ray_jobs.search", "--config", "configs/search_micro.yaml", "--name", "tmp-gone",
                   "--storage-path", cluster.s3.uri("cluster", "runs"), "--supernet", runs["supernet"],
                   "--budget", "500M,2M", "--workers", "2", "--set", "eval.seed=1",
                   "--set", f"eval.val_root={cluster.s3.uri('cluster', 'data', 'synth', 'got10k')}",
                   "--set", f"eval.recalibrate_root={cluster.s3.uri('cluster', 'data', 'synth', 'got10k')}",
                   on_line=on_line)
    assert any(d.startswith("lt-supernet-") for d in deleted), (deleted, logs[-2000:])
    run_id = logs.split("LIGHTTRACK_RUN_ID=")[-1].split()[0]
    best = json.loads(Path(client.download_artifacts(run_id, "best_arch.json", str(tmp_path))).read_text())
    assert best["budget"] == "500M_2M" and 0.0 <= best["ao"] <= 1.0


def _node_running(cluster: LocalCluster, title: str):
    for node in cluster.workers:
        if any(title in args for _, args in node.processes()):
            return node
    return None


def test_phase2_resumes_when_a_worker_node_is_lost(smoke, cluster, tmp_path):
    """The node of the only Train worker dies after epoch 2's checkpoint: the worker group
    restarts on the other node from that checkpoint, and the job ends as one MLflow run
    with every epoch logged once. Its input is a file on the driver's disk, which no worker
    node can see: the driver hands the weights over through the object store."""
    runs, client, _ = smoke
    init = Path(client.download_artifacts(runs["pretrain"], "checkpoint/checkpoint.pt", str(tmp_path)))
    killed: list[str] = []

    def on_line(line: str) -> None:
        if "epoch 2/4" in line and not killed:  # printed once epoch 2's checkpoint is in storage
            node = _node_running(cluster, "ray::RayTrainWorker")
            assert node is not None, "no node runs a Train worker"
            node.kill()
            killed.append(str(node.port_base))

    got10k = cluster.s3.uri("cluster", "data", "synth", "got10k")
    name = f"node-lost-{time.strftime('%H%M%S')}"
    try:
        logs = _submit(cluster, "ray_jobs.train_supernet", "--config", "configs/supernet_micro.yaml",
                       "--name", name, "--storage-path", cluster.s3.uri("cluster", "runs"),
                       "--set", f"init={init}", "--set", "epochs=4", "--set", "eval.num_paths=0",
                       "--set", f"data.sources=[{{root: {got10k}, kind: got10k, split: train, pairs_per_epoch: 8}}]",
                       on_line=on_line)
    finally:
        cluster.workers = [n for n in cluster.workers if n.pid is not None and str(n.port_base) not in killed]
        while len(cluster.workers) < 2:
            cluster.add_node()  # the autoscaler's part: the next tests have two nodes again
    assert killed, logs[-3000:]
    exp = client.get_experiment_by_name("lighttrack")
    found = client.search_runs([exp.experiment_id], f"tags.`lighttrack.job` = '{name}'")
    assert len(found) == 1
    run = found[0]
    assert run.info.status == "FINISHED"
    assert run.data.tags["lighttrack.parent_path"] == str(init.resolve())
    hist = client.get_metric_history(run.info.run_id, "train_loss")  # logged once per epoch
    assert sorted(m.step for m in hist) == [2, 4, 6, 8], [(m.step, m.value) for m in hist]


def test_search_loses_no_candidate_when_an_evaluators_node_is_lost(smoke, cluster, tmp_path):
    """Two evaluators, one per node; one node dies after the first result: every candidate
    is still evaluated, elsewhere, none twice (counted from the cache)."""
    runs, client, _ = smoke
    killed: list[str] = []
    stop = threading.Event()
    got10k = cluster.s3.uri("cluster", "data", "synth", "got10k")
    name = "evaluator-node-lost"

    def watch() -> None:  # kill once this search's first row is in the cache
        while not stop.is_set() and not killed:
            mine = [r for r in _cache_rows(cluster, runs["supernet"]) if r["search"] == name]
            if mine:
                node = _node_running(cluster, "ray::Evaluator")  # the actor class's process title
                if node is not None:
                    node.kill()
                    killed.append(str(node.port_base))
            time.sleep(0.5)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        logs = _submit(cluster, "ray_jobs.search", "--config", "configs/search_micro.yaml", "--name", name,
                       "--storage-path", cluster.s3.uri("cluster", "runs"), "--supernet", runs["supernet"],
                       "--budget", "700M,3M", "--workers", "2", "--set", "eval.seed=2",
                       "--set", "optimizer.population=4", "--set", "optimizer.generations=2",
                       "--set", f"eval.val_root={got10k}", "--set", f"eval.recalibrate_root={got10k}")
    finally:
        stop.set()
        watcher.join(timeout=30)
        cluster.workers = [n for n in cluster.workers if str(n.port_base) not in killed]
        while len(cluster.workers) < 2:
            cluster.add_node()
    (tmp_path / "search.log").write_text(logs)
    why = "\n".join(line for line in logs.splitlines() if "lost" in line or "rror" in line)[-4000:]
    assert killed, logs[-3000:]
    mine = [r for r in _cache_rows(cluster, runs["supernet"]) if r["search"] == name]
    assert len(mine) == 8, (len(mine), why, tmp_path)  # population 4 x 2 generations: none lost
    assert len({r["arch"] for r in mine}) == 8  # none evaluated twice
    summary = [line for line in logs.splitlines() if line.startswith("search 700M_3M:") and "trials," in line]
    # a row the lost evaluator wrote just before its node died is a cache answer on the retry
    counts = re.search(r"(\d+) trials, (\d+) cache answers", summary[-1] if summary else "")
    assert counts and int(counts[1]) + int(counts[2]) == 8, summary
    run_id = logs.split("LIGHTTRACK_RUN_ID=")[-1].split()[0]
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.data.metrics["evaluators_lost"] == 1
