"""Local Ray head and MLflow tracking server, started and stopped by this process.

Used by the one-command pipeline (``devcluster/pipeline.py``) and the test fixtures
(``tests/conftest.py``). Both services bind to 127.0.0.1 and Ray's token
authentication stays on: a fresh token is written to a private file and handed to
clients through ``RAY_AUTH_MODE=token`` / ``RAY_AUTH_TOKEN_PATH``.

Every process is started in its own session (process group) and stopped by that id
only: SIGTERM first (``ray start --block`` then stops the Ray processes it spawned),
SIGKILL for whatever is left after a grace period.
"""
from __future__ import annotations

import json
import re
import os
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

__all__ = ["free_port", "LocalRay", "LocalNode", "LocalMlflow", "LocalS3", "LocalCluster", "ServiceError",
           "submit_job"]

HOST = "127.0.0.1"
BIN = Path(sys.executable).parent  # the venv's bin/: ray, mlflow
ROOT = Path(__file__).resolve().parents[1]  # the checkout


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
    """A Ray head on 127.0.0.1 with token auth, run with ``ray start --head --block``.

    With ``node_types`` the head runs Ray's real autoscaler on its fake multi-node provider
    (what ``ray.cluster_utils.AutoscalingCluster`` does, but started and stopped by the id of
    our own process, never ``ray stop``): worker nodes of those types (the cluster config's
    ``available_node_types`` entries: ``resources``, ``min_workers``, ``max_workers``) are
    started on this machine when tasks need them and stopped after ``idle_timeout_minutes``.
    """

    num_cpus: int = 2
    object_store_mb: int = 200
    root: Path | None = None  # where temp dir, token and log go (short path: unix sockets)
    extra_env: dict[str, str] = field(default_factory=dict)  # for the head's processes (e.g. S3 endpoint)
    node_types: dict[str, dict] | None = None  # autoscaled worker node types (None: no autoscaler)
    idle_timeout_minutes: float = 0.25
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
        scaler_env = {}
        if self.node_types is not None:
            config = self._autoscaling_config()
            cmd.append(f"--autoscaling-config={config}")
            # Autoscaler v1. It publishes no node types in the GCS: the job drivers (on the
            # head, with its environment) read the config file, as on a `ray up` head.
            scaler_env = {"RAY_FAKE_CLUSTER": "1", "AUTOSCALER_UPDATE_INTERVAL_S": "1",
                          "LIGHTTRACK_CLUSTER_CONFIG": str(config)}
        log = self.root / "ray-head.log"
        # Jobs run `python -m ray_jobs.<job>`: make that `python` the one Ray itself runs in (the venv).
        path = f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"
        # RAY_ADDRESS: Ray's own helper processes (e.g. Ray Train's placement-group
        # cleaner) call ray.init() without an address and must find this head even when
        # other local heads run beside it.
        env = {**os.environ, **self.extra_env, **self.env, **scaler_env, "PATH": path,
               "RAY_USAGE_STATS_ENABLED": "0", "RAY_ADDRESS": self.address}
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

    def _autoscaling_config(self) -> Path:
        """The cluster config the head's autoscaler reads: our node types, the fake provider."""
        types = {"ray.head.default": {"resources": {}, "node_config": {}, "max_workers": 0}}
        for name, t in (self.node_types or {}).items():
            types[name] = {"node_config": {}, "min_workers": 0, **t}
            types[name]["resources"] = {"object_store_memory": 100 * 1024 * 1024, **t.get("resources", {})}
        config = {
            "cluster_name": "lighttrack-local",
            # Fake nodes are processes here: nothing to set up on them, no launch config to compare.
            "provider": {"type": "fake_multinode", "gcs_address": self.address, "use_node_id_as_ip": True,
                         "disable_node_updaters": True, "disable_launch_config_check": True},
            "max_workers": sum(t.get("max_workers", 0) for t in types.values()),
            "idle_timeout_minutes": self.idle_timeout_minutes, "upscaling_speed": 1.0,
            "head_node_type": "ray.head.default", "available_node_types": types,
            "auth": {}, "docker": {}, "file_mounts": {}, "cluster_synced_files": [],
            "file_mounts_sync_continuously": False, "initialization_commands": [], "setup_commands": [],
            "head_setup_commands": [], "worker_setup_commands": [], "head_start_ray_commands": [],
            "worker_start_ray_commands": []}
        path = self.root / "autoscaling.json"
        tmp = path.with_suffix(".tmp")  # the autoscaler re-reads it: never let it see half a file
        tmp.write_text(json.dumps(config, indent=1))
        os.replace(tmp, path)
        return path

    def set_max_workers(self, node_type: str, n: int) -> None:
        """Change a node type's ``max_workers`` in the config the autoscaler re-reads each
        round. Below the number alive, the autoscaler terminates the excess through its
        provider (SIGTERM to the node's processes): how a spot reclaim looks from Ray, whose
        fake provider cannot be told to take back a node otherwise."""
        assert self.node_types is not None and node_type in self.node_types, node_type
        self.node_types[node_type]["max_workers"] = n
        self._autoscaling_config()

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
class LocalNode:
    """A Ray worker node on this machine that, like a second machine, cannot see local files.

    ``ray start --address <head> --block`` runs inside its own mount namespace
    (``unshare --mount --propagation private``, which needs root) with a private tmpfs over
    ``/tmp`` and over every folder in ``hide`` (the project's ``runs/`` and ``data/``):
    whatever the driver or another node wrote there is invisible to it, and what it writes
    there is invisible to them. The network is shared, so it reaches the head, the MLflow
    server and the S3 server on 127.0.0.1. Worker ports come from a range of its own
    (``port_base`` .. +999), so several nodes on one IP never collide.
    """

    head: LocalRay
    num_cpus: int = 1
    port_base: int = 30000
    hide: tuple[Path, ...] = ()
    object_store_mb: int = 150
    extra_env: dict[str, str] = field(default_factory=dict)
    log: Path | None = None
    _proc: subprocess.Popen | None = None

    @staticmethod
    def unavailable() -> str | None:
        """Why such a node cannot start on this machine, or None when it can."""
        if os.geteuid() != 0 or shutil.which("unshare") is None:
            return "worker nodes in their own mount namespaces need root and unshare(1)"
        return None

    def start(self, timeout: float = 120.0) -> "LocalNode":
        import ray  # noqa: F401  (fail here, not in the namespace, when Ray is missing)

        ports = [f"--node-manager-port={free_port()}", f"--object-manager-port={free_port()}",
                 f"--min-worker-port={self.port_base}", f"--max-worker-port={self.port_base + 999}",
                 f"--dashboard-agent-listen-port={free_port()}", f"--dashboard-agent-grpc-port={free_port()}",
                 f"--runtime-env-agent-port={free_port()}", f"--metrics-export-port={free_port()}"]
        # Ray rewrites a loopback --address to the machine's routable IP (what a real second
        # machine needs); a private /etc/hosts names the head lt-ray-head = 127.0.0.1 instead.
        head_port = self.head.address.rsplit(":", 1)[1]
        ray_cmd = [str(BIN / "ray"), "start", f"--address=lt-ray-head:{head_port}", "--block",
                   f"--node-ip-address={HOST}", f"--num-cpus={self.num_cpus}", "--num-gpus=0",
                   f"--object-store-memory={self.object_store_mb * 1024 * 1024}",
                   "--disable-usage-stats", *ports]
        hidden = [str(Path(h).resolve()) for h in self.hide if Path(h).is_dir()]
        # The token file lies under the head's /tmp folder, which the node's own /tmp hides:
        # read it before mounting, write it into the private /tmp after.
        # A checkout (and its venv) under /tmp, as CI may clone it, is bound back into the
        # private /tmp: the node needs Ray's binaries, as a real node has them installed.
        keep = sorted({str(p) for p in (Path(sys.prefix).resolve(), ROOT) if str(p).startswith("/tmp/")})
        script = (
            'set -e; tok=$(cat "$LT_TOKEN_SRC"); '
            'if [ -n "$LT_KEEP" ]; then mount -t tmpfs tmpfs /mnt; mkdir /mnt/host-tmp; '
            'mount --bind /tmp /mnt/host-tmp; fi; '
            'mount -t tmpfs tmpfs /tmp; '
            'IFS=: read -ra keep <<< "$LT_KEEP"; for k in "${keep[@]}"; do '
            'mkdir -p "$k"; mount --bind "/mnt/host-tmp/${k#/tmp/}" "$k"; done; '
            'for d in "$@"; do mount -t tmpfs tmpfs "$d"; done; '
            '{ cat /etc/hosts; echo "127.0.0.1 lt-ray-head"; } > /tmp/hosts; mount --bind /tmp/hosts /etc/hosts; '
            'umask 077; printf %s "$tok" > /tmp/auth_token; export RAY_AUTH_TOKEN_PATH=/tmp/auth_token; '
            f'exec {" ".join(shlex.quote(c) for c in ray_cmd)}')
        cmd = ["unshare", "--mount", "--propagation", "private", "bash", "-c", script, "lt-node", *hidden]
        path = f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"
        # RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 (the head's loopback-only switch) would refuse
        # to join a cluster; --node-ip-address keeps this node on 127.0.0.1 all the same.
        env = {**os.environ, **self.extra_env, **self.head.env, "PATH": path, "RAY_USAGE_STATS_ENABLED": "0",
               "LT_TOKEN_SRC": self.head.env["RAY_AUTH_TOKEN_PATH"], "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "1",
               "LT_KEEP": ":".join(keep)}
        env.pop("RAY_ADDRESS", None)
        self.log = self.head.root / f"node-{self.port_base}.log"
        with open(self.log, "wb") as f:
            self._proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env=env,
                                          start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:  # joined once the head lists a node with our ports
            if self._proc.poll() is not None:
                raise ServiceError(f"worker node exited with {self._proc.returncode}; log {self.log}:\n"
                                   f"{_tail(self.log)}")
            if "Ray runtime started" in _tail(self.log, 200):
                return self
            time.sleep(0.5)
        self.stop()
        raise ServiceError(f"worker node did not start within {timeout:.0f} s; log {self.log}:\n{_tail(self.log)}")

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def processes(self) -> list[tuple[int, str]]:
        """(pid, command line) of every process of this node's session; Ray's workers show
        their role there (``ray::RayTrainWorker...``, ``ray::Evaluator...``)."""
        if self._proc is None:
            return []
        out = subprocess.run(["ps", "-o", "pid=,args=", "--sid", str(self._proc.pid)],
                             capture_output=True, text=True).stdout
        return [(int(p), c) for p, c in (line.split(None, 1) for line in out.splitlines() if line.strip())]

    def kill(self) -> None:
        """Lose the node at once, as a machine that disappears: SIGKILL to every process of
        its session (raylet, object store, workers), by PID."""
        if self._proc is None:
            return
        for pid, _ in self.processes():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self._proc.wait(timeout=30)

    def stop(self) -> None:
        _stop(self._proc, leader_only=True)
        self._proc = None


