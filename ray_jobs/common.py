"""What every phase job shares: CLI shape, MLflow setup, Ray connection, run hand-over.

The conventions (tags, artifact names, the ``LIGHTTRACK_RUN_ID=`` line) are described
for job authors in ``docs/jobs.md``. Every check here runs before any work starts, so
bad operational input (an unreachable Ray address or MLflow server, a run id that does
not exist or belongs to another phase, an unknown config key) ends the job with one
clear line; wrap ``main`` in :func:`run_main` to get that.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import re
import socket
import sys
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence, TypeVar

from lighttrack.arch import ArchError
from lighttrack.checkpoint import CheckpointError
from lighttrack.data.fs import DataError
from lighttrack.config import ConfigError, load, to_dict
from lighttrack.commands.argtypes import positive_int

__all__ = [
    "OpsError", "PHASES", "PHASE_TAG", "PARENT_TAG", "ARCH_TAG", "RUN_ID_PREFIX",
    "add_common_args", "load_config", "setup_mlflow", "connect_ray",
    "RunInput", "resolve_run_input",
    "open_run", "active_run", "tracking_uri", "config_params",
    "run_main", "mark_failed", "FAILURE_TAG",
]

T = TypeVar("T")

PHASES = ("pretrain", "supernet", "search", "retrain", "tune")  # tune: ray_jobs.tune_tracker
PHASE_TAG = "lighttrack.phase"  # one of PHASES, on every run a job creates
PARENT_TAG = "lighttrack.parent_run"  # run id of the input run (lineage)
FAILURE_TAG = "lighttrack.failure"  # why a FAILED (or KILLED) run stopped: the error's last line
ARCH_TAG = "lighttrack.arch"  # canonical architecture string, where a run has one
JOB_TAG, STORAGE_TAG = "lighttrack.job", "lighttrack.storage"  # a job's --name and storage: its run, found again
RUN_ID_PREFIX = "LIGHTTRACK_RUN_ID="  # the line a job prints so drivers can chain phases
DEFAULT_EXPERIMENT = "lighttrack"
_RUN_ID = re.compile(r"^[0-9a-f]{32}$")


class OpsError(RuntimeError):
    """Bad operational input: unreachable service, wrong run, unusable storage path."""


# --------------------------------------------------------------------------- CLI

def add_common_args(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The options every phase job takes (see docs/jobs.md)."""
    g = parser.add_argument_group("common job options")
    g.add_argument("--config", type=Path, default=None,
                   help="YAML config (configs/*.yaml); unknown keys are errors")
    g.add_argument("--set", dest="overrides", action="extend", nargs="+", default=[], metavar="KEY=VALUE",
                   help="override config values (dotted keys reach nested sections); several after one --set, or --set repeated")
    g.add_argument("--name", default=None, help="MLflow run name")
    g.add_argument("--experiment", default=DEFAULT_EXPERIMENT, help="MLflow experiment name")
    g.add_argument("--storage-path", default=None,
                   help="Ray Train/Tune storage (checkpoints); s3://, gs:// or a shared path on a cluster")
    g.add_argument("--address", default=None,
                   help="Ray cluster address (default: $RAY_ADDRESS, else start a local Ray)")
    g.add_argument("--num-workers", type=positive_int, default=1, help="Ray Train workers (or concurrent trials)")
    g.add_argument("--use-gpu", choices=("auto", "true", "false"), default="auto",
                   help="auto: use GPUs when the cluster has any")
    return parser


def load_config(cls: type[T], args: argparse.Namespace, flags: dict[str, str] | None = None) -> T:
    """The job's config: ``--config``, then ``flags`` (argparse dest -> dotted config key),
    each one given on the command line being sugar for ``--set KEY=VALUE``, then the
    ``--set`` overrides. Unknown keys are errors. Every value a job runs with so sits in
    the config that its MLflow run logs."""
    sugar = [f"{key}={value}" for dest, key in (flags or {}).items()
             if (value := getattr(args, dest, None)) is not None]
    return load(cls, args.config, [*sugar, *args.overrides])


