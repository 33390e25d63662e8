"""Shared test setup: one torch thread, a folder of the session's own, and real local services.

The suite runs in ``tests.home.HOME`` (a temporary folder with ``configs/`` linked in and
the tiny embedded set at ``data/synth``), so a relative path of a config or a default
``./mlflow.db`` lands there, never in the checkout; ``users_files_untouched`` fails the
session if the checkout's ``data/``, ``runs/``, ``mlflow.db`` or ``mlruns/`` changed.

``ray_cluster`` and ``mlflow_server`` are session-scoped and start only when a test asks
for them; they are shared by every test of the session and stopped (by the ids of the
processes they started) at the end, also when tests fail. ``submit_job`` runs a
``ray job submit`` of ``python -m ray_jobs.<job>`` against them and returns its logs.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Callable

import pytest

ROOT = Path(__file__).resolve().parents[1]

try:  # 2 shared cores: one thread per test process unless a test measures threads
    import torch

    torch.set_num_threads(1)
except ImportError:  # pragma: no cover - torch is a hard dependency; keep conftest importable
    pass

from devcluster.services import LocalMlflow, LocalRay, submit_job as _submit

from tests.home import EMBEDDED, HOME, OWNED, USERS, changes, fingerprint

_cwd = Path.cwd()


def pytest_sessionstart(session) -> None:
    """Into the session's own folder, with the tiny embedded set at ``data/synth``."""
    (HOME / "configs").unlink(missing_ok=True)
    (HOME / "configs").symlink_to(ROOT / "configs")
    if not (EMBEDDED / "got10k" / "val" / "list.txt").is_file() or not (EMBEDDED / "crop511").is_dir():
        from lighttrack.data import synth

        synth.write(EMBEDDED, seed=0, size="tiny", workers=2)
    os.chdir(HOME)


def pytest_sessionfinish(session, exitstatus) -> None:
    os.chdir(_cwd)
    if OWNED:
        shutil.rmtree(HOME, ignore_errors=True)


@pytest.fixture(scope="session", autouse=True)
def users_files_untouched():
    """The suite creates, changes and deletes nothing under the checkout's data/, runs/,
    mlflow.db or mlruns/ (the user's embedded set, runs and store)."""
    before = fingerprint(*USERS)
    yield
    lost = changes(before, fingerprint(*USERS))
    assert not lost, "the tests touched the user's files:\n  " + "\n  ".join(lost[:20])


def pytest_addoption(parser) -> None:
    parser.addoption("--all", action="store_true", help="also run the cases marked long (CI leaves them out)")


def pytest_collection_modifyitems(config, items) -> None:
    """Cases marked ``long`` run only with ``--all`` (``bash scripts/test.sh --all``).

    The single-node smoke's artifact checks run again in test_cluster.py, on the whole
    pipeline over a multi-node cluster: when that module runs in this session too, the
    single-node copy of the pipeline (4 min of 2 cores) is left out. Run alone, it runs."""
    from devcluster.services import LocalNode

    if not config.getoption("--all"):
        long = pytest.mark.skip(reason="too slow for CI: bash scripts/test.sh --all runs it")
        for item in items:
            if "long" in item.keywords:
                item.add_marker(long)
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
    from devcluster.services import LocalS3

    server = LocalS3(tmp_path_factory.mktemp("s3"))
    try:
        server.start()
        yield server
    finally:
        server.stop()
