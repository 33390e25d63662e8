"""Shared driver and worker plumbing of the three training jobs (phases 1, 2, 4).

Driver: parse ``--config/--set/--name/--storage-path``, connect to Ray (or start a local
one), find-or-create the job's single MLflow run, build a ``TorchTrainer`` with a
``FailureConfig`` and a checkpoint per epoch, and fit. Re-running the same ``--name``
with the same ``--storage-path`` resumes from the last checkpoint (Ray Train restores
the run's checkpoint state) and reuses the MLflow run found by its tags.

Worker: a ``Reporter`` binds the library loops' ``report(metrics, state)`` to MLflow
(rank 0 only, through ``ray_jobs.outbox``: training goes on while the server is away) and
to ``ray.train.report`` with a checkpoint (every rank, once an epoch).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import torch

from lighttrack.config import load, to_dict
from ray_jobs.common import PARENT_TAG, open_run, tracking_uri
from ray_jobs.outbox import close_all, outbox

ROOT = Path(__file__).resolve().parents[1]  # the checkout: default storage path runs/
# TEST ONLY: a driver with this set to N makes rank 0 of its training kill its own process at
# global step N, once (tests/test_train_resume.py). Not a config key: no user sets it, MLflow never shows it.
FAULT_ENV = "LIGHTTRACK_TEST_FAULT_STEP"

__all__ = ["parse_args", "run_training", "Reporter", "worker_setup", "input_state", "load_checkpoint_ref", "CHECKPOINT_FILE"]

CHECKPOINT_FILE = "checkpoint.pt"


# -- driver ---------------------------------------------------------------------------------
def parse_args(description: str, default_config: str, argv: list[str] | None = None) -> argparse.Namespace:
    """docs/jobs.md's common options (ray_jobs.common) with this job's default config."""
    from ray_jobs.common import add_common_args
    p = add_common_args(argparse.ArgumentParser(description=description))
    # None = take run.num_workers / run.use_gpu from the config
    p.set_defaults(config=Path(default_config), num_workers=None, use_gpu=None,
                   storage_path=str(ROOT / "runs"))
    args = p.parse_args(argv)
    if not args.name:
        p.error("--name is required (re-running the same --name and --storage-path resumes the run)")
    return args


def run_training(args: argparse.Namespace, cfg_cls: type, phase: str, worker_fn: Callable[[dict], None],
            lineage: Callable[[Any], dict[str, str]] = lambda cfg: {},
            inputs: Callable[[Any], dict[str, tuple[str, str]]] = lambda cfg: {},
            prepare: Callable[[Any, str | None], Any] | None = None) -> dict:
    """Build the TorchTrainer for ``worker_fn`` and fit it; returns the final metrics.

    ``prepare(cfg, storage)`` runs once in the driver before the run is created and returns
    the config the workers get and MLflow records; by default :func:`with_indexes`.

    ``inputs(cfg)`` names the checkpoints the workers start from, ``{name: (reference,
    phase)}`` (a path or a run id, see :func:`load_checkpoint_ref`). The driver loads each
    once, before any work, and hands it to the workers through Ray's object store
    (:func:`input_state`), so a worker on any node gets it, whether the reference was a run
    id or a file on the driver's disk. Their lineage tags join the run's (``init``'s as
    they are, another input's as ``lighttrack.<name>_<tag>``).
    """
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer
    from lighttrack.config import check_inputs
    from ray_jobs.capacity import cluster_capacity, storage_path_check, use_gpu as gpu_flag
    from ray_jobs.common import OpsError, connect_ray, mark_failed, setup_mlflow
    overrides = list(args.overrides)
    if args.num_workers is not None:
        overrides.append(f"run.num_workers={args.num_workers}")
    if args.use_gpu is not None:
        overrides.append(f"run.use_gpu={args.use_gpu}")
    cfg = load(cfg_cls, args.config, overrides)
    tags = lineage(cfg)
    setup_mlflow(args.experiment)
    states = {}
    for key, (ref, ref_phase) in inputs(cfg).items():  # resolves parents (and fails early on a bad one)
        state, ref_tags = load_checkpoint_ref(ref, phase=ref_phase, what=key)
        states[key] = {"model": state["model"]}  # the weights only, not the optimizer state
        tags |= ref_tags if key == "init" else {f"lighttrack.{key}_{k.rsplit('.', 1)[-1]}": v
                                                 for k, v in ref_tags.items()}
    check_inputs(cfg)  # every dataset and tracker file the job will read: still before Ray and any run
    connect_ray(args.address)
    capacity = cluster_capacity()  # read once: the storage check and --use-gpu auto both need it
    storage = storage_path_check(args.storage_path, capacity.max_nodes)
    use_gpu = gpu_flag(cfg.run.use_gpu, capacity)
    capacity.check_fits(f"[{args.name}] run.num_workers", cfg.run.num_workers, cfg.run.cpus_per_worker, float(use_gpu))
    import ray
    refs = {key: ray.put(state) for key, state in states.items()}
    del states
    cfg = (prepare or with_indexes)(cfg, storage)  # after the cheap checks of the inputs, before any rank
    run_id, status = open_run(phase, args.name, args.experiment, cfg, tags, storage)
    if status == "done":  # a re-run of a finished job: no worker group is started to find that out
        return {"run_id": run_id, "metrics": {}, "checkpoint": None}
    trainer = TorchTrainer(
        _sending_all(worker_fn),
        train_loop_config={"config": absolute_paths(to_dict(cfg)), "config_path": args.config, "overrides": args.overrides,
                           "run_id": run_id, "tracking_uri": tracking_uri(), "name": args.name, "inputs": refs,
                           "phase": phase, "fault_step": int(os.environ.get(FAULT_ENV, -1))},
        scaling_config=ScalingConfig(num_workers=cfg.run.num_workers, use_gpu=use_gpu,
                                     resources_per_worker={"CPU": cfg.run.cpus_per_worker}),
        run_config=RunConfig(name=args.name, storage_path=storage,
                             failure_config=FailureConfig(max_failures=cfg.run.max_failures),
                             checkpoint_config=CheckpointConfig(num_to_keep=cfg.run.keep_checkpoints)),
    )
    print(f"[{args.name}] phase {phase}: mlflow run {run_id} ({tracking_uri()}), storage {storage}", flush=True)
    from mlflow.tracking import MlflowClient
    client = MlflowClient(tracking_uri())
    try:
        result = trainer.fit()
        if result.checkpoint is None:  # a run that trained nothing must not look finished
            raise OpsError(f"[{args.name}] the training ended without a checkpoint "
                           f"(metrics: {json.dumps(result.metrics, default=str)[:300]})")
        with result.checkpoint.as_directory() as d:
            client.log_artifacts(run_id, d, "checkpoint")
    except BaseException as e:
        mark_failed(client, run_id, e)
        raise
    client.set_terminated(run_id, status="FINISHED")
    print(f"[{args.name}] done: {json.dumps(result.metrics, default=str)}", flush=True)
    return {"run_id": run_id, "metrics": result.metrics, "checkpoint": result.checkpoint}


def _sending_all(worker_fn: Callable[[dict], None]) -> Callable[[dict], None]:
    """``worker_fn`` that returns only once its MLflow writes are sent (ray_jobs.outbox)."""
    def loop(loop_config: dict) -> None:
        try:
            worker_fn(loop_config)
        finally:
            close_all()
    return loop


def absolute_paths(config: dict) -> dict:
    """``config`` (as a dict) with its relative local paths that exist here made absolute:
    Ray Train workers do not run in the driver's directory (a local Ray starts them in its
    session folder). URIs, MLflow run ids, arch or preset names and missing paths (left
    for the reader's own error) stay."""
    from lighttrack.config import map_locations
    from lighttrack.data.fs import absolute
    return map_locations(config, lambda v: absolute(v) if os.path.exists(v) else v)


def with_indexes(cfg: Any, storage: str | None) -> Any:
    """``cfg`` with an index for every tracking source it trains on (``cfg.data``,
    ``cfg.finetune.data``, ...): built here, once per job, when a source has none, so no
    rank reads every annotation. A new index goes beside its data or, when that folder is
    read-only, under ``<storage>/indexes``."""
    from lighttrack.config import replace_configs
    from lighttrack.data.fs import join
    from lighttrack.data.sampling import PairDataConfig, index_sources

    def indexed(c: Any) -> Any:
        if not isinstance(c, PairDataConfig):
            return None
        t = time.perf_counter()
        out = index_sources(c, fallback=join(storage, "indexes") if storage else "")
        for sc in out.sources:
            print(f"[data] {sc.kind}:{sc.root} -> index {sc.index}", flush=True)
        print(f"[data] indexes ready in {time.perf_counter() - t:.1f} s", flush=True)
        return out

    return replace_configs(cfg, indexed)


# -- parent references ------------------------------------------------------------------------
def load_checkpoint_ref(ref: str, phase: str = "pretrain", what: str = "") -> tuple[dict, dict[str, str]]:
    """A training checkpoint from a path (file, checkpoint folder or Ray run folder) or the
    MLflow run id of a finished ``phase`` run. Returns (state dict, lineage tags).

    A file of another phase is refused from its keys before its tensors are read
    (``lighttrack.checkpoint.require_phase``); ``what`` names the input in the message."""
    from lighttrack import checkpoint
    p = Path(ref)
    if p.is_dir() and not (p / CHECKPOINT_FILE).is_file():
        ckpts = sorted(p.glob(f"checkpoint_*/{CHECKPOINT_FILE}"))  # a Ray Train run folder: the latest
        p = ckpts[-1].parent if ckpts else p
    if p.is_dir():
        p = p / CHECKPOINT_FILE
    if p.exists() or os.sep in ref or ref.endswith((".pt", ".pth")):
        checkpoint.require_phase(p, phase, what)
        return checkpoint.load(p), {"lighttrack.parent_path": str(p.resolve())}
    import mlflow
    from ray_jobs.common import resolve_run_input
    mlflow.set_tracking_uri(tracking_uri())
    got = resolve_run_input(ref, phase, f"checkpoint/{CHECKPOINT_FILE}")
    return checkpoint.load(got.path), {PARENT_TAG: ref}


# -- worker -----------------------------------------------------------------------------------
def input_state(loop_config: dict, name: str) -> dict | None:
    """The checkpoint the driver loaded for input ``name`` (see ``run_training(inputs=...)``), or None."""
    import ray
    ref = loop_config.get("inputs", {}).get(name)
    return None if ref is None else ray.get(ref)


def worker_setup(cfg_cls: type, loop_config: dict) -> tuple[Any, Any]:
    """This Ray Train worker's (config, Dist: rank, world size, device); torch threads as
    configured and the seed set, so every rank builds identical initial weights."""
    import ray.train
    import ray.train.torch
    from lighttrack.config import from_dict
    from lighttrack.train.common import Dist
    cfg = from_dict(cfg_cls, loop_config["config"])
    if cfg.run.threads:
        torch.set_num_threads(cfg.run.threads)
    ctx = ray.train.get_context()
    dist = Dist(ctx.get_world_rank(), ctx.get_world_size(), ray.train.torch.get_device())
    torch.manual_seed(cfg.run.seed)
    return cfg, dist


def ddp_wrap(model: torch.nn.Module) -> torch.nn.Module:
    """DDP for single-path training: the same path on every rank, most parameters unused."""
    import ray.train.torch
    return ray.train.torch.prepare_model(model, parallel_strategy_kwargs={"find_unused_parameters": True})


def resume_state(loop_config: dict) -> dict | None:
    """The state of the latest checkpoint (restart after a failure, or a re-run of the job).
    Rank 0 sends that epoch's metrics again, as the same rows: MLflow keeps them once."""
    import ray.train
    from mlflow.entities import Metric
    from lighttrack import checkpoint
    ckpt = ray.train.get_checkpoint()
    if ckpt is None:
        return None
    with ckpt.as_directory() as d:
        state = checkpoint.load(Path(d) / CHECKPOINT_FILE)
    got = state.get("epoch_metrics")
    rank0 = ray.train.get_context().get_world_rank() == 0
    if rank0:  # 0-based in the state, 1-based in the epoch lines
        print(f"[{loop_config['name']}] resuming after epoch {state['epoch'] + 1} from its checkpoint", flush=True)
    if got and rank0:
        outbox(loop_config["tracking_uri"], loop_config["run_id"]).metrics(
            [Metric(got["prefix"] + k.replace("@", "_"), v, got["ms"], got["step"])
             for k, v in got["metrics"].items() if math.isfinite(v)])
    return state


class Reporter:
    """``report(metrics, state=None)`` for the library loops, inside a Ray Train worker."""

    def __init__(self, loop_config: dict, log_every: int, prefix: str = "", epochs: int = 0,
                 fault: bool = True) -> None:
        import ray.train
        self.ctx = ray.train.get_context()
        self.rank = self.ctx.get_world_rank()
        self.run_id, self.name = loop_config["run_id"], loop_config["name"]
        self.phase = loop_config.get("phase")
        self.log_every, self.prefix, self.epochs = max(log_every, 1), prefix, epochs
        # TEST ONLY (FAULT_ENV): kill once per MLflow run (a marker file makes the restarted attempt go on)
        fault_step = loop_config.get("fault_step", -1) if fault else -1
        self.fault_marker = Path(tempfile.gettempdir()) / f"lighttrack_fault_{self.run_id}_{prefix.strip('/')}"
        self.fault_step = fault_step if (fault_step >= 0 and not self.fault_marker.exists()) else -1
        # rank 0's MLflow writes go through a thread (ray_jobs.outbox): a tracking server that
        # stalls or restarts delays the metrics, not the training
        self.client = outbox(loop_config["tracking_uri"], self.run_id) if self.rank == 0 else None
        self.t0 = time.time()

    def _log(self, metrics: dict, step: int, ms: int | None = None) -> None:
        from mlflow.entities import Metric
        ms = int(time.time() * 1000) if ms is None else ms
        self.client.metrics([Metric(self.prefix + k.replace("@", "_"), float(v), ms, step) for k, v in metrics.items()
                             if isinstance(v, (int, float)) and math.isfinite(float(v))])

    def __call__(self, metrics: dict, state: dict | None = None) -> None:
        import ray.train
        step = int(metrics.get("global_step", 0))
        if state is None:
            if self.fault_step >= 0 and step == self.fault_step and self.rank == 0:
                self.fault_marker.touch()
                # let the controller register the last checkpoint first (it polls the workers;
                # a worker lost inside that window restarts from the checkpoint before)
                ray.train.get_all_reported_checkpoints(timeout_s=60)
                print(f"[fault injection] rank 0 pid {os.getpid()} kills itself at step {step}", flush=True)
                os.kill(os.getpid(), signal.SIGKILL)
            if self.client is not None and (step % self.log_every == 0 or "step" not in metrics):
                self._log(metrics, step)
            return
        # epoch end: checkpoint (rank 0 writes it) + collective report on every rank, and only
        # then the epoch's metrics: a node lost before the report resumes from the previous
        # checkpoint and logs this epoch once, when it is done again; lost after, it resumes
        # from this one.
        numeric = {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float))}
        # the epoch's metrics, stamped now, travel in the checkpoint too: a worker lost before
        # its outbox sent them sends the same rows again when it resumes (resume_state)
        logged = {"ms": int(time.time() * 1000), "step": step, "prefix": self.prefix, "metrics": numeric}
        with tempfile.TemporaryDirectory() as tmp:
            checkpoint = None
            if self.rank == 0:  # stamped with its phase: lighttrack.checkpoint.inspect reads it first
                torch.save({**state, "phase": self.phase, "epoch_metrics": logged}, Path(tmp) / CHECKPOINT_FILE)
                checkpoint = ray.train.Checkpoint.from_directory(tmp)
            ray.train.report({self.prefix + k: v for k, v in numeric.items()}, checkpoint=checkpoint)
            if self.rank == 0:
                # Ray's documented order: wait until the controller has registered this
                # checkpoint, then log. A node lost between the report and that registration
                # restarted from the epoch before, and the epoch was logged twice (seen once
                # in tests/test_cluster.py on a fast machine).
                ray.train.get_all_reported_checkpoints(timeout_s=60)
                self._log(numeric, step, logged["ms"])
                # the latest checkpoint is in MLflow after every epoch (replacing the previous
                # one), so an interrupted run's progress is visible and downloadable there too
                self.client.checkpoint(Path(tmp) / CHECKPOINT_FILE, "checkpoint")
                epoch = int(metrics["epoch"])
                eta = metrics.get("eta_s", float("nan"))
                extra = " ".join(f"{k}={v:.4g}" for k, v in numeric.items()
                                 if k.startswith(("train_loss", "top1", "val_ao", "val_eao")))
                # the process's own stdout: Ray Train wraps sys.stdout and patches print() to
                # log as well as echo, and either way the line reached the driver twice
                out = sys.__stdout__ or sys.stdout
                out.write(f"[{self.name}] {self.prefix}epoch {epoch + 1}/{self.epochs} "
                          f"{numeric.get('epoch_time_s', 0):.1f}s {extra} ETA {_hms(eta)}\n")
                out.flush()


def _hms(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    s = int(seconds)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"