# --------------------------------------------------------------------------- MLflow

def _default_tracking_uri() -> str:
    return f"sqlite:///{Path.cwd() / 'mlflow.db'}"


def tracking_uri() -> str:
    """``$MLFLOW_TRACKING_URI``, else the local sqlite store ``./mlflow.db``."""
    return os.environ.get("MLFLOW_TRACKING_URI") or _default_tracking_uri()


def _check_http_server(uri: str, timeout: float = 10.0) -> None:
    """Fail with a clear message unless an MLflow server answers at ``uri``."""
    url = uri.rstrip("/") + "/health"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            if r.status == 200:
                return
            reason = f"HTTP {r.status}"
    except urllib.error.HTTPError as e:
        reason = f"HTTP {e.code}"
    except (urllib.error.URLError, OSError) as e:
        reason = str(getattr(e, "reason", e))
    raise OpsError(
        f"MLflow tracking server {uri} (MLFLOW_TRACKING_URI) is not reachable: {reason}. "
        "Start one (`mlflow server --host 127.0.0.1 --port 5000 --backend-store-uri "
        "sqlite:///mlflow.db`) or unset MLFLOW_TRACKING_URI to log to ./mlflow.db.")


def setup_mlflow(experiment: str = DEFAULT_EXPERIMENT) -> str:
    """Point MLflow at ``$MLFLOW_TRACKING_URI`` (default ``./mlflow.db``), check it, pick the experiment.

    Returns the tracking URI in use.
    """
    import mlflow

    uri = tracking_uri()
    scheme = urllib.parse.urlparse(uri).scheme
    if scheme in ("http", "https"):
        _check_http_server(uri)
    elif scheme == "sqlite":
        db = Path(uri[len("sqlite:///"):])
        if not db.parent.is_dir():
            raise OpsError(f"MLflow store {uri}: directory {db.parent} does not exist")
    mlflow.set_tracking_uri(uri)
    if scheme == "sqlite" and mlflow.get_experiment_by_name(experiment) is None:
        # Artifacts beside the database: MLflow's default is ./mlruns of whatever directory
        # the job was started from (a checkout, a test's working directory).
        try:
            mlflow.create_experiment(experiment, artifact_location=(db.parent / "mlartifacts").resolve().as_uri())
        except mlflow.exceptions.MlflowException:
            pass  # created meanwhile by another process
    mlflow.set_experiment(experiment)
    return uri


@dataclass(frozen=True)
class RunInput:
    """A phase input: a local path, or an artifact downloaded from an MLflow run."""

    path: Path  # local file or directory
    run_id: str | None  # None when given as a path
    params: dict[str, str]  # the run's MLflow params ({} for a path)
    tags: dict[str, str] = dataclasses.field(default_factory=dict)  # the run's MLflow tags ({} for a path)


def resolve_run_input(run_id_or_path: str, expected_phase: str, artifact: str) -> RunInput:
    """Turn ``--input`` into a local path: an existing path as is, or ``artifact`` of a run.

    A run must exist, carry ``lighttrack.phase == expected_phase``, have finished, and hold
    ``artifact``; otherwise :class:`OpsError` says which of these failed. Call
    :func:`setup_mlflow` first.
    """
    import mlflow
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    if expected_phase not in PHASES:
        raise ValueError(f"expected_phase {expected_phase!r} is not one of {PHASES}")
    local = Path(run_id_or_path).expanduser()
    if local.exists():
        return RunInput(local.resolve(), None, {})
    if not _RUN_ID.match(run_id_or_path):
        raise OpsError(f"{run_id_or_path!r} is neither an existing path nor an MLflow run id "
                       "(32 hex characters)")
    uri = mlflow.get_tracking_uri()
    client = MlflowClient()
    try:
        run = client.get_run(run_id_or_path)
    except MlflowException as e:
        raise OpsError(f"MLflow run {run_id_or_path} does not exist at {uri} "
                       f"({e.error_code})") from None
    phase = run.data.tags.get(PHASE_TAG)
    if phase != expected_phase:
        raise OpsError(f"MLflow run {run_id_or_path} is a {phase or 'untagged'!s} run "
                       f"({PHASE_TAG}={phase!r}); this job needs a {expected_phase!r} run")
    if run.info.status != "FINISHED":
        raise OpsError(f"MLflow run {run_id_or_path} ({expected_phase}) did not finish: "
                       f"status {run.info.status}")
    dst = Path(tempfile.mkdtemp(prefix=f"lt-{expected_phase}-"))
    try:
        path = mlflow.artifacts.download_artifacts(run_id=run_id_or_path, artifact_path=artifact,
                                                   dst_path=str(dst))
    except (MlflowException, OSError) as e:
        have = [f.path for f in client.list_artifacts(run_id_or_path)]
        raise OpsError(f"MLflow run {run_id_or_path} ({expected_phase}) has no artifact "
                       f"{artifact!r}; it has {have}") from e
    return RunInput(Path(path), run_id_or_path, dict(run.data.params), dict(run.data.tags))


