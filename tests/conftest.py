"""Shared test setup: one torch thread and real local services.

``ray_cluster`` and ``mlflow_server`` are session-scoped and start only when a test asks
for them; they are shared by every test of the session and stopped (by the ids of the
processes they started) at the end, also when tests fail. ``submit_job`` runs a
``ray job submit`` of ``python -m ray_jobs.<job>`` against them and returns its logs.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import pytest

ROOT = Path(__file__).resolve().parents[1]

try:  # 2 shared cores: one thread per test process unless a test measures threads
    import torch

    torch.set_num_threads(1)
except ImportError:  # pragma: no cover - torch is a hard dependency; keep conftest importable
    pass

from ray_jobs.services import LocalMlflow, LocalRay, submit_job as _submit

EMBEDDED = ROOT / "data" / "synth"


def pytest_sessionstart(session) -> None:
    """Tests that read the embedded dataset at ``data/synth`` (the pipeline's location) get
    its tiny size written there when a fresh clone has none; a full one is used as it is."""
    if not (EMBEDDED / "got10k" / "val" / "list.txt").is_file() or not (EMBEDDED / "crop511").is_dir():
        from lighttrack.data import synth

        synth.write(EMBEDDED, seed=0, size="tiny", workers=2)


def pytest_collection_modifyitems(config, items) -> None:
    """The single-node smoke's artifact checks run again in test_cluster.py, on the whole
    pipeline over a multi-node cluster: when that module runs in this session too, the
    single-node copy of the pipeline (4 min of 2 cores) is left out. Run alone, it runs."""
    from ray_jobs.services import LocalNode

    cluster_runs = any(item.path.name == "test_cluster.py" for item in items) and not LocalNode.unavailable()
    if not cluster_runs:
        return
    skip = pytest.mark.skip(reason="test_cluster.py runs these checks on its multi-node pipeline")
    for item in items:
        if item.path.name == "test_pipeline_smoke.py" and "smoke" in getattr(item, "fixturenames", ()):
            item.add_marker(skip)


@pytest.fixture(scope="session")
def ray_cluster():
    """A real ``ray start --head`` on 127.0.0.1 (2 CPUs, token auth on).

    Attributes: ``address`` (for ``ray.init``), ``dashboard_url`` (for
    ``ray job submit --address``), ``env`` (what a client adds to its environment:
    ``RAY_AUTH_MODE=token``, ``RAY_AUTH_TOKEN_PATH``), ``client_env()``.
    """
    head = LocalRay(num_cpus=2, object_store_mb=200)
    try:
        head.start()
        yield head
    finally:
        head.stop()


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory):
    """A real ``mlflow server`` (sqlite backend, local artifacts) on 127.0.0.1; ``.uri``."""
    server = LocalMlflow(tmp_path_factory.mktemp("mlflow"))
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def submit_job(ray_cluster, mlflow_server) -> Callable[..., str]:
    """``submit_job("ray_jobs.x", *args, timeout=600, check=True) -> logs``: ``python -m ray_jobs.x *args``.

    Submits with ``--working-dir`` = the repo root and ``MLFLOW_TRACKING_URI`` set to the
    shared server; raises ``ServiceError`` with the logs if the job fails and ``check``.
    """
    runtime_env = json.dumps({"env_vars": {"MLFLOW_TRACKING_URI": mlflow_server.uri}})

    def run(module: str, *args: str, timeout: float = 600.0, check: bool = True) -> str:
        return _submit(ray_cluster, ["python", "-m", module, *map(str, args)], working_dir=ROOT,
                       runtime_env_json=runtime_env, timeout=timeout, check=check)

    return run


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    """A real S3-compatible server (moto's server mode) on 127.0.0.1 with the bucket
    ``lighttrack``; ``.env`` is what a client needs, ``.upload(folder, prefix)`` fills it."""
    from ray_jobs.services import LocalS3

    server = LocalS3(tmp_path_factory.mktemp("s3"))
    try:
        server.start()
        yield server
    finally:
        server.stop()
