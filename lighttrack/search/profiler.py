"""The timing harness behind latency tables: ``profile()`` measures every entry of a
:class:`~lighttrack.search.latency.LatencyTable` on the machine where it runs.

It times every block choice of the search space at its real input shape in the
per-frame *search branch* (the template branch runs once per video and is not counted,
as for MACs): stem + DS block, each backbone MBConv choice at each of the 14 positions,
the neck per backbone output channel count, each head layer op (k3/k5) per channel
count and position, and the output convs, per output stride (16; and 8 when profiled
for the wide space, whose stage-2 outputs give 32x32 maps). Each timed step carries the
cost key (``Arch.cost_keys``) of the entry it measures.

Why a sum of block timings matches the whole network: the blocks are timed *in
sequence*, inside full forwards of a few covering architectures and of random ones (each
block reads the output its predecessor just wrote, so caches are as warm as in the real
network, and meets the kinds of neighbours it has in real networks), with
the same thread count, in eval mode under ``torch.inference_mode`` (or one ONNX Runtime
session per block). What the sum still misses (the Python or session overhead between
blocks, and the weights of a network that are no longer in cache when it runs again) is
one constant, ``overhead_ms``, calibrated once during profiling as the median of
(whole-network time - sum of its blocks) over those architectures. Their whole networks
are timed in a separate round after all block timings, so that each one finds the cache
as another network left it, as a real network does (timed right after its own blocks,
warm, they under-estimated the networks timed on their own by 6 % on average in one run).

Every entry is the median over ``repeats`` forwards, so other jobs on a shared machine
move it little (medians add up as the blocks do; a low percentile does not: the sum of
the blocks' 10th percentiles fell 8 ms below the networks' own). ``clock="thread"``
(1 thread only) counts the CPU time of the calling thread, which preemption by other
processes does not inflate.

    profile(backend="torch", threads=1).save("table.json")
"""
from __future__ import annotations

import datetime as dt
import os
import platform
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn

from lighttrack.arch import HEAD_OPS, Arch, Space, get_space
from lighttrack.costs import CostTable
from lighttrack.models.blocks import head_output, pixel_correlation
from lighttrack.models.complexity import covering_archs
from lighttrack.models.static import SearchBranch, StaticTracker, tile_se_gates
from lighttrack.search.latency import LatencyTable, LatencyTableError
from lighttrack.tracker.runtimes import RUNTIMES, Graph, get_runtime

__all__ = ["BACKENDS", "CLOCKS", "profile", "machine_info", "make_runner", "check_latency", "not_here",
           "latency_line"]

BACKENDS = ("torch", *RUNTIMES)
CLOCKS = ("wall", "thread")


# -- what gets timed ----------------------------------------------------------------------------
class _NeckCorr(nn.Module):
    """The neck's BNs and correlation: zf (1, C, s, s), xf (1, C, H, W) -> (1, s*s, H, W)."""

    def __init__(self, bn_z: nn.Module, bn_x: nn.Module) -> None:
        super().__init__()
        self.bn_z, self.bn_x = bn_z, bn_x

    def forward(self, zf: torch.Tensor, xf: torch.Tensor) -> torch.Tensor:
        return pixel_correlation(self.bn_z(zf), self.bn_x(xf))


class _Out(nn.Module):
    def __init__(self, kind: str, conv: nn.Module) -> None:
        super().__init__()
        self.kind, self.conv = kind, conv

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return head_output(self.kind, self.conv(h))


# A step: (table key, module, input names, output name) over the values of one forward.
Step = tuple[tuple, nn.Module, tuple[str, ...], str]


