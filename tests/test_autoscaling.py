"""Jobs on a cluster that autoscales from zero: Ray's own autoscaler on its fake provider.

The head has no CPUs; worker nodes of two types start at 0: ``cpu`` (1 CPU) and ``gpu``
(1 CPU and a ``GPU`` resource standing in for an accelerator: the fake node has no real
one, so what runs there falls back to the CPU). Data, Ray storage and the evaluation
cache are in an S3 server (moto), runs in an MLflow server. A poller records which nodes
are alive every second, so each test reads when nodes came and went.

Each job also meets a spot reclaim mid-run: a node type's ``max_workers`` is lowered
below the number alive, so the autoscaler takes a busy node back through its provider,
then raised again, so a replacement may start (``LocalRay.set_max_workers``).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from devcluster.pipeline import ROOT, ensure_data
from devcluster.services import LocalCluster, submit_job

pytestmark = [pytest.mark.slow, pytest.mark.services]

NODE_TYPES = {"cpu": {"resources": {"CPU": 1}, "max_workers": 2},
              "gpu": {"resources": {"CPU": 1, "GPU": 1}, "max_workers": 2}}
IDLE_S = 15  # the autoscaler's idle timeout

POLL = """
import json, sys, time, ray
ray.init(address=sys.argv[1], logging_level="ERROR")
with open(sys.argv[2], "a", buffering=1) as f:
    while True:
        alive = [n for n in ray.nodes() if n["Alive"] and "node:__internal_head__" not in n["Resources"]]
        f.write(json.dumps({"t": time.time(), "nodes": {n["NodeID"]: "gpu" if "GPU" in n["Resources"] else "cpu"
                                                        for n in alive}}) + "\\n")
        time.sleep(1)
