"""What every bench shares: timing, one figure-line format, side-by-side ratios, JSON out.

    ap = harness.parser(__doc__, repeats=20)     # --json PATH, --repeats N, then the bench's own
    args = ap.parse_args()
    report = harness.Report("bench_model", args)
    t = harness.timeit(fn, args.repeats, warmup=3)
    report.figure("forward", t.median * 1e3, "ms", spread=t.iqr * 1e3)
    report.compare("step", ("after", new_rate), ("before", old_rate), "pairs/s")

Every figure is printed as one line ``name: value [+- spread] unit  (note)`` and, with
``--json``, written at once to that file beside the machine it ran on and the bench's
arguments (``{"bench", "machine", "args", <figure>: ...}``), so a bench that dies late keeps
what it measured. A comparison is always of two things measured in the same run.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

__all__ = ["Timing", "timeit", "parser", "machine", "Report"]

RESERVED = ("bench", "machine", "args")


@dataclass(frozen=True)
class Timing:
    """Seconds of each timed call, wall clock (``perf_counter``) and this process's CPU time."""

    wall: tuple[float, ...]
    cpu: tuple[float, ...] = ()
    result: Any = None  # what the last call returned

    @property
    def median(self) -> float:
        return float(np.median(self.wall))

    @property
    def iqr(self) -> float:
        """Spread: interquartile range of the wall times (0 for one call)."""
        q1, q3 = np.percentile(self.wall, [25, 75])
        return float(q3 - q1)

    @property
    def cpu_median(self) -> float:
        return float(np.median(self.cpu))


def timeit(fn: Callable[[], Any], repeats: int = 1, warmup: int = 1, device=None) -> Timing:
    """``fn()`` called ``warmup`` times untimed, then ``repeats`` times, each timed alone.
    With a CUDA ``device`` the queue is drained before and after each call, so a time is the
    work's and not the launch's."""
    cuda = device is not None and str(device).startswith("cuda")
    if cuda:
        import torch
    result = None
    for _ in range(warmup):
        result = fn()
    wall, cpu = [], []
    for _ in range(repeats):
        if cuda:
            torch.cuda.synchronize(device)
        t, c = time.perf_counter(), time.process_time()
        result = fn()
        if cuda:
            torch.cuda.synchronize(device)
        wall.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    return Timing(tuple(wall), tuple(cpu), result)


def parser(doc: str, repeats: int | None = None) -> argparse.ArgumentParser:
    """The bench's parser: the docstring's first line, ``--json``, and ``--repeats`` where the
    bench repeats a timing (its default given here)."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", type=Path, default=None, help="write every figure printed to this file")
    if repeats is not None:
        common.add_argument("--repeats", type=int, default=repeats, help=f"timed repeats (default {repeats})")
    return argparse.ArgumentParser(description=doc.strip().splitlines()[0], parents=[common],
                                   formatter_class=argparse.RawDescriptionHelpFormatter)


def machine(device=None) -> dict:
    """CPU model, cores, Python/torch versions, load average and the date (UTC); the GPU's name
    when ``device`` is a CUDA one."""
    from lighttrack.search.profiler import machine_info  # also used in latency tables: one description

    info = machine_info()
    info["date"] = info.pop("created")
    if device is not None and str(device).startswith("cuda"):
        import torch

        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def _fmt(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, (bool, np.bool_, str, int, np.integer)):
        return str(v)
    v = float(v)
    return f"{v:.0f}" if abs(v) >= 1e4 else f"{v:.4g}"


def _cell(v: Any, spec: str | None) -> str:
    return _fmt(v) if spec is None or v is None or isinstance(v, str) else format(v, spec)


def _plain(v: Any) -> Any:
    return v.tolist() if hasattr(v, "tolist") else str(v)  # numpy/torch values; paths as text


class Report:
    """The figures of one bench run: printed as they come, kept, and saved to ``args.json``."""

    def __init__(self, bench: str, args: argparse.Namespace, device=None, path: Path | None = None) -> None:
        self.path = path or getattr(args, "json", None)
        self.data: dict[str, Any] = {"bench": bench, "machine": machine(device), "args": dict(vars(args))}

    @property
    def machine(self) -> dict:
        return self.data["machine"]

    def __contains__(self, name: str) -> bool:
        return name in self.data

    def figure(self, name: str, value: Any, unit: str = "", note: str = "", spread: float | None = None,
               **detail: Any) -> None:
        """One figure line; ``detail`` goes to the JSON only."""
        text = _fmt(value) + (f" +- {_fmt(spread)}" if spread is not None else "") + (f" {unit}" if unit else "")
        print(f"{name}: {text}" + (f"  ({note})" if note else ""), flush=True)
        self.record(name, {"value": value, "unit": unit, "spread": spread, "note": note, **detail})

    def compare(self, name: str, new: tuple[str, float], old: tuple[str, float], unit: str = "",
                note: str = "", old_over_new: bool = False) -> float:
        """The new thing beside what it replaces, with their ratio: new/old, or old/new for a
        figure where less is better and the ratio should read as a speed-up (times)."""
        (nl, nv), (ol, ov) = new, old
        num, den = (ov, nv) if old_over_new else (nv, ov)
        ratio = num / den if den else float("nan")
        of = f"{ol}/{nl}" if old_over_new else f"{nl}/{ol}"
        u = f" {unit}" if unit else ""
        line = f"{name}: {nl} {_fmt(nv)}{u} | {ol} {_fmt(ov)}{u} | {of} {_fmt(ratio)}x"
        print(line + (f"  ({note})" if note else ""), flush=True)
        self.record(name, {"new": {"label": nl, "value": nv}, "old": {"label": ol, "value": ov}, "unit": unit,
                           "ratio": ratio, "ratio_of": of, "note": note})
        return ratio

    def table(self, name: str, rows: list[dict], **formats: str) -> None:
        """Rows printed under a header of their keys (``formats``: a format spec per key) and
        recorded as they are."""
        cols = list(rows[0]) if rows else []
        cells = [[_cell(r[c], formats.get(c)) for c in cols] for r in rows]
        width = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(cols)]
        text = [all(isinstance(r[c], str) for r in rows) for c in cols]  # left-aligned (arch strings)
        for line in [cols] + cells:
            print("  " + " ".join(v.ljust(w) if left else v.rjust(w) for v, w, left in zip(line, width, text)).rstrip(),
                  flush=True)
        self.record(name, rows)

    def record(self, name: str, value: Any, echo: bool = False) -> None:
        """A figure for the JSON (a table, a dict of them); ``echo``: also printed, as JSON cut at
        400 characters."""
        if name in RESERVED:
            raise ValueError(f"{name!r} is reserved in a bench's JSON")
        self.data[name] = value
        self.save()
        if echo:
            print(f"{name}: {json.dumps(value, default=_plain)[:400]}", flush=True)

    def save(self) -> None:
        if self.path is None:
            return
        path = Path(self.path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}")  # renamed into place: never half a file
        tmp.write_text(json.dumps(self.data, indent=2, default=_plain))
        tmp.replace(path)
