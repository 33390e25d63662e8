"""What a search leaves behind, as files: every candidate it evaluated, the best
architecture per budget with the stay-at-first-box baseline beside its fitness, the
Pareto front, the plots and a summary. The search job logs the folder to MLflow.

``res`` is the search's result (``ray_jobs.search.run_search``): ``rows`` (the evaluation
cache's rows of this supernet and settings, every search's), ``metric`` (ao | eao),
``budgets[label]`` with ``stats``, ``seconds`` and the fitness ``history``, and the
evaluators' ``supernet_loads``, ``evaluators_lost`` and ``seconds``.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import pyarrow as pa
import pyarrow.parquet as pq

from lighttrack.search.budget import Budget
from lighttrack.search.cache import SCHEMA, baseline_fitness, fitness
from lighttrack.search.pareto import pareto_front, plot_pareto, plot_progress

__all__ = ["write_report", "best_per_budget"]


def best_per_budget(rows: Sequence[dict], budgets: Sequence[Budget], metric: str) -> list[dict]:
    """The fittest row inside each budget (fewer MACs break ties), with its baseline; a
    budget no row fits has no entry."""
    others = ("sr50", "sr75") if metric == "ao" else ("accuracy", "failures")  # the protocol's other figures
    bests = []
    for b in budgets:
        fit = [r for r in rows if b.fits(r["macs"], r["params"], r["latency_ms"])]
        if not fit:
            continue
        r = max(fit, key=lambda r: (fitness(r), -r["macs"]))
        base = baseline_fitness(r)
        if base is None:  # a row cached before the baseline existed: any row of these settings has it
            base = next((baseline_fitness(o) for o in rows if baseline_fitness(o) is not None), None)
        bests.append({"budget": b.label, "arch": r["arch"], "metric": metric, metric: fitness(r),
                      f"baseline_{metric}": base, "beats_baseline": None if base is None else bool(fitness(r) > base),
                      **{k: r[k] for k in others}, "params": r["params"], "macs": r["macs"],
                      "latency_ms": r["latency_ms"], "budget_macs": b.macs_max,
                      "budget_params": b.params_max, "budget_latency_ms": b.latency_max_ms})
    return bests


def write_report(res: dict[str, Any], budgets: Sequence[Budget], name: str, out: Path) -> list[dict]:
    """Write the search ``name``'s files into ``out``; returns the bests per budget."""
    rows, m = res["rows"], res["metric"]
    mine = [r for r in rows if r["search"] == name]
    table = pa.Table.from_pylist(mine, schema=SCHEMA).rename_columns(
        [("trial_id" if c == "trial" else c) for c in SCHEMA.names])
    pq.write_table(table, out / "candidates.parquet")
    table.to_pandas().to_csv(out / "candidates.csv", index=False)
    bests = best_per_budget(rows, budgets, m)
    for best in bests:
        (out / f"best_arch_{best['budget']}.json").write_text(json.dumps(best, indent=2))
    if bests:
        (out / "best_arch.json").write_text(json.dumps({**bests[0], "all": bests}, indent=2))
    front = pareto_front(rows)
    pa.Table.from_pylist(front, schema=SCHEMA).to_pandas().to_csv(out / "pareto_front.csv", index=False)
    baseline = next((baseline_fitness(r) for r in rows if baseline_fitness(r) is not None), None)
    plot_pareto(rows, front, out / "pareto_front.png", [(b.label, b.macs_max) for b in budgets], baseline, m)
    plot_progress({k: [h["fitness"] for h in v["history"]] for k, v in res["budgets"].items()},
                  out / "progress.png", baseline, m)
    summary = {k: {kk: vv for kk, vv in v.items() if kk != "history"} for k, v in res["budgets"].items()}
    summary.update(supernet_loads=res["supernet_loads"], evaluators_lost=res["evaluators_lost"],
                   seconds=res["seconds"])
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return bests