"""


class Timeline:
    """The worker nodes alive over time, as the poller saw them."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def samples(self, since: float = 0.0, until: float = float("inf")) -> list[dict]:
        rows = [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]
        return [r for r in rows if since <= r["t"] <= until]

    def alive(self) -> dict[str, str]:
        rows = self.samples()
        return rows[-1]["nodes"] if rows else {}

    def seen(self, since: float, until: float) -> dict[str, str]:
        out: dict[str, str] = {}
        for r in self.samples(since, until):
            out.update(r["nodes"])
        return out

    def wait_for_zero(self, timeout: float) -> float:
        """Seconds until no worker node is alive (the poller's view)."""
        t0 = time.time()
        while time.time() - t0 < timeout:
            if self.samples(t0) and not self.alive():
                return time.time() - t0
            time.sleep(1)
        raise AssertionError(f"still alive after {timeout:.0f} s: {self.alive()}")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, s3_server):
    c = LocalCluster(tmp_path_factory.mktemp("autoscaling"), nodes=0, s3=s3_server, node_types=NODE_TYPES,
                     idle_timeout_minutes=IDLE_S / 60)
    base = tmp_path_factory.mktemp("data")
    ensure_data(base, size="tiny")
    s3_server.upload(base / "data", "autoscaling", "data")
    for part in ("lighttrack", "ray_jobs", "configs"):  # what .rayignore lets a job upload
        shutil.copytree(ROOT / part, c.root / "code" / part, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", c.root / "code")
    log = tmp_path_factory.mktemp("timeline") / "nodes.jsonl"
    log.touch()
    saved = dict(os.environ)
    os.environ.update(s3_server.env)  # this process reads the bucket too (the evaluation cache)
    c.start()
    poller = subprocess.Popen([sys.executable, "-c", POLL, c.head.address, str(log)], env=c.head.client_env(),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield c, Timeline(log)
    finally:
        poller.terminate()
        poller.wait(10)
        c.stop()
        os.environ.clear()
        os.environ.update(saved)


def _submit(c: LocalCluster, module: str, *args: str, on_line=None) -> str:
    # The code as on every node already (see LocalCluster: an uploaded working dir is
    # unpacked again by each new fake node, under the running workers' feet).
    env = json.dumps({"env_vars": c.job_env, "working_dir": f"local://{c.root / 'code'}"})
    return submit_job(c.head, ["python", "-m", module, *map(str, args)], working_dir=None,
                      runtime_env_json=env, timeout=900, on_line=on_line)


class Reclaim:
    """Take one node of ``node_type`` back (max_workers one below the number alive), and
    once the poller sees it gone, allow the old number again; records when."""

    def __init__(self, c: LocalCluster, timeline: Timeline, node_type: str) -> None:
        self.c, self.timeline, self.node_type = c, timeline, node_type
        self.at = self.gone_at = None
        self.before: dict[str, str] = {}
        self.thread: threading.Thread | None = None

    def __call__(self) -> None:
        if self.at is not None:
            return
        self.before = self.timeline.alive()
        if not self.before:  # nothing to take back yet: the test's own assertions say so later
            return
        if self.node_type not in self.before.values():  # the autoscaler chose the other type
            self.node_type = next(iter(self.before.values()))
        n = sum(1 for t in self.before.values() if t == self.node_type)
        self.at = time.time()
        self.c.head.set_max_workers(self.node_type, n - 1)
        self.thread = threading.Thread(target=self._restore, args=(n,), daemon=True)
        self.thread.start()

    def _restore(self, n: int) -> None:
        while time.time() - self.at < 120:
            alive = self.timeline.alive()
            if sum(1 for t in alive.values() if t == self.node_type) < n:
                self.gone_at = time.time()
                break
            time.sleep(0.5)
        self.c.head.set_max_workers(self.node_type, NODE_TYPES[self.node_type]["max_workers"])

    @property
    def taken(self) -> set[str]:
        """The node(s) alive before the reclaim and not after it."""
        after = self.timeline.seen(self.gone_at, self.gone_at + 1) if self.gone_at else {}
        return set(self.before) - set(after)


@pytest.fixture(scope="module")
def supernet(cluster):
    """Phase 2 with --num-workers 2 (4 epochs) submitted to the cluster at zero, one of its
    two nodes reclaimed once epoch 1's checkpoint is in storage."""
    c, timeline = cluster
    assert not timeline.alive()
    got10k = c.s3.uri("autoscaling", "data", "synth", "got10k")
    reclaim = Reclaim(c, timeline, "cpu")
    resumed: list[float] = []

    def on_line(line: str) -> None:
        if "epoch 1/4" in line:  # printed once epoch 1's checkpoint is in storage
            reclaim()
        elif "resuming after epoch" in line and not resumed:
            resumed.append(time.time())

    t0 = time.time()
    name = f"autoscaled-{time.strftime('%H%M%S')}"
    logs = _submit(c, "ray_jobs.train_supernet", "--config", "configs/supernet_micro.yaml",
                   "--name", name, "--num-workers", "2", "--use-gpu", "false",
                   "--storage-path", c.s3.uri("autoscaling", "runs"), "--set", "epochs=4", "--set", "eval.num_paths=0",
                   "--set", f"data.sources=[{{root: {got10k}, kind: got10k, split: train, pairs_per_epoch: 4}}]",
                   on_line=on_line)
    if reclaim.thread is not None:
        reclaim.thread.join(150)
    run_id = logs.split("LIGHTTRACK_RUN_ID=")[-1].split()[0]
    return {"run_id": run_id, "name": name, "t0": t0, "t1": time.time(), "reclaim": reclaim,
            "resumed": resumed, "logs": logs}


def test_phase2_scales_up_from_zero_survives_a_reclaim_and_scales_back_down(cluster, supernet):
    """Both ranks' nodes start for the job; one is reclaimed after epoch 1: the run resumes from that checkpoint and ends as one FINISHED
    run with each epoch logged once; after the job the cluster goes back to zero."""
    from mlflow.tracking import MlflowClient

    c, timeline = cluster
    sn, reclaim = supernet, supernet["reclaim"]
    assert reclaim.at is not None, sn["logs"][-3000:]
    up = timeline.seen(sn["t0"], reclaim.at)
    # one node per rank, started for the job (the autoscaler, launching one fake node per
    # round, sometimes takes a `gpu` one for the second rank: its bin-packing, not ours)
    assert len(up) >= 2, up
    assert len(reclaim.taken) == 1 and reclaim.taken <= set(up), (reclaim.taken, up)
    client = MlflowClient(c.tracking_uri)
    run = client.get_run(sn["run_id"])
    assert run.info.status == "FINISHED" and run.data.params["run.num_workers"] == "2"
    found = client.search_runs([run.info.experiment_id], f"tags.`lighttrack.job` = '{sn['name']}'")
    assert len(found) == 1  # the resumed attempt logged into the same run
    hist = client.get_metric_history(sn["run_id"], "train_loss")
    assert sorted(m.step for m in hist) == sorted({m.step for m in hist}) and len(hist) == 4, \
        [(m.step, m.value) for m in hist]
    first_up = min(r["t"] for r in timeline.samples(sn["t0"]) if r["nodes"]) - sn["t0"]
    assert sn["resumed"], "the reclaim did not reach a running rank: no resume"
    cost = sn["resumed"][0] - reclaim.gone_at
    down = timeline.wait_for_zero(timeout=IDLE_S + 120)
    print(f"phase 2, 2 ranks, cluster at zero: nodes {sorted(up.values())}, the first {first_up:.0f} s after "
          f"submit; a rank's node "
          f"reclaimed after epoch 1, training resumed from its checkpoint {cost:.0f} s after the node was gone; job {sn['t1'] - sn['t0']:.0f} s; "
          f"back to zero {time.time() - sn['t1']:.0f} s after the job (idle timeout {IDLE_S} s)")
    assert down >= 0


def test_the_search_decides_gpu_from_node_types_spreads_as_nodes_arrive_and_survives_a_reclaim(cluster, supernet):
    """With --use-gpu auto and no GPU alive, the search asks for GPU evaluators because a
    node type has one; the autoscaler starts those nodes and both evaluators score
    candidates, each on a node that did not exist when the search began. Once both have,
    one of the two nodes is reclaimed: no candidate is lost, none is evaluated twice."""
    from mlflow.tracking import MlflowClient

    from lighttrack.search.cache import EvalCache

    c, timeline = cluster
    sn_run = supernet["run_id"]
    timeline.wait_for_zero(timeout=IDLE_S + 120)  # phase 2's nodes gone: the search starts at zero too
    got10k = c.s3.uri("autoscaling", "data", "synth", "got10k")
    cache = EvalCache(c.s3.uri("autoscaling", "runs", "eval_cache", sn_run))
    reclaim = Reclaim(c, timeline, "gpu")
    stop = threading.Event()

    def mine() -> list[dict]:
        return [r for r in cache.rows() if r["search"] == "autoscaled-search"]

    def watch() -> None:  # reclaim once both evaluators have written a row
        while not stop.is_set():
            if len({r["worker"].split(":")[0] for r in mine()}) == 2:
                reclaim()
                return
            time.sleep(1)

    watcher = threading.Thread(target=watch, daemon=True)
    t0 = time.time()
    watcher.start()
    try:
        logs = _submit(c, "ray_jobs.search", "--config", "configs/search_micro.yaml", "--name", "autoscaled-search",
                       "--storage-path", c.s3.uri("autoscaling", "runs"), "--supernet", sn_run,
                       "--budget", "600M,2M", "--workers", "2", "--use-gpu", "auto",
                       "--set", f"eval.val_root={got10k}", "--set", f"eval.recalibrate_root={got10k}",
                       "--set", "optimizer.generations=4")  # 12 candidates: both evaluators write before the reclaim
    finally:
        stop.set()
    t1 = time.time()
    if reclaim.thread is not None:
        reclaim.thread.join(150)
    run = MlflowClient(c.tracking_uri).get_run(logs.split("LIGHTTRACK_RUN_ID=")[-1].split()[0])
    assert float(run.data.params["run.gpus_per_evaluator"]) > 0  # decided from the node type: none was alive
    seen = timeline.seen(t0, reclaim.at or t1)
    rows = mine()
    nodes = {r["worker"].split(":")[0] for r in rows}
    print(f"search, 2 evaluators, --use-gpu auto, cluster at zero: nodes {sorted(seen.values())}; "
          f"{len(rows)} candidates on {len(nodes)} nodes; one node reclaimed "
          f"{(reclaim.at or t1) - t0:.0f} s in; search {t1 - t0:.0f} s; lost evaluators "
          f"{run.data.metrics.get('evaluators_lost')}")
    gpu_nodes = {n for n, t in seen.items() if t == "gpu"}
    assert len(gpu_nodes) == 2, seen  # one per evaluator, of the only type with a GPU
    assert len(nodes) == 2 and nodes <= gpu_nodes, (nodes, seen)  # both worked, on nodes started for them
    assert reclaim.at is not None and len(reclaim.taken) == 1, logs[-3000:]
    assert len(rows) == int(run.data.metrics["trials"]) and len({r["arch"] for r in rows}) == len(rows)
    assert any(r["worker"].split(":")[0] not in reclaim.taken for r in rows
               if r["finished"].timestamp() > reclaim.at), "nothing evaluated after the reclaim"
    timeline.wait_for_zero(timeout=IDLE_S + 120)
    print(f"back to zero {time.time() - t1:.0f} s after the search (idle timeout {IDLE_S} s)")
