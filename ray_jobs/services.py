"""Local Ray head and MLflow tracking server, started and stopped by this process.

Used by the one-command pipeline (``ray_jobs/pipeline.py``) and the test fixtures
(``tests/conftest.py``). Both services bind to 127.0.0.1 and Ray's token
authentication stays on: a fresh token is written to a private file and handed to
clients through ``RAY_AUTH_MODE=token`` / ``RAY_AUTH_TOKEN_PATH``.

Every process is started in its own session (process group) and stopped by that id
only: SIGTERM first (``ray start --block`` then stops the Ray processes it spawned),
SIGKILL for whatever is left after a grace period.
"""
from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["free_port", "LocalRay", "LocalMlflow", "ServiceError", "submit_job"]

HOST = "127.0.0.1"
BIN = Path(sys.executable).parent  # the venv's bin/: ray, mlflow


class ServiceError(RuntimeError):
    """A local service did not start or a submitted job failed."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def _wait_http(url: str, timeout: float, proc: subprocess.Popen, log: Path,
               headers: dict[str, str] | None = None) -> None:
    """Poll ``url`` until it answers 200; fail early if ``proc`` exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ServiceError(f"{proc.args[0]} exited with {proc.returncode} while starting; "
                               f"log {log}:\n{_tail(log)}")
        try:
            req = urllib.request.Request(url, headers=headers or {})
            with urllib.request.urlopen(req, timeout=2) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.5)
    raise ServiceError(f"{url} did not answer within {timeout:.0f} s; log {log}:\n{_tail(log)}")