def config_params(config: Any) -> dict[str, str]:
    """A config (dataclass or dict) as MLflow params: dotted keys, lists as JSON, values cut
    to MLflow's 6000 characters."""
    def flat(d: dict, prefix: str = "") -> dict[str, str]:
        out: dict[str, str] = {}
        for k, v in d.items():
            if isinstance(v, dict):
                out |= flat(v, f"{prefix}{k}.")
            else:
                out[f"{prefix}{k}"] = (json.dumps(v) if isinstance(v, (list, tuple)) else str(v))[:6000]
        return out

    return flat(to_dict(config) if dataclasses.is_dataclass(config) else dict(config))


def log_params(client: Any, run_id: str, params: dict[str, str]) -> None:
    """All of ``params`` on run ``run_id``, 100 a call (MLflow's batch limit)."""
    from mlflow.entities import Param

    items = list(params.items())
    for i in range(0, len(items), 100):
        client.log_batch(run_id, params=[Param(k, v) for k, v in items[i:i + 100]])


def open_run(phase: str, name: str, experiment: str, config: Any = None, tags: dict[str, str] | None = None,
             storage: str | None = None) -> tuple[str, str]:
    """The MLflow run a job logs into, by the one resume rule of every phase: the latest run
    of ``phase`` named ``name`` at ``storage`` goes on (set RUNNING again) unless it finished;
    a finished one with this very config is ``"done"`` (its job has nothing to do); else a
    new run is created, tagged with its phase, name, storage and ``tags``, ``config`` as
    params. Prints the run-id line. Returns (run id, "new" | "resumed" | "done")."""
    import mlflow
    from mlflow.tracking import MlflowClient

    if phase not in PHASES:
        raise ValueError(f"phase {phase!r} is not one of {PHASES}")
    mlflow.set_tracking_uri(tracking_uri())
    client = MlflowClient()
    exp = client.get_experiment_by_name(experiment)
    exp_id = exp.experiment_id if exp else client.create_experiment(experiment)
    where = str(storage or "default")  # Ray's default storage: a folder of this machine
    runs = client.search_runs([exp_id], f"tags.`{JOB_TAG}` = '{name}' and tags.`{PHASE_TAG}` = '{phase}' and "
                              f"tags.`{STORAGE_TAG}` = '{where}'", max_results=1, order_by=["attributes.start_time DESC"])
    params = config_params(config) if config is not None else {}
    status = "new"
    if runs and runs[0].info.status != "FINISHED":
        run_id, status = runs[0].info.run_id, "resumed"
        client.update_run(run_id, status="RUNNING")  # a training job's Ray Train restores its checkpoint
        print(f"{phase}: resuming run {run_id} ({name!r})", flush=True)
    elif runs and all(runs[0].data.params.get(k) == v for k, v in params.items()):
        run_id, status = runs[0].info.run_id, "done"
        print(f"[{name}] phase {phase}: MLflow run {run_id} finished already with this config: nothing to do",
              flush=True)
    else:
        run_id = client.create_run(exp_id, run_name=name, tags={JOB_TAG: name, STORAGE_TAG: where, PHASE_TAG: phase,
                                                               **(tags or {})}).info.run_id
        log_params(client, run_id, params)
    print(f"{RUN_ID_PREFIX}{run_id}", flush=True)  # what drivers read from the job's logs
    return run_id, status


