"""bench/bench_search_proof.py (issue 32's GPU script) meets a GPU only in sessions that are
lent one: a CPU dry run of every part here, one step a stage on the tiny embedded set, keeps
it working, and its figures are checked for what they must hold, not only for being there."""
from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from tests.home import EMBEDDED, ROOT

sys.path.insert(0, str(ROOT / "bench"))
import bench_search_proof as proof  # noqa: E402

pytestmark = pytest.mark.slow


def test_every_part_runs_and_saves_its_figures(tmp_path):
    proof.main(["--out", str(tmp_path), "--data", str(EMBEDDED), "--device", "cpu", "--workers", "0",
                "--steps", "1", "--batch", "2", "--p2-mult", "1", "--paths", "3", "--retests", "2", "--archs", "3",
                "--evaluations", "3", "--seeds", "2", "--frames", "4", "--unlike", "1", "--alone-epochs", "1",
                "--budget-s", "100000"])
    got = json.loads((tmp_path / "proof.json").read_text())
    assert not [k for k in got if k.endswith(("_error", "_skipped"))], {k: got[k] for k in got if "error" in k}
    steps = got["speed_steps"]
    assert len(steps) == 5 and all(v["phase2_pairs_per_s"] > 0 for v in steps.values())
    assert "Self CPU" in (tmp_path / "profile_phase2.txt").read_text()
    paths = got["paths"]
    assert paths["draws"] == 2 and len(paths["ao_first_draw"]) == 3 and 0 <= paths["above_stay_put"] <= 1
    rank = got["rank"]
    assert len(rank["alone_seed0"]) == len(rank["alone_seed1"]) == 3
    assert -1 <= rank["tau_ceiling"] <= 1 and rank["tau_interval"][0] <= rank["tau_interval"][1]
    race = got["race"]
    assert len(race["evolution"]) == len(race["random"]) == 2
    assert set(got["final"]) == {"found", "random0", "random1", "random2"}
    assert got["final"]["found"]["arch"] == race["found"]
    assert all(0 <= v["unlike"]["stay_put_ao"] <= 1 for v in got["final"].values())

    # a second call on the same machine reuses the trained supernet (the GPU lease's second call)
    again = tmp_path / "again"
    proof.main(["--out", str(again), "--data", str(EMBEDDED), "--device", "cpu", "--parts", "paths",
                "--reuse", str(tmp_path), "--paths", "3", "--retests", "1", "--frames", "4"])
    second = json.loads((again / "proof.json").read_text())
    assert "supernet" not in second and second["paths"]["ao_first_draw"] == paths["ao_first_draw"]


def test_random_in_budget_paths_are_distinct_and_fit():
    from lighttrack.search.budget import Budget, BudgetCheck, CostModel

    costs = CostModel()
    check = BudgetCheck(Budget.parse(proof.BUDGET), costs)
    archs = proof.in_budget(16, 1, check)
    assert len({str(a) for a in archs}) == 16 and all(check(a) for a in archs)
    macs = [costs(a).macs for a in proof.spread(5, check, costs)]
    assert macs == sorted(macs) and macs[0] < macs[-1] <= 600e6


def test_bootstrap_interval_holds_the_tau_and_is_narrower_for_more_archs():
    rng = np.random.default_rng(0)
    truth = rng.normal(size=40)
    noisy = truth + rng.normal(scale=0.5, size=40)
    tau = proof.kendall(truth, noisy)
    lo, hi = proof.bootstrap_tau(truth, noisy, n=500)
    assert lo < tau < hi and tau > 0.4
    lo10, hi10 = proof.bootstrap_tau(truth[:10], noisy[:10], n=500)
    assert hi10 - lo10 > hi - lo