def _steps(net: StaticTracker) -> list[Step]:
    """The search branch of ``net`` as a chain of table entries, in execution order."""
    a, bb, neck = net.arch, net.backbone, net.neck
    key = f"c{a.out_channels}"
    steps: list[Step] = [(("fixed",), nn.Sequential(bb.stem, bb.ds), ("x",), "y")]
    steps += [(("block", i, c), blk, ("y",), "y") for i, (c, blk) in enumerate(zip(a.backbone, bb.blocks))]
    steps += [(("neck", a.out_channels), _NeckCorr(neck.bn_z[key], neck.bn_x[key]), ("zf", "y"), "corr"),
              (("neck", a.out_channels), nn.Sequential(neck.ca, neck.adjust), ("corr",), "f")]
    for br, h, head in (("cls", a.cls, net.cls_head), ("reg", a.reg, net.reg_head)):
        src, j = "f", 0
        for i, op in enumerate(h.ops):
            if HEAD_OPS[op] is not None:
                steps.append((("head", a.stride, br, h.channels, i, op), head.layers[j], (src,), f"h_{br}"))
                src, j = f"h_{br}", j + 1
        steps.append((("out", a.stride, br, h.channels), _Out(br, head.out), (src,), f"out_{br}"))
    return steps


# -- backends -----------------------------------------------------------------------------------
def make_runner(module: nn.Module, example: Sequence[torch.Tensor], backend: str,
                threads: int) -> Callable[..., Any]:
    """``run(*inputs) -> output`` of ``module`` on ``backend`` (eval mode; torch tensors in
    and out for torch, NumPy arrays for a deployment runtime; a tuple output stays a tuple).

    A runtime gets the graph as a found tracker's export gives it (SE gates tiled for ONNX
    Runtime, tracker/runtimes.py), built in a folder that lives as long as the runner."""
    import tempfile

    module = module.eval()
    if backend == "torch":
        return module
    if backend not in BACKENDS:
        raise LatencyTableError(f"backend {backend!r} is not one of {BACKENDS}")
    runtime = get_runtime(backend)
    runtime.require()
    with torch.no_grad():
        n_out = len(out) if isinstance(out := module(*example), tuple) else 1
    names = tuple(f"in{i}" for i in range(len(example)))
    graph = Graph("block", tile_se_gates(module) if runtime.tile_se else module, tuple(example), names,
                  tuple(f"out{i}" for i in range(n_out)))
    folder = tempfile.TemporaryDirectory(prefix=f"lighttrack-profile-{backend}-")
    session = runtime.load(Path(folder.name) / runtime.build(graph, Path(folder.name)), names, threads)

    def run(*arrays: np.ndarray) -> Any:
        out = session(dict(zip(names, arrays)))
        return out[0] if len(out) == 1 else tuple(out)
    run.folder = folder  # removed with the runner
    return run


def _clock(clock: str, threads: int) -> Callable[[], float]:
    if clock == "wall":
        return time.perf_counter
    if clock == "thread":
        if threads != 1:
            raise LatencyTableError("clock 'thread' counts one thread's CPU time: use it with threads=1")
        return time.thread_time
    raise LatencyTableError(f"clock {clock!r} is not one of {CLOCKS}")


def _inputs(arch: Arch, search_size: int, backend: str) -> dict[str, Any]:
    g = torch.Generator().manual_seed(0)
    side = arch.template_feature_size
    vals = {"zf": torch.randn(1, arch.out_channels, side, side, generator=g),
            "x": torch.randn(1, 3, search_size, search_size, generator=g)}
    return vals if backend == "torch" else {k: v.numpy() for k, v in vals.items()}


