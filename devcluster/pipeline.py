"""The whole pipeline on this machine: data, local Ray + MLflow, phases 1-4 via ``ray job submit``.

    python -m devcluster.pipeline [--size tiny|micro] [--phases pretrain,supernet,search,retrain]

Generates the embedded data set (once), starts a Ray head and an MLflow server on
127.0.0.1 (token auth on), submits each phase as a Ray job with ``configs/<phase>_<size>.yaml``,
hands each phase's MLflow run id to the next, and prints the found architecture, its AO,
params and MACs. Services stop when it ends, fails or is interrupted (Ctrl-C).
A phase whose job module or config does not exist yet is skipped, with the reason.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

from lighttrack.config import changed_keys, is_data_key, map_locations, read_yaml
from lighttrack.data.fs import absolute
from lighttrack.data.synth import SIZES
from ray_jobs.common import PHASE_TAG, RUN_ID_PREFIX, OpsError
from devcluster.services import BIN, LocalCluster, LocalMlflow, LocalRay, ServiceError, submit_job
from lighttrack.commands.argtypes import count

__all__ = ["Phase", "PHASES", "absolute_data_overrides", "ensure_data", "run_phases", "summarize", "main"]

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Phase:
    name: str  # the lighttrack.phase tag
    module: str  # job module, run as `python -m <module>` from the repo root
    config: str  # configs/<config>_<size>.yaml
    inputs: tuple[tuple[str, str], ...]  # (config key, phase whose run id it takes)
    extra: tuple[str, ...] = ()  # further job arguments

    @property
    def path(self) -> str:
        """The module's file, relative to the repo root (``ray_jobs/search.py``)."""
        return self.module.replace(".", "/") + ".py"

    @property
    def entrypoint(self) -> list[str]:
        """The job's command without its arguments: ``["python", "-m", <module>]``."""
        return ["python", "-m", self.module]


PHASES = (
    Phase("pretrain", "ray_jobs.pretrain_backbone", "pretrain", ()),
    Phase("supernet", "ray_jobs.train_supernet", "supernet", (("init", "pretrain"),)),
    # LightTrack-Mobile's budget class: 600M MACs, 2M parameters.
    Phase("search", "ray_jobs.search", "search", (("supernet", "supernet"),), ("--budget", "600M,2M")),
    Phase("retrain", "ray_jobs.retrain", "retrain", (("arch", "search"), ("supernet", "supernet"))),
)


def absolute_data_overrides(config: Path, base: Path | str) -> list[str]:
    """``key=value`` overrides that make every relative data root in ``config`` absolute.

    ``data/`` is git-ignored, so a job's uploaded working dir does not contain it: the
    jobs must read the data where the driver made it, or where it was copied to (``base``
    may be a bucket URI, ``s3://bucket/prefix``, holding ``data/synth/...``). A root inside
    a list (e.g. ``data.sources``) is handled by overriding the whole list (JSON is YAML).
    """
    old = read_yaml(config)  # its base: chain too
    new = map_locations(old, lambda v: absolute(v, base), keys=is_data_key)
    return [f"{key}={json.dumps(value) if isinstance(value, list) else value}" for key, value in changed_keys(old, new)]


