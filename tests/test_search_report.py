"""A search's report (lighttrack/search/report.py): the best architecture per budget with the
stay-at-first-box baseline beside it, and the files a search run leaves."""
import json

import numpy as np
import pandas as pd

from lighttrack.arch import sample
from lighttrack.search.budget import Budget, CostModel
from lighttrack.search.report import best_per_budget, write_report


def _rows(n=12, seed=0):
    rng, costs = np.random.default_rng(seed), CostModel()
    rows = []
    for i in range(n):
        a = sample(rng)
        c = costs(a)
        ao = float(rng.uniform(0.1, 0.6))
        rows.append({"arch": str(a), "metric": "ao", "fitness": ao, "ao": ao, "baseline_fitness": 0.3,
                     "baseline_ao": 0.3, "sr50": ao, "sr75": ao / 2, "macs": c.macs, "params": c.params,
                     "latency_ms": None, "search": "s" if i % 3 else "other", "budget": "b"})
    return rows


def test_best_per_budget_is_the_fittest_row_inside_it_with_its_baseline():
    rows = _rows()
    tight = Budget(macs_max=sorted(r["macs"] for r in rows)[4])  # five rows fit
    budgets = [Budget(), tight, Budget(macs_max=1)]  # the last one: nothing fits, no entry
    bests = best_per_budget(rows, budgets, "ao")
    assert [b["budget"] for b in bests] == [Budget().label, tight.label]
    assert bests[0]["ao"] == max(r["fitness"] for r in rows)
    assert bests[1]["ao"] == max(r["fitness"] for r in rows if r["macs"] <= tight.macs_max)
    assert bests[1]["macs"] <= tight.macs_max
    assert all(b["baseline_ao"] == 0.3 and b["beats_baseline"] == (b["ao"] > 0.3) for b in bests)
    # A row cached before the baseline existed takes that of another row of the same settings.
    old = [dict(r, baseline_fitness=None, baseline_ao=None) if r["fitness"] == bests[0]["ao"] else r for r in rows]
    assert best_per_budget(old, budgets[:1], "ao")[0]["baseline_ao"] == 0.3


def test_write_report_files(tmp_path):
    rows = _rows()
    res = {"rows": rows, "metric": "ao", "supernet_loads": 1, "evaluators_lost": 0, "seconds": 3.0,
           "budgets": {"any": {"stats": {"trials": 8}, "seconds": 2.0,
                               "history": [{"fitness": r["fitness"]} for r in rows[:8]]}}}
    bests = write_report(res, [Budget()], "s", tmp_path)
    names = {p.name for p in tmp_path.iterdir()}
    assert names >= {"candidates.parquet", "candidates.csv", "best_arch.json", "pareto_front.csv",
                     "pareto_front.png", "progress.png", "summary.json", f"best_arch_{Budget().label}.json"}
    assert len(pd.read_parquet(tmp_path / "candidates.parquet")) == sum(r["search"] == "s" for r in rows)
    assert json.loads((tmp_path / "best_arch.json").read_text())["arch"] == bests[0]["arch"]
    assert json.loads((tmp_path / "summary.json").read_text())["any"] == {"stats": {"trials": 8}, "seconds": 2.0}