class _Prepared:
    """One covering (or measured) architecture: its steps as runners and its whole network."""

    def __init__(self, arch: Arch, backend: str, threads: int, search_size: int,
                 runners: dict[tuple, Callable] | None = None, with_steps: bool = True) -> None:
        self.arch = arch
        net = StaticTracker.build(arch).eval()
        self.inputs = _inputs(arch, search_size, backend)
        self.steps = []
        runners = {} if runners is None else runners
        env = _inputs(arch, search_size, "torch")
        with torch.inference_mode():
            for key, mod, ins, out in _steps(net):
                if not with_steps:
                    env[out] = mod(*(env[n] for n in ins))
                    continue
                # an entry timed in two parts (stem + DS; the neck) gets a runner per part
                rkey = (key, id(mod)) if key[0] in ("fixed", "neck") else key
                if rkey not in runners:
                    runners[rkey] = make_runner(mod, [env[n] for n in ins], backend, threads)
                self.steps.append((key, runners[rkey], ins, out))
                env[out] = mod(*(env[n] for n in ins))
        self.whole = make_runner(SearchBranch(net), [env["zf"], env["x"]], backend, threads)

    def run_steps(self, clock: Callable[[], float]) -> list[tuple[tuple, float]]:
        env, times = dict(self.inputs), []
        for key, run, ins, out in self.steps:
            t = clock()
            env[out] = run(*(env[n] for n in ins))
            times.append((key, (clock() - t) * 1e3))
        return times

    def run_whole(self, clock: Callable[[], float]) -> float:
        t = clock()
        self.whole(self.inputs["zf"], self.inputs["x"])
        return (clock() - t) * 1e3