@contextlib.contextmanager
def active_run(run_id: str) -> Iterator[Any]:
    """Run ``run_id`` as MLflow's active run: it ends FINISHED, or FAILED (KILLED when
    interrupted) with the reason as a tag."""
    import mlflow

    with mlflow.start_run(run_id=run_id) as run:
        try:
            yield run
        except BaseException as e:  # the run ends FAILED (mlflow.start_run); say why
            mlflow.set_tag(FAILURE_TAG, "interrupted" if isinstance(e, KeyboardInterrupt) else failure_reason(e))
            raise


# --------------------------------------------------------------------------- Ray

def _split_host_port(address: str) -> tuple[str, int]:
    hostport = address.split("://", 1)[-1].rstrip("/")
    host, sep, port = hostport.rpartition(":")
    if not sep or not port.isdigit():
        raise OpsError(f"Ray address {address!r} is not host:port (e.g. 127.0.0.1:6379)")
    return host.strip("[]"), int(port)


def connect_ray(address: str | None = None, timeout: float = 5.0, **init_kwargs: Any) -> None:
    """``ray.init`` at ``address`` (else ``$RAY_ADDRESS``); a local Ray when there is none.

    An address that does not accept connections is an :class:`OpsError` at once, rather
    than a long hang inside ``ray.init``. ``"auto"`` is passed through.
    """
    import ray

    address = address or os.environ.get("RAY_ADDRESS") or None
    if ray.is_initialized():
        return
    if address is None or address in ("auto", "local"):
        ray.init(address=address, **init_kwargs)
        return
    if address.startswith(("http://", "https://")):
        raise OpsError(f"Ray address {address!r} is a dashboard URL (that is for `ray job submit`); "
                       "jobs connect to the GCS address host:port (default port 6379)")
    host, port = _split_host_port(address)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as e:
        raise OpsError(f"Ray cluster at {address} is not reachable: {e}. Start one with "
                       "`ray start --head` or leave --address/RAY_ADDRESS unset to run locally") from None
    ray.init(address=address, **init_kwargs)


def failure_reason(error: BaseException) -> str:
    """One line for a failed run: the last line of the error (for a Ray Train failure, the
    worker's own exception, which Ray puts at the end of its message)."""
    lines = [ln.strip() for ln in str(error).splitlines() if ln.strip()]
    return f"{type(error).__name__}: {lines[-1] if lines else ''}"[:5000]


def mark_failed(client, run_id: str, error: BaseException) -> None:
    """End MLflow run ``run_id`` as FAILED (KILLED when interrupted) with the reason as a tag."""
    killed = isinstance(error, (KeyboardInterrupt, SystemExit))
    try:
        client.set_tag(run_id, FAILURE_TAG, "interrupted" if killed else failure_reason(error))
        client.set_terminated(run_id, status="KILLED" if killed else "FAILED")
    except Exception as e:  # the store may be what failed; the original error matters more
        print(f"warning: could not mark MLflow run {run_id} as failed: {e}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- entry

def run_main(main: Callable[[Sequence[str] | None], int | None], argv: Sequence[str] | None = None) -> None:
    """Run ``main(argv)`` and exit; bad input becomes one ``error:`` line and exit code 2."""
    try:
        code = main(argv)
    except (OpsError, ConfigError, ArchError, FileNotFoundError, DataError, CheckpointError) as e:
        print(f"{Path(sys.argv[0]).name}: error: {e}", file=sys.stderr, flush=True)
        sys.exit(2)
    sys.exit(int(code or 0))