def _say(msg: str) -> None:
    print(f"[pipeline {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def run_phases(submit: Callable[[Phase, list[str]], str], size: str, names: list[str],
               stamp: str, storage: Path | str, data_base: Path | str = ROOT,
               extra: dict[str, list[str]] | None = None) -> dict[str, str]:
    """Submit each phase in ``names`` (in pipeline order); returns {phase: MLflow run id}.

    ``submit(phase, args)`` runs ``python -m <phase.module> *args`` as a Ray job and returns
    its logs (raising on failure). Relative data roots of the configs are resolved against
    ``data_base`` (the repo root: ``data/synth/...``, or a bucket URI holding the same
    tree); ``storage`` is every job's ``--storage-path`` (a URI on a cluster); ``extra``
    adds arguments per phase name. A phase is skipped, with a message, when its module or
    config is missing or an input phase produced no run.
    """
    runs: dict[str, str] = {}
    for phase in PHASES:
        if phase.name not in names:
            continue
        config = Path("configs") / f"{phase.config}_{size}.yaml"
        missing = [p for p in (phase.path, str(config)) if not (ROOT / p).is_file()]
        lacking = [src for _, src in phase.inputs if src not in runs]
        if missing or lacking:
            why = f"{', '.join(missing)} not written yet" if missing else f"no {', '.join(lacking)} run"
            _say(f"SKIP phase {phase.name}: {why}")
            continue
        args = ["--config", str(config), "--name", f"{phase.name}-{stamp}", "--storage-path", str(storage)]
        for item in absolute_data_overrides(ROOT / config, data_base):
            args += ["--set", item]
        for key, src in phase.inputs:
            # Quoted: YAML would read an all-digit id (or one like 123e45...) as a number.
            args += ["--set", f"{key}='{runs[src]}'"]
        args += [*phase.extra, *(extra or {}).get(phase.name, [])]
        _say(f"phase {phase.name}: {' '.join(phase.entrypoint)} {' '.join(args)}")
        t0 = time.monotonic()
        logs = submit(phase, args)
        ids = re.findall(rf"^{RUN_ID_PREFIX}([0-9a-f]{{32}})\s*$", logs, re.M)
        if not ids:
            raise ServiceError(f"phase {phase.name} printed no {RUN_ID_PREFIX}<id> line")
        runs[phase.name] = ids[-1]
        _say(f"phase {phase.name} done in {time.monotonic() - t0:.0f} s: MLflow run {ids[-1]}")
    return runs


_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_ACTOR = re.compile(r"^\((?:[\w.:-]+ )?pid=\d+(?:, ip=[\d.]+)?\)\s*")  # Ray's "(RayTrainWorker pid=1)" prefix
# Our jobs' own lines: "[<job name>] epoch 3/4 ... ETA 0:00:28", "search 600M_2M: ...", "[data] ...".
_OURS = re.compile(r"^(\[[\w.@+-]+\] |search[ :]|\[data\]|LIGHTTRACK_RUN_ID=|AO |WARNING|ERROR|Traceback)")


def progress_line(line: str) -> str | None:
    """The line as the console shows it without --verbose (None: the log file only).

    Kept: what our jobs print (phase, epoch with time left, search and data lines,
    warnings, errors), without Ray's colour codes and actor prefix. Dropped: Ray's own
    INFO output (checkpoint reports, worker placement, Tune's tables)."""
    text = _ACTOR.sub("", _ANSI.sub("", line)).strip()
    return text if _OURS.match(text) else None


def _stream_submit(head: LocalRay, env: dict[str, str], logs: Path,
                   verbose: bool = False) -> Callable[[Phase, list[str]], str]:
    """``services.submit_job`` (``env``: the jobs' environment) that writes the job's whole
    output to ``logs/<phase>.log``, shows its progress lines live (every line with ``verbose``)
    and returns the output; on failure the log's last lines are shown with its path."""
    runtime_env = json.dumps({"env_vars": env})
    logs.mkdir(parents=True, exist_ok=True)

    def submit(phase: Phase, args: list[str]) -> str:
        path = logs / f"{phase.name}.log"
        lines: list[str] = []
        with open(path, "w") as log:
            def show(line: str) -> None:
                lines.append(line)
                log.write(line)
                log.flush()
                if verbose:
                    if " INFO cli.py" not in line and " SUCC cli.py" not in line:
                        print(f"  {phase.name} | {line}", end="", flush=True)
                elif (shown := progress_line(line)) is not None:
                    print(f"  {phase.name} | {shown}", flush=True)

            try:
                return submit_job(head, [*phase.entrypoint, *args], working_dir=ROOT, runtime_env_json=runtime_env,
                                  timeout=None, on_line=show)
            except ServiceError:
                if not verbose:
                    print("".join(f"  {phase.name} | {ln}" for ln in lines[-40:]), end="", flush=True)
                raise ServiceError(f"phase {phase.name} failed; its whole output: {path}") from None

    return submit