@dataclass
class LocalS3:
    """An S3-compatible server on 127.0.0.1 (moto's server mode, in memory) with one bucket.

    ``env`` is what a client needs (endpoint, dummy credentials, region): pyarrow.fs, boto3
    (the MLflow server's artifact store) and Ray's storage all read ``AWS_ENDPOINT_URL``.
    """

    root: Path  # holds the log
    bucket: str = "lighttrack"
    endpoint: str = ""
    _proc: subprocess.Popen | None = None

    @property
    def env(self) -> dict[str, str]:
        return {"AWS_ENDPOINT_URL": self.endpoint, "AWS_ENDPOINT_URL_S3": self.endpoint,
                "MLFLOW_S3_ENDPOINT_URL": self.endpoint, "AWS_ACCESS_KEY_ID": "testing",
                "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
                "AWS_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true"}

    def uri(self, *parts: str) -> str:
        return "/".join([f"s3://{self.bucket}", *(p.strip("/") for p in parts)])

    def start(self, timeout: float = 60.0) -> "LocalS3":
        self.root.mkdir(parents=True, exist_ok=True)
        port = int(self.endpoint.rsplit(":", 1)[1]) if self.endpoint else free_port()  # a restart keeps its address
        self.endpoint = f"http://{HOST}:{port}"
        log = self.root / "s3-server.log"
        with open(log, "ab") as f:
            self._proc = subprocess.Popen([str(BIN / "moto_server"), "-H", HOST, "-p", str(port)],
                                          stdout=f, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            _wait_http(f"{self.endpoint}/moto-api/data.json", timeout, self._proc, log)
            self.filesystem().create_dir(self.bucket)
        except BaseException:
            self.stop()
            raise
        return self

    def filesystem(self):
        import pyarrow.fs as pafs

        return pafs.S3FileSystem(endpoint_override=self.endpoint, access_key="testing",
                                 secret_key="testing", region="us-east-1", scheme="http",
                                 allow_bucket_creation=True)

    def upload(self, local: Path, *parts: str) -> str:
        """Copy the folder ``local`` to ``s3://bucket/<parts>``; returns that URI."""
        import pyarrow.fs as pafs

        dest = self.uri(*parts)
        pafs.copy_files(str(Path(local).resolve()), dest[len("s3://"):], source_filesystem=pafs.LocalFileSystem(),
                        destination_filesystem=self.filesystem(), use_threads=True)
        return dest

    def stop(self) -> None:
        _stop(self._proc, leader_only=False)
        self._proc = None


@dataclass
class LocalMlflow:
    """``mlflow server`` with a sqlite backend on 127.0.0.1; artifacts proxied to a local
    folder (default) or to ``artifacts`` (e.g. ``s3://bucket/mlflow``, with ``extra_env``)."""

    root: Path  # holds mlflow.db, artifacts/ and the log
    artifacts: str = ""  # artifact destination; default root/artifacts
    extra_env: dict[str, str] = field(default_factory=dict)
    uri: str = ""
    _proc: subprocess.Popen | None = None

    def start(self, timeout: float = 120.0) -> "LocalMlflow":
        self.root.mkdir(parents=True, exist_ok=True)
        port = int(self.uri.rsplit(":", 1)[1]) if self.uri else free_port()  # a restart keeps its address
        self.uri = f"http://{HOST}:{port}"
        cmd = [
            str(BIN / "mlflow"), "server",
            "--backend-store-uri", f"sqlite:///{(self.root / 'mlflow.db').resolve()}",
            "--artifacts-destination", self.artifacts or str((self.root / "artifacts").resolve()),
            "--host", HOST, "--port", str(port), "--workers", "1",
        ]
        log = self.root / "mlflow-server.log"
        # The server's job runner (a pool of huey consumers) serves GenAI features we do
        # not use and would take cores from training on a 2-core machine.
        env = {**os.environ, **self.extra_env, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
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


@dataclass
class LocalCluster:
    """A cluster of real parts on this machine, shaped like the ones in ``cluster/``.

    A Ray head with no CPUs (the job drivers run there, as on an autoscaling cluster),
    ``nodes`` worker nodes that see none of this machine's local files (:class:`LocalNode`,
    hiding ``hide`` too), an S3 server (:class:`LocalS3`) for data, Ray storage and MLflow
    artifacts, and an MLflow server whose artifact store is that bucket. Everything binds to
    127.0.0.1 and stops by the ids of the processes it started. With ``node_types`` the
    head also runs Ray's autoscaler, which starts and stops nodes of those types (plain
    processes of the fake provider: they share this machine's files) as jobs need them.
    Those nodes also share the head's session folder, where each new node's agent unpacks
    an uploaded ``--working-dir`` again, deleting the copy that running workers have as
    their current folder (an evaluator died of it: "Intel oneMKL FATAL ERROR: Cannot load
    libtorch_cpu.so"). Jobs on them use a ``local://`` working dir instead: code already on
    every node, as in a cluster whose image holds it.
    """

    root: Path
    nodes: int = 2
    cpus_per_node: int = 1
    hide: tuple[Path, ...] = ()
    s3: LocalS3 | None = None
    head: LocalRay | None = None
    workers: list[LocalNode] = field(default_factory=list)
    mlflow: LocalMlflow | None = None
    tracking_uri: str = ""  # a tracking server of the user's: then no MLflow server is started
    node_types: dict[str, dict] | None = None  # autoscaled worker node types (LocalRay's), beside ``nodes``
    idle_timeout_minutes: float = 0.25
    _owns_s3: bool = False

    def start(self) -> "LocalCluster":
        """Start what is missing (an ``s3`` given from outside is used, and left running)."""
        try:
            if self.s3 is None:
                self.s3, self._owns_s3 = LocalS3(self.root / "s3").start(), True
            self.head = LocalRay(num_cpus=0, root=Path(tempfile.mkdtemp(prefix="lt-ray-", dir="/tmp")),
                                 extra_env=self.s3.env, node_types=self.node_types,
                                 idle_timeout_minutes=self.idle_timeout_minutes).start()
            for _ in range(self.nodes):
                self.add_node()
            if not self.tracking_uri:
                self.mlflow = LocalMlflow(self.root / "mlflow", artifacts=self.s3.uri("mlflow"),
                                          extra_env=self.s3.env).start()
                self.tracking_uri = self.mlflow.uri
        except BaseException:
            self.stop()
            raise
        return self

    def add_node(self) -> LocalNode:
        """Start one more worker node (ports of its own) and return it."""
        port_base = 30000 + 1000 * (len(self.workers) % 30)
        node = LocalNode(self.head, self.cpus_per_node, port_base, self.hide, extra_env=self.s3.env).start()
        self.workers.append(node)
        return node

    @property
    def job_env(self) -> dict[str, str]:
        """What a job's runtime environment needs: the S3 endpoint and credentials, MLflow."""
        return {**self.s3.env, "MLFLOW_TRACKING_URI": self.tracking_uri}

    def stop(self) -> None:
        for service in [self.mlflow, *self.workers, self.head, self.s3 if self._owns_s3 else None]:
            if service is not None:
                service.stop()
        self.workers = []
        if self.head is not None and self.head.root is not None:
            shutil.rmtree(self.head.root, ignore_errors=True)


def submit_job(ray: LocalRay | str, entrypoint: list[str], *, working_dir: str | Path | None = ".",
               env: dict[str, str] | None = None, runtime_env_json: str | None = None,
               timeout: float | None = 600.0, check: bool = True,
               on_line: Callable[[str], None] | None = None) -> str:
    """``ray job submit --address ... --working-dir ... -- <entrypoint>``; returns the logs.

    A phase job's ``entrypoint`` is ``["python", "-m", "ray_jobs.<job>", *args]``.

    ``ray`` is a :class:`LocalRay` (its dashboard URL and token are used) or a dashboard URL.
    ``on_line(line)`` sees each line of the job's output as it comes (a test acting while
    the job runs). ``timeout``: seconds for the whole job (None: no limit). Raises
    :class:`ServiceError` with the logs when the job fails and ``check``.
    """
    url = ray.dashboard_url if isinstance(ray, LocalRay) else ray
    client_env = ray.client_env() if isinstance(ray, LocalRay) else os.environ.copy()
    client_env.update(env or {})
    cmd = [str(BIN / "ray"), "job", "submit", "--address", url]
    if working_dir is not None:  # None: the runtime env names it (e.g. a local:// folder on every node)
        cmd += ["--working-dir", str(working_dir)]
    if runtime_env_json:
        cmd += ["--runtime-env-json", runtime_env_json]
    cmd += ["--", *entrypoint]
    for attempt in range(3):
        try:
            returncode, logs = _run_streaming(cmd, client_env, timeout, on_line)
        except BaseException as e:  # interrupted or timed out: the job itself must not run on
            _stop_job(url, client_env, getattr(e, "output", None) or "")
            raise
        # A dashboard that has just come up may drop the upload connection once; retry
        # only when the job was certainly not created.
        if returncode == 0 or "submitted successfully" in logs or "ConnectionError" not in logs:
            break
        time.sleep(3)
    if check and returncode != 0:
        raise ServiceError(f"job {' '.join(entrypoint)} failed (exit {returncode}):\n{logs[-6000:]}")
    return logs


def _stop_job(url: str, env: dict[str, str], logs: str) -> None:
    """``ray job stop`` the job whose submission line is in ``logs`` (its driver would
    otherwise go on, orphaned, after the client is gone)."""
    ids = re.findall(r"Job '(raysubmit_\w+)' submitted successfully", logs)
    if ids:
        subprocess.run([str(BIN / "ray"), "job", "stop", "--address", url, ids[-1]], env=env,
                       capture_output=True, timeout=60)


def _run_streaming(cmd: list[str], env: dict[str, str], timeout: float | None,
                   on_line: Callable[[str], None] | None) -> tuple[int, str]:
    """Run ``cmd``, passing each output line to ``on_line``; (exit code, output)."""
    lines: list[str] = []
    with subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          bufsize=1) as proc:
        fired = threading.Event()
        # the whole job, also while it prints nothing
        timer = None if timeout is None else threading.Timer(timeout, lambda: (fired.set(), proc.kill()))
        if timer is not None:
            timer.start()
        try:
            for line in proc.stdout:
                lines.append(line)
                if on_line is not None:
                    on_line(line)
        except BaseException as e:
            proc.kill()
            e.output = "".join(lines)  # what the job printed: its submission id, for _stop_job
            raise
        finally:
            if timer is not None:
                timer.cancel()
    if fired.is_set():
        raise subprocess.TimeoutExpired(cmd, timeout, "".join(lines))
    return proc.returncode, "".join(lines)