def _tail(path: Path, n: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return "(no log)"


def _stop(proc: subprocess.Popen | None, leader_only: bool, grace: float = 20.0) -> None:
    """Stop ``proc`` and the process group (session) we created for it.

    SIGTERM to the leader only when ``leader_only`` (``ray start --block`` then shuts its
    children down in order; signalling all of them at once leaves raylet and GCS waiting
    on each other), else to the whole group; SIGKILL to what is left after ``grace`` s.
    """
    if proc is None:
        return
    try:
        if leader_only:
            proc.send_signal(signal.SIGTERM)
        else:
            os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and _group_alive(proc.pid):
        proc.poll()
        time.sleep(0.2)
    if _group_alive(proc.pid):
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # our own session: pgid == pid
        except ProcessLookupError:
            pass
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pass


def _group_alive(pgid: int) -> bool:
    """Whether any process of group ``pgid`` is still running (zombies do not count)."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # killpg(0) also succeeds for zombies; look at the states
        out = subprocess.run(["ps", "-o", "stat=", "--sid", str(pgid)], capture_output=True,
                             text=True, timeout=5).stdout.split()
        return any(not st.startswith("Z") for st in out)
    except (OSError, subprocess.TimeoutExpired):
        return True


@dataclass
class LocalRay:
    """A Ray head on 127.0.0.1 with token auth, run with ``ray start --head --block``."""

    num_cpus: int = 2
    object_store_mb: int = 200
    root: Path | None = None  # where temp dir, token and log go (short path: unix sockets)
    address: str = ""  # GCS address for ray.init(address=...)
    dashboard_url: str = ""  # for `ray job submit --address`
    env: dict[str, str] = field(default_factory=dict)  # client environment (auth token)
    _proc: subprocess.Popen | None = None
    _owns_root: bool = False

    def start(self, timeout: float = 120.0) -> "LocalRay":
        if self.root is None:
            self.root = Path(tempfile.mkdtemp(prefix="lt-ray-", dir="/tmp"))
            self._owns_root = True
        self.root.mkdir(parents=True, exist_ok=True)
        token_path = self.root / "auth_token"
        token_path.write_text(secrets.token_hex(32))
        token_path.chmod(0o600)
        # Loopback only: Ray otherwise swaps 127.0.0.1 for the machine's routable IP, in
        # the head and in every client (so clients get this setting too).
        self.env = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token_path),
                    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
        port, dash = free_port(), free_port()
        self.address = f"{HOST}:{port}"
        self.dashboard_url = f"http://{HOST}:{dash}"
        cmd = [
            str(BIN / "ray"), "start", "--head", "--block",
            f"--node-ip-address={HOST}", f"--port={port}",
            f"--num-cpus={self.num_cpus}", "--num-gpus=0",
            f"--object-store-memory={self.object_store_mb * 1024 * 1024}",
            "--include-dashboard=true", f"--dashboard-host={HOST}", f"--dashboard-port={dash}",
            # Explicit free ports so several heads (tests, pipeline) can share a machine.
            f"--ray-client-server-port={free_port()}",
            f"--dashboard-agent-listen-port={free_port()}",
            f"--dashboard-agent-grpc-port={free_port()}",
            f"--runtime-env-agent-port={free_port()}",
            f"--metrics-export-port={free_port()}",
            f"--temp-dir={self.root / 't'}", "--disable-usage-stats",
        ]
        log = self.root / "ray-head.log"
        # Jobs run `python ...`: make that the interpreter Ray itself runs in (the venv).
        path = f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"
        # RAY_ADDRESS: Ray's own helper processes (e.g. Ray Train's placement-group
        # cleaner) call ray.init() without an address and must find this head even when
        # other local heads run beside it.
        env = {**os.environ, **self.env, "PATH": path, "RAY_USAGE_STATS_ENABLED": "0",
               "RAY_ADDRESS": self.address}
        with open(log, "wb") as f:
            self._proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env=env,
                                          start_new_session=True)
        token = token_path.read_text()
        try:
            # The job API answers once the dashboard and its job agent are up.
            _wait_http(f"{self.dashboard_url}/api/jobs/", timeout, self._proc, log,
                       headers={"Authorization": f"Bearer {token}"})
        except BaseException:
            self.stop()
            raise
        return self

    def client_env(self) -> dict[str, str]:
        """``os.environ`` plus what a client (ray.init, ray job submit) needs."""
        env = {**os.environ, **self.env}
        env.pop("RAY_ADDRESS", None)
        return env

    def stop(self) -> None:
        _stop(self._proc, leader_only=True)
        self._proc = None
        if self._owns_root and self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)


@dataclass
class LocalMlflow:
    """``mlflow server`` with a sqlite backend and a local artifact store on 127.0.0.1."""

    root: Path  # holds mlflow.db, artifacts/ and the log
    uri: str = ""
    _proc: subprocess.Popen | None = None

    def start(self, timeout: float = 120.0) -> "LocalMlflow":
        self.root.mkdir(parents=True, exist_ok=True)
        port = free_port()
        self.uri = f"http://{HOST}:{port}"
        cmd = [
            str(BIN / "mlflow"), "server",
            "--backend-store-uri", f"sqlite:///{(self.root / 'mlflow.db').resolve()}",
            "--artifacts-destination", str((self.root / "artifacts").resolve()),
            "--host", HOST, "--port", str(port), "--workers", "1",
        ]
        log = self.root / "mlflow-server.log"
        # The server's job runner (a pool of huey consumers) serves GenAI features we do
        # not use and would take cores from training on a 2-core machine.
        env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
        with open(log, "ab") as f:
            self._proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT,
                                          start_new_session=True, env=env)
        try:
            _wait_http(f"{self.uri}/health", timeout, self._proc, log)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        _stop(self._proc, leader_only=False)
        self._proc = None


def submit_job(ray: LocalRay | str, entrypoint: list[str], *, working_dir: str | Path = ".",
               env: dict[str, str] | None = None, runtime_env_json: str | None = None,
               timeout: float = 600.0, check: bool = True) -> str:
    """``ray job submit --address ... --working-dir ... -- <entrypoint>``; returns the logs.

    ``ray`` is a :class:`LocalRay` (its dashboard URL and token are used) or a dashboard URL.
    Raises :class:`ServiceError` with the logs when the job fails and ``check`` is set.
    """
    url = ray.dashboard_url if isinstance(ray, LocalRay) else ray
    client_env = ray.client_env() if isinstance(ray, LocalRay) else os.environ.copy()
    client_env.update(env or {})
    cmd = [str(BIN / "ray"), "job", "submit", "--address", url, "--working-dir", str(working_dir)]
    if runtime_env_json:
        cmd += ["--runtime-env-json", runtime_env_json]
    cmd += ["--", *entrypoint]
    for attempt in range(3):
        proc = subprocess.run(cmd, env=client_env, capture_output=True, text=True, timeout=timeout)
        logs = proc.stdout + proc.stderr
        # A dashboard that has just come up may drop the upload connection once; retry
        # only when the job was certainly not created.
        if proc.returncode == 0 or "submitted successfully" in logs or "ConnectionError" not in logs:
            break
        time.sleep(3)
    if check and proc.returncode != 0:
        raise ServiceError(f"job {' '.join(entrypoint)} failed (exit {proc.returncode}):\n{logs[-6000:]}")
    return logs