def machine_info(backend: str = "torch") -> dict[str, Any]:
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {"hostname": platform.node(), "system": f"{platform.system()} {platform.release()}",
            "machine": platform.machine(), "cpu": cpu, "cpu_count": os.cpu_count(),
            "python": platform.python_version(), "torch": torch.__version__,
            "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}
    if backend in RUNTIMES:
        info[backend] = RUNTIMES[backend].version()
    if hasattr(os, "getloadavg"):
        info["load_average"] = [round(x, 2) for x in os.getloadavg()]
    return info


def profile(backend: str = "torch", threads: int = 1, repeats: int = 20, warmup: int = 3,
            search_size: int = 256, clock: str = "wall", log: Callable[[str], None] | None = None,
            probes: Sequence[Arch] = (), probe_ms: dict[str, float] | None = None,
            contexts: int = 16, seed: int = 0, space: str | Space = "paper") -> LatencyTable:
    """Measure every entry of the table on this machine (see module docstring); ``space``
    'wide' adds the stride-8 entries (its stage-2 outputs).

    ``contexts``: random architectures timed block by block besides the covering ones, so
    each entry is a median over the neighbours it meets in real networks (a block between
    blocks of other kinds runs slower than inside a uniform cover: measured on a quiet
    2-core machine, covers alone under-estimated random networks by 8-14 %).

    ``probes``: architectures whose whole search branch is timed in the same loop (each
    repeat: the covers, then the probes), medians written to ``probe_ms`` by arch string;
    a benchmark's end-to-end reference that sees the same machine load as the table.
    They play no part in the table.
    """
    if backend not in BACKENDS:
        raise LatencyTableError(f"backend {backend!r} is not one of {BACKENDS}")
    if backend != "torch":
        get_runtime(backend).require()  # not installed here: said before anything is timed
    if threads < 1 or repeats < 1 or search_size % 16:
        raise LatencyTableError(f"need threads >= 1, repeats >= 1, search_size a multiple of 16; got "
                                f"{threads}, {repeats}, {search_size}")
    tick = _clock(clock, threads)
    torch.set_num_threads(threads)
    say = log or (lambda s: None)
    t0 = time.time()
    runners: dict[tuple, Callable] = {}
    rng = np.random.default_rng(seed)
    space = get_space(space)
    archs = [a for a in covering_archs() if space.contains(a)] + [space.sample(rng) for _ in range(contexts)]
    covers = [_Prepared(a, backend, threads, search_size, runners) for a in archs]
    extra = [_Prepared(a, backend, threads, search_size, with_steps=False) for a in probes]
    probe_times: list[list[float]] = [[] for _ in extra]
    say(f"profile: {len(covers)} archs ({contexts} of them random), {len(runners)} timed blocks ({backend}, "
        f"{threads} thread(s)) prepared in {time.time() - t0:.1f} s")
    samples: dict[tuple, list[float]] = {}
    wholes: list[list[float]] = [[] for _ in covers]
    with torch.inference_mode():
        for r in range(warmup + repeats):
            for p in covers:  # interleaved, so a busy moment hits every entry alike
                steps = p.run_steps(tick)
                if r < warmup:
                    continue
                per_key: dict[tuple, float] = {}
                for key, ms in steps:  # an entry timed in two parts adds up
                    per_key[key] = per_key.get(key, 0.0) + ms
                for key, ms in per_key.items():
                    samples.setdefault(key, []).append(ms)
            for j, p in enumerate(covers):  # whole networks in their own round (module docstring)
                whole = p.run_whole(tick)
                if r >= warmup:
                    wholes[j].append(whole)
            for j, p in enumerate(extra):
                ms = p.run_whole(tick)
                if r >= warmup:
                    probe_times[j].append(ms)
    if probe_ms is not None:
        probe_ms.update({str(p.arch): float(np.median(t)) for p, t in zip(extra, probe_times)})
    med = {k: float(np.median(v)) for k, v in samples.items()}
    # Overhead: what the whole network takes beyond its blocks, median over the covers.
    blocks = CostTable(med)
    calibration = [{"arch": str(p.arch), "whole_ms": float(np.median(w)), "blocks_ms": blocks.total(p.arch)}
                   for p, w in zip(covers, wholes)]
    overhead = float(np.median([c["whole_ms"] - c["blocks_ms"] for c in calibration]))
    table = LatencyTable(backend=backend, threads=threads, search_size=search_size, ms=CostTable(med, overhead),
                         clock=clock, repeats=repeats, machine=machine_info(backend), calibration=calibration)
    table.validate("profile")
    say(f"profile: done in {time.time() - t0:.1f} s; overhead {table.overhead_ms:+.3f} ms; "
        f"load average {table.machine.get('load_average')}")
    return table


def check_latency(table: LatencyTable, archs: Sequence[Arch], repeats: int = 30, warmup: int = 3,
                  tolerance: float = 0.10) -> list[dict[str, Any]]:
    """Measure each architecture's whole search branch as ``table`` was measured (its
    runtime, threads, crop side and clock), beside the table's estimate of it.

    The check a latency budget needs: the estimate adds up per-block medians, so on the
    device the table was made on the measured network should come within ``tolerance``.
    The architectures are timed in turn in every repeat, so a busy moment hits all alike.
    Returns per arch ``{arch, estimate_ms, measured_ms, error, within}`` (error relative
    to the measured time).
    """
    if table.backend != "torch":
        get_runtime(table.backend).require()
    tick = _clock(table.clock, table.threads)
    torch.set_num_threads(table.threads)
    prepared = [_Prepared(a, table.backend, table.threads, table.search_size, with_steps=False) for a in archs]
    times: list[list[float]] = [[] for _ in prepared]
    with torch.inference_mode():
        for r in range(warmup + repeats):
            for j, p in enumerate(prepared):
                ms = p.run_whole(tick)
                if r >= warmup:
                    times[j].append(ms)
    out = []
    for a, t in zip(archs, times):
        measured, estimate = float(np.median(t)), table.estimate(a)
        error = (estimate - measured) / measured
        out.append({"arch": str(a), "estimate_ms": estimate, "measured_ms": measured, "error": error,
                    "within": abs(error) <= tolerance})
    return out


def not_here(table: LatencyTable) -> str | None:
    """Why timing ``table``'s networks on this machine would not check the table (another
    machine's table, or its runtime missing here), or None."""
    host = table.machine.get("hostname")
    if host and host != platform.node():
        return f"the table is of {host}, this is {platform.node()}"
    return RUNTIMES[table.backend].missing() if table.backend in RUNTIMES else None


def latency_line(r: dict[str, Any], table: LatencyTable, tolerance: float = 0.10) -> str:
    """One :func:`check_latency` result as the CLI and the search print it."""
    return (f"measured {r['measured_ms']:.2f} ms, table {r['estimate_ms']:.2f} ms ({r['error']:+.1%}, "
            f"{'within' if r['within'] else 'NOT within'} {tolerance:.0%}) on {table.backend}, "
            f"{table.threads} thread(s)")