def summarize(runs: dict[str, str], mlflow_uri: str) -> str:
    """The found architecture with its AO, params and MACs, read back from MLflow."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(mlflow_uri)
    out = []
    for phase, run_id in runs.items():
        run = client.get_run(run_id)
        tag = run.data.tags.get(PHASE_TAG)
        note = "" if tag == phase else f"  (tagged {PHASE_TAG}={tag!r}, expected {phase!r})"
        out.append(f"  {phase:9s} run {run_id}  {run.info.status}{note}")
    if "search" in runs:
        path = client.download_artifacts(runs["search"], "best_arch.json")
        best = json.loads(Path(path).read_text())
        out += [f"  architecture  {best['arch']}",
                f"  params        {best['params'] / 1e6:.3f} M",
                f"  MACs          {best['macs'] / 1e6:.1f} M",
                f"  AO (search)   {best['ao']:.4f}{_versus(best['ao'], best.get('baseline_ao'))}"]
    if "retrain" in runs:
        metrics = client.get_run(runs["retrain"]).data.metrics
        baseline = next((v for k, v in sorted(metrics.items()) if "baseline_ao" in k), None)
        ao = {k: v for k, v in metrics.items() if re.search(r"(^|/|_)ao($|/)", k) and "baseline" not in k}
        out += [f"  AO (retrain)  {k} = {v:.4f}{_versus(v, baseline)}" for k, v in sorted(ao.items())]
    return "\n".join(out)


def _versus(ao: float, baseline: float | None) -> str:
    """The stay-at-first-box AO of the same frames beside an AO, and plainly whether it is beaten."""
    if baseline is None:
        return ""
    verdict = f"beats it by {ao - baseline:.4f}" if ao > baseline else "does NOT beat it"
    return f"  (a tracker that stays at the first box: {baseline:.4f}; {verdict})"


# The embedded data set each pipeline size runs on, and where (the configs name the folder).
DATA = {"micro": ("tiny", "synth"), "tiny": ("default", "synth"), "small": ("small", "synth_small")}


def ensure_data(base: Path, size: str = "default", folder: str = "synth") -> Path:
    """``base/data/<folder>`` with the embedded data set, generated unless it is complete."""
    data = base / "data" / folder
    summary = data / "synth.json"
    done = json.loads(summary.read_text()) if summary.is_file() else {}
    if done.get("size") == asdict(SIZES[size]) and "layouts" in done:  # older ones lack the layouts
        _say(f"embedded data: {data} (exists)")
        return data
    if data.exists():  # another size (the tests write the tiny one there): write the one asked for
        shutil.rmtree(data)
    _say(f"embedded data: generating {data} (lighttrack data synth --size {size})")
    cmd = [str(BIN / "python"), "-m", "lighttrack.cli", "data", "synth", "--out", str(data),
           "--size", size, "--workers", "2"]
    subprocess.run(cmd, cwd=ROOT, check=True)
    return data


def _interrupt(signum: int, frame: object) -> None:
    """SIGTERM (e.g. a CI timeout) and SIGINT end through main's ``finally``."""
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", choices=tuple(DATA), default="tiny",
                   help="tiny: the quick-start run (about 20 min); small: the quality run (under 2 h on 2 cores, 'data/synth_small'); micro: seconds per phase (CI)")
    p.add_argument("--phases", default=",".join(ph.name for ph in PHASES),
                   help="comma-separated subset, in pipeline order")
    p.add_argument("--out", type=Path, default=ROOT / "runs" / "pipeline",
                   help="MLflow store (mlflow.db, artifacts) and Ray Train storage")
    p.add_argument("--data-base", type=Path, default=ROOT, metavar="DIR",
                   help="the folder whose data/<set> holds the embedded data set, written there when "
                        "missing or of another size (default: this checkout)")
    p.add_argument("--local-nodes", type=count, default=0, metavar="N",
                   help="run on a local multi-node cluster (needs root): a head with no CPUs, N worker "
                        "nodes that see none of this machine's files, data, storage and MLflow artifacts "
                        "in a local S3 server (cluster/README.md)")
    p.add_argument("--verbose", action="store_true",
                   help="show every line of the jobs' output (Ray's own included), not only their progress "
                        "lines; it is always in <out>/logs/<phase>.log")
    args = p.parse_args(argv)
    names = [n.strip() for n in args.phases.split(",") if n.strip()]
    unknown = sorted(set(names) - {ph.name for ph in PHASES})
    if unknown:
        p.error(f"unknown phase(s) {unknown}")
    if args.local_nodes < 0:
        p.error(f"--local-nodes {args.local_nodes}: give 0 (one node) or a number of worker nodes")

    # Also SIGINT: a shell that starts us in the background would otherwise ignore Ctrl-C.
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
    t0 = time.monotonic()
    base = args.data_base.resolve()
    data = ensure_data(base, *DATA[args.size])
    out = args.out.resolve()
    # A team's tracking server, when the user has one: log there and start none.
    given = os.environ.get("MLFLOW_TRACKING_URI", "")
    services: list = []
    try:
        if given:
            from ray_jobs.common import setup_mlflow
            setup_mlflow()  # reachable? (one clear line, before any work)
            _say(f"MLflow: MLFLOW_TRACKING_URI={given} (no local MLflow server)")
        stamp = time.strftime("%Y%m%d-%H%M%S")
        if args.local_nodes:
            _say(f"starting a local cluster: S3 server, Ray head (no CPUs), {args.local_nodes} worker node(s)"
                 + ("" if given else ", MLflow server (artifacts in S3)"))
            cluster = LocalCluster(out / "cluster", nodes=args.local_nodes,
                                   cpus_per_node=max(1, (os.cpu_count() or 2) // args.local_nodes),
                                   hide=tuple({ROOT / "runs", ROOT / "data", base / "data"}), tracking_uri=given)
            services.append(cluster)
            cluster.start()
            cluster.s3.upload(data, "pipeline", "data", data.name)
            head, uri, env = cluster.head, cluster.tracking_uri, cluster.job_env
            storage, data_base = cluster.s3.uri("pipeline", "runs"), cluster.s3.uri("pipeline")
            extra = {"supernet": ["--num-workers", str(args.local_nodes)], "search": ["--workers", str(args.local_nodes)]}
        else:
            _say("starting Ray head (127.0.0.1, token auth)" + ("" if given else " and MLflow server (127.0.0.1, sqlite)"))
            head = LocalRay(num_cpus=2)
            services.append(head)
            head.start()
            if not given:
                tracking = LocalMlflow(out / "mlflow")
                services.append(tracking)
                tracking.start()
            uri = given or tracking.uri
            env, storage, data_base, extra = {"MLFLOW_TRACKING_URI": uri}, out / "ray", base, {}
        _say(f"Ray dashboard {head.dashboard_url}   MLflow UI {uri}")
        logs = out / "logs" / stamp
        _say(f"each phase's whole output goes to {logs}/<phase>.log" + ("" if args.verbose else
             "; here only its progress lines (--verbose: all)"))
        runs = run_phases(_stream_submit(head, env, logs, args.verbose), args.size, names, stamp, storage,
                          data_base, extra)
        _say(f"finished in {(time.monotonic() - t0) / 60:.1f} min\n{summarize(runs, uri)}")
        if not given and not args.local_nodes:
            _say(f"MLflow UI was {uri}; browse the runs again with:\n"
                 f"  .venv/bin/mlflow ui --host 127.0.0.1 --port 5000 --backend-store-uri "
                 f"sqlite:///{out / 'mlflow' / 'mlflow.db'} --artifacts-destination {out / 'mlflow' / 'artifacts'}")
        return 0
    except KeyboardInterrupt:
        _say("interrupted")
        return 130
    except (ServiceError, OpsError) as e:
        _say(f"FAILED: {e}")
        return 1
    finally:
        # A second Ctrl-C must not cut the clean-up short and leave services behind.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        _say("stopping the services it started")
        for service in reversed(services):
            service.stop()

if __name__ == "__main__":
    sys.exit(main())
