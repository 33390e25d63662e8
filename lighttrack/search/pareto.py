"""Pareto front (max fitness, min MACs, min params) and the search's PNG plots.

The fitness is the search's metric: GOT-10k AO or VOT EAO (``cache.fitness``)."""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from lighttrack.search.cache import fitness

__all__ = ["pareto_front", "best_so_far", "plot_progress", "plot_pareto"]

Row = Mapping[str, object]


def pareto_front(rows: Sequence[Row], keys: tuple[str, ...] = ("macs", "params")) -> list[Row]:
    """Rows no other row beats: fitness at least as high and every cost in ``keys`` at most as
    high, one of them strictly. Sorted by MACs."""
    front = []
    for r in rows:
        dominated = any(
            fitness(o) >= fitness(r) and all(o[k] <= r[k] for k in keys)
            and (fitness(o) > fitness(r) or any(o[k] < r[k] for k in keys))
            for o in rows)
        if not dominated:
            front.append(r)
    return sorted(front, key=lambda r: (r["macs"], -fitness(r)))


_LABEL = {"ao": "AO (GOT-10k val)", "eao": "EAO (VOT supervised)"}


def best_so_far(aos: Sequence[float]) -> np.ndarray:
    return np.maximum.accumulate(np.asarray(aos, np.float64)) if len(aos) else np.zeros(0)


def _plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _baseline(ax, baseline: float | None) -> None:
    if baseline is not None:
        ax.axhline(baseline, ls=":", color="black", label=f"stays at the first box ({baseline:.3f})")


def plot_progress(curves: Mapping[str, Sequence[float]], path: str | Path, baseline: float | None = None,
                  metric: str = "ao") -> None:
    """Best fitness vs number of evaluations, one curve per budget label; ``baseline`` = the
    fitness of a tracker that stays at the first box on the same frames (a dotted line)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4))
    for label, aos in curves.items():
        best = best_so_far(aos)
        ax.step(np.arange(1, len(best) + 1), best, where="post", label=label)
    _baseline(ax, baseline)
    ax.set_xlabel("evaluations")
    ax.set_ylabel(f"best {_LABEL[metric]}")
    ax.grid(alpha=0.3)
    if curves or baseline is not None:
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_pareto(rows: Sequence[Row], front: Sequence[Row], path: str | Path,
                budgets: Sequence[tuple[str, int | None]] = (), baseline: float | None = None,
                metric: str = "ao") -> list[Row]:
    """Fitness vs MACs of every evaluated candidate (colour = params), budget lines, the
    stay-at-first-box fitness as a dotted line. The line joins the front of what the plot
    shows (fitness vs MACs, as a staircase); ``front``, the three-objective one (params too),
    is marked apart with rings, unjoined: a point of it can lie below the line, beaten on
    MACs by a candidate with more parameters. Returns the two-dimensional front drawn."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    drawn = pareto_front(rows, keys=("macs",))
    if rows:
        sc = ax.scatter([r["macs"] / 1e6 for r in rows], [fitness(r) for r in rows],
                        c=[r["params"] / 1e6 for r in rows], cmap="viridis", s=18)
        fig.colorbar(sc, ax=ax, label="params (M)")
    if drawn:
        ax.step([r["macs"] / 1e6 for r in drawn], [fitness(r) for r in drawn], "r-", where="post",
                label="front: fitness vs MACs")
    if front:
        ax.scatter([r["macs"] / 1e6 for r in front], [fitness(r) for r in front], s=70, facecolors="none",
                   edgecolors="red", label="front: fitness, MACs, params")
    _baseline(ax, baseline)
    for label, macs in budgets:
        if macs:
            ax.axvline(macs / 1e6, ls="--", color="gray")
            ax.text(macs / 1e6, ax.get_ylim()[1], label, rotation=90, va="top", fontsize=7)
    ax.set_xlabel("MACs (M, search branch)")
    ax.set_ylabel(_LABEL[metric])
    ax.grid(alpha=0.3)
    if rows or baseline is not None:
        ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return drawn
