"""What the connected Ray cluster has now or can scale to, and the checks a job makes from it
before any work: GPUs or not (``--use-gpu auto``), a storage path every node sees, workers
that can be placed at all.

A cluster that autoscales from zero has only its head when a job starts, so the live nodes
alone undercount: the worker node types the autoscaler may start are added (see
:func:`cluster_capacity`).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ray_jobs.common import OpsError

__all__ = ["Capacity", "cluster_capacity", "use_gpu", "storage_path_check", "CLUSTER_CONFIG_ENV"]


@dataclass(frozen=True)
class Capacity:
    """What the connected cluster has now or can scale to (live nodes + autoscaler node types)."""

    live_nodes: int
    max_nodes: int  # live nodes plus every worker node the autoscaler may still start
    max_gpus: float  # GPUs on live nodes, or on the node types that can be started, whichever is more
    max_cpus: float = float("inf")  # CPUs on live nodes plus those of every node that may still start
    node_types: str = ""  # where the node types came from: "gcs", a config file's path, "" (none found)

    def check_fits(self, what: str, n: int, cpus: float, gpus: float = 0.0) -> None:
        """Refuse ``n`` workers of ``cpus``/``gpus`` each that cannot all be placed even at
        full scale (totals only, as Ray Train's own check), which would wait forever. With
        no node types found the bound is the live nodes, and an autoscaler we cannot see may
        still add nodes: then a warning line, not an error."""
        need_cpu, need_gpu = n * cpus, n * gpus
        if need_cpu <= self.max_cpus and need_gpu <= self.max_gpus:
            return
        msg = (f"{what}: {n} worker(s) of {cpus:g} CPU / {gpus:g} GPU need {need_cpu:g} CPUs and {need_gpu:g} "
               f"GPUs, but the Ray cluster has{' or can scale to' if self.node_types else ''} {self.max_cpus:g} "
               f"CPUs and {self.max_gpus:g} GPUs ({self.max_nodes} nodes)")
        if not self.node_types:
            print(f"WARNING {msg}; no autoscaler node types were found ({CLUSTER_CONFIG_ENV}), so the job "
                  "waits for nodes to join", flush=True)
            return
        raise OpsError(f"{msg}: lower the worker count or its resources, or add node types")


# Where the head's autoscaler reads its cluster config when no record of it is in the GCS:
# `ray up` puts the launcher's config there on the head, where job drivers run.
CLUSTER_CONFIG_ENV = "LIGHTTRACK_CLUSTER_CONFIG"
BOOTSTRAP_CONFIG = "~/ray_bootstrap_config.yaml"


def cluster_capacity() -> Capacity:
    """The connected cluster's :class:`Capacity`.

    A cluster that autoscales from zero has only its head when a job starts, so live nodes
    alone undercount. The worker node types the autoscaler may start come from the GCS's
    cluster-config record where something published one (Ray Train reads the same record),
    else from the autoscaler's own config file on the head: ``$LIGHTTRACK_CLUSTER_CONFIG``,
    or ``~/ray_bootstrap_config.yaml`` where ``ray up`` wrote it. Ray's own autoscaler (v1
    and v2, 2.60) publishes no record, so on a ``ray up`` cluster the file is the source.
    """
    import ray

    live = [n for n in ray.nodes() if n.get("Alive")]
    gpus_live = sum(n["Resources"].get("GPU", 0) for n in live)
    cpus_live = sum(n["Resources"].get("CPU", 0) for n in live)
    types, source = _node_types_from_gcs(live), "gcs"
    if not types:
        types, source = _node_types_from_file()
    extra_nodes = sum(count for _, count in types)
    gpus_types = sum(res.get("GPU", 0) * count for res, count in types)
    cpus_types = sum(res.get("CPU", 0) * count for res, count in types)
    return Capacity(len(live), len(live) + extra_nodes, float(max(gpus_live, gpus_types)),
                    float(cpus_live + cpus_types), source if types else "")


def _node_types_from_gcs(live: list[dict]) -> list[tuple[dict, int]]:
    """(resources, max count) per worker node type in the GCS's cluster-config record."""
    import ray

    try:
        config = ray._private.state.state.get_cluster_config()
    except Exception:  # noqa: BLE001  (an older GCS without the record)
        config = None
    head = next((n["Resources"] for n in live if "node:__internal_head__" in n["Resources"]), {})
    out = []
    for group in (config.node_group_configs if config else []):
        res = dict(group.resources)
        if group.max_count <= 0:
            continue
        if group.max_count == 1 and all(head.get(k) == v for k, v in res.items() if k in ("CPU", "GPU")):
            continue  # the head's own node type
        out.append((res, min(group.max_count, 1 << 16)))
    return out


def _node_types_from_file() -> tuple[list[tuple[dict, int]], str]:
    """(resources, max count) per worker node type of the autoscaler's config file, if any,
    and the file's path.

    The file is the cluster launcher's (``available_node_types``, ``head_node_type``, the
    global ``max_workers`` cap); a file that does not parse is an :class:`OpsError`, since
    a wrong answer here would pass a local storage path on a multi-node cluster."""
    path = Path(os.path.expanduser(os.environ.get(CLUSTER_CONFIG_ENV) or BOOTSTRAP_CONFIG))
    if not path.is_file():
        if os.environ.get(CLUSTER_CONFIG_ENV):
            raise OpsError(f"{CLUSTER_CONFIG_ENV}={path} does not exist")
        return [], ""
    import yaml

    try:
        config = yaml.safe_load(path.read_text()) or {}  # YAML, or the JSON `ray start` is given
        head = config.get("head_node_type")
        types = [(dict(t.get("resources") or {}), int(t.get("max_workers", 0)))
                 for name, t in (config.get("available_node_types") or {}).items() if name != head]
    except (yaml.YAMLError, AttributeError, TypeError, ValueError) as e:
        raise OpsError(f"{path}: not a Ray cluster config the capacity check can read ({e})") from None
    cap = config.get("max_workers")
    out = []
    for res, count in types:
        count = count if cap is None else min(count, int(cap) - sum(c for _, c in out))
        if count > 0:
            out.append((res, count))
    return out, str(path)


def use_gpu(flag: str, capacity: Capacity | None = None) -> bool:
    """``--use-gpu``: auto is true when the cluster has GPUs or can start GPU nodes."""
    if flag != "auto":
        return flag == "true"
    return (capacity or cluster_capacity()).max_gpus > 0


def storage_path_check(path: str | None, num_nodes: int | None = None) -> str | None:
    """Validate ``--storage-path`` for the connected cluster; returns it normalised.

    A URI (``s3://``, ``gs://``, ``file://`` for a shared mount) is passed through. A plain
    local path is made absolute, and is an :class:`OpsError` on a cluster that has or can
    have more than one node (the workers would write checkpoints the driver never sees).
    ``None`` keeps Ray's default, which is local too, so it is likewise refused there.
    ``num_nodes`` defaults to :func:`cluster_capacity`'s ``max_nodes``.
    """
    if path and "://" in path:
        return path
    if num_nodes is None:
        num_nodes = cluster_capacity().max_nodes
    if num_nodes > 1:
        what = f"--storage-path {path!r} is a local path" if path else "no --storage-path was given"
        raise OpsError(f"{what}, but the Ray cluster has or can scale to {num_nodes} nodes: checkpoints "
                       "must go to storage every node sees (s3://bucket/prefix, gs://bucket/prefix, or "
                       "file:///mnt/shared for a shared file system)")
    from lighttrack.data.fs import absolute

    return absolute(path) if path else None
