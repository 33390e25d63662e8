"""Phase-3 search logic without networks: space, evolution operators, budgets, ask/tell."""
from __future__ import annotations

import hashlib

import nevergrad as ng
import numpy as np
import pytest

from lighttrack.arch import DECISIONS, Arch, parse, resolve, sample
from lighttrack.search import space
from lighttrack.search.budget import Budget, BudgetCheck, BudgetError, CostModel, check_possible
from lighttrack.search.evolution import LightTrackEvolution, LightTrackRandom
from lighttrack.search.searcher import CandidateSource, run_plain

ARITY = np.array([n for _, n in DECISIONS])


def fake_ao(arch: Arch) -> dict:
    """Deterministic stand-in fitness (a hash of the arch string) for loop-logic tests."""
    h = int(hashlib.sha1(str(arch).encode()).hexdigest()[:8], 16)
    return {"ao": (h % 10_000) / 10_000}


@pytest.fixture(scope="module")
def costs() -> CostModel:
    return CostModel()


def test_space_round_trip():
    rng = np.random.default_rng(0)
    param = space.parametrization(0)
    assert len(param.kwargs) == len(DECISIONS)
    for _ in range(50):
        arch = sample(rng)
        cand = space.candidate(param, arch)
        assert space.to_arch(cand) == arch
        assert space.to_arch(cand.value) == arch
    assert space.to_arch(space.to_kwargs(resolve("lighttrack-mobile"))) == resolve("lighttrack-mobile")


def test_evolution_is_registered_by_name():
    opt = ng.optimizers.registry["LightTrackEvolution"](space.parametrization(0), budget=10)
    assert type(opt).__name__ == "_Evolution" and opt.population == 50 and opt.topk == 10


def _evolution(seed: int, population: int, topk: int, **kw):
    """An evolution whose initial population went through real ask/tell."""
    opt = LightTrackEvolution(population=population, topk=topk, unique=False, **kw)(
        space.parametrization(seed))
    rng = np.random.default_rng(seed)
    for _ in range(population):
        opt.tell(opt.ask(), float(rng.random()))
    return opt, rng


def test_mutation_redraws_each_choice_at_rate_0_1():
    opt, _ = _evolution(1, 20, 5, crossover_prob=0.0)
    parents = {t[2]: np.array(t[3]) for t in opt.parents()}
    # 10k children through the operator ask() wraps (ask adds ~50 ms of Nevergrad copying each).
    masks, changed = [], []
    for _ in range(10_000):
        choices, lin = opt.propose()
        assert lin.kind == "mutation" and lin.parents[0] in parents
        masks.append(lin.redrawn)
        changed.append(np.array(choices) != parents[lin.parents[0]])
        # A choice that was not re-drawn is the parent's.
        assert not np.any(changed[-1] & ~np.array(lin.redrawn))
    rate = np.mean(masks)
    expected_change = np.mean(0.1 * (1 - 1 / ARITY))  # a re-draw may land on the same option
    print(f"re-draw rate {rate:.4f} (10k children x {len(ARITY)} decisions); change rate "
          f"{np.mean(changed):.4f}, expected {expected_change:.4f}")
    assert abs(rate - 0.1) < 0.003
    assert abs(np.mean(changed) - expected_change) < 0.003
    # The same operator behind the real ask().
    for _ in range(5):
        child = opt.ask()
        lin = opt.lineage[child.uid]
        c = np.array([child.kwargs[n] for n in space.NAMES])
        assert lin.kind == "mutation"
        assert not np.any((c != parents[lin.parents[0]]) & ~np.array(lin.redrawn))


def test_parents_always_come_from_top_k():
    opt, rng = _evolution(2, 16, 4)
    told = [(t[0], t[1], t[2]) for t in opt.parents(all_results=True)]
    kinds = {"random": 0, "mutation": 0, "crossover": 0}
    for i in range(1500):
        top = {uid for _, _, uid in sorted(told)[:4]}
        choices, lin = opt.propose()
        kinds[lin.kind] += 1
        assert set(lin.parents) <= top, f"child {i} has parents outside the top-k"
        assert set(lin.topk) == top
        if lin.kind == "crossover":
            assert len(set(lin.parents)) == 2
        loss = float(rng.random())
        opt.record(choices, loss, f"child{i}")  # what tell() does
        told.append((loss, len(told), f"child{i}"))
    for _ in range(5):  # and through the real ask/tell
        top = {uid for _, _, uid in sorted(told)[:4]}
        cand = opt.ask()
        assert set(opt.lineage[cand.uid].parents) <= top
        loss = float(rng.random())
        opt.tell(cand, loss)
        told.append((loss, len(told), cand.uid))
    print("children by kind:", kinds)
    assert kinds["random"] == 0 and kinds["mutation"] > 600 and kinds["crossover"] > 600


def test_crossover_takes_each_choice_from_a_parent():
    opt, _ = _evolution(3, 10, 3, crossover_prob=1.0)
    by_uid = {t[2]: t[3] for t in opt.parents()}
    for _ in range(500):
        choices, lin = opt.propose()
        a, b = (by_uid[u] for u in lin.parents)
        assert all(c in (x, y) for c, x, y in zip(choices, a, b))


def test_infeasible_budget_is_an_error(costs):
    with pytest.raises(BudgetError, match="infeasible.*smallest"):
        check_possible(Budget(100_000_000, 2_000_000), costs)
    with pytest.raises(BudgetError, match="latency-table"):
        check_possible(Budget(600_000_000, 2_000_000, 5.0), costs)
    check_possible(Budget(600_000_000, 2_000_000), costs)
    assert Budget.parse("600M,2M") == Budget(600_000_000, 2_000_000)
    assert Budget.parse("800M,3M,12ms").latency_max_ms == 12.0
    with pytest.raises(BudgetError):
        Budget.parse("600M,2M,12")


# Few evaluations: every Nevergrad ask/tell costs ~30 ms of CPU, and the unfiltered
# optimizer needs ~100 asks per feasible candidate at this budget.
@pytest.mark.parametrize("optimizer,n", [("LightTrackEvolution", 12), ("unfiltered", 2)])
def test_tight_budget_never_proposes_infeasible(costs, optimizer, n):
    """The evolution only asks feasible children; for an optimizer that ignores the budget
    (uniform sampling without the check) the searcher itself rejects ~99% of the asks."""
    budget = Budget(250_000_000, 600_000)
    rng = np.random.default_rng(0)
    share = np.mean([BudgetCheck(budget, costs)(sample(rng)) for _ in range(5000)])
    assert share < 0.01, share
    check = BudgetCheck(budget, costs)
    param = space.parametrization(0)
    if optimizer == "LightTrackEvolution":
        opt = LightTrackEvolution(population=6, topk=3, feasible=check)(param, budget=n)
    else:
        opt = LightTrackRandom()(param, budget=n)
    evaluated: list[Arch] = []
    source = CandidateSource(opt, check, max_evaluations=n)
    run_plain(source, lambda a: evaluated.append(a) or fake_ao(a))
    print(f"{optimizer}: {share:.2%} of random archs fit; {len(evaluated)} evaluated, "
          f"{source.stats.infeasible} infeasible asks rejected")
    assert len(evaluated) == n
    if optimizer != "LightTrackEvolution":
        assert source.stats.infeasible > 0
    for a in evaluated:
        c = costs(a)
        assert c.macs <= budget.macs_max and c.params <= budget.params_max


def _proposals(seed: int, optimizer: str = "LightTrackEvolution") -> list[str]:
    check = BudgetCheck(Budget(600_000_000, 2_000_000), CostModel())
    param = space.parametrization(seed)
    if optimizer == "LightTrackEvolution":
        opt = LightTrackEvolution(population=6, topk=3, feasible=check)(param, budget=12)
    else:  # any registered Nevergrad optimizer, by name
        opt = ng.optimizers.registry[optimizer](param, budget=12)
    return run_plain(CandidateSource(opt, check, max_evaluations=12), fake_ao).proposed


@pytest.mark.parametrize("optimizer", ["LightTrackEvolution", "LightTrackRandom", "OnePlusOne"])
def test_same_seed_same_candidates(optimizer):
    a, b, c = _proposals(5, optimizer), _proposals(5, optimizer), _proposals(6, optimizer)
    assert a == b and len(a) == 12
    assert a != c


def test_cached_results_seed_and_answer_without_trials(costs):
    budget = Budget(600_000_000, 2_000_000)
    check = BudgetCheck(budget, costs)
    rng = np.random.default_rng(7)
    cached = {}
    while len(cached) < 12:
        a = sample(rng)
        cached[str(a)] = {"arch": str(a), **fake_ao(a)}
    fitting = sum(check(parse(k)) for k in cached)
    # Random search proposes fresh archs; force repeats by making the optimizer re-propose cached ones.
    opt = LightTrackEvolution(population=6, topk=3, feasible=check)(space.parametrization(7))
    source = CandidateSource(opt, check, max_evaluations=8)
    assert source.seed(cached.values()) == fitting
    assert opt.num_tell == fitting  # told before any ask
    evaluated = []
    run_plain(source, lambda a: evaluated.append(str(a)) or fake_ao(a))
    assert not set(evaluated) & set(cached), "a cached architecture was evaluated again"
    # A generic optimizer that repeats itself gets cache answers instead of trials.
    opt2 = ng.optimizers.registry["RandomSearch"](space.parametrization(8))
    first = space.to_arch(opt2.ask())
    source2 = CandidateSource(opt2, check, max_evaluations=3, known={str(first): {"ao": 0.5}})
    opt2._suggestions.append(space.candidate(opt2.parametrization, first))  # next ask repeats it
    evaluated2 = []
    run_plain(source2, lambda a: evaluated2.append(str(a)) or fake_ao(a))
    print("stats:", source.stats.as_dict(), source2.stats.as_dict())
    assert source2.stats.cache_hits == 1 and source2.stats.trials == 2
    assert str(first) not in evaluated2


def test_wide_space_search_proposes_stride8_archs_and_seeds_only_its_space(costs):
    """A wide supernet's search: the parametrization has 12 output layers, evolution and
    the searcher read the space back from it; a paper search never sees stride-8 rows."""
    param = space.parametrization(3, "wide")
    assert space.space_of(param).name == "wide" and space.space_of(space.parametrization(3)).name == "paper"
    rng = np.random.default_rng(3)
    rows = [{"arch": str(a), **fake_ao(a)} for a in (sample(rng, "wide") for _ in range(30))]
    n8 = sum(parse(r["arch"]).stride == 8 for r in rows)
    assert 0 < n8 < 30
    check = BudgetCheck(Budget(), costs)
    opt = LightTrackEvolution(population=6, topk=3, feasible=check)(param, budget=20)
    source = CandidateSource(opt, check, max_evaluations=20)
    assert source.seed(rows) == 30
    evaluated = []
    run_plain(source, lambda a: evaluated.append(a) or fake_ao(a))
    assert len(evaluated) == 20 and any(a.stride == 8 for a in evaluated)
    assert all(space.to_arch(space.candidate(param, a)) == a for a in evaluated)
    paper = CandidateSource(LightTrackRandom(feasible=check)(space.parametrization(3), budget=5), check, 5)
    assert paper.seed(rows) == 30 - n8


def test_a_failed_evaluation_is_retried_then_given_up(costs):
    """A candidate lost with its node comes back from next() as it was, counted once; a
    candidate that keeps failing is told the penalty after max_retries attempts."""
    check = BudgetCheck(Budget(600_000_000, 2_000_000), costs)
    opt = LightTrackRandom(feasible=check)(space.parametrization(3))
    source = CandidateSource(opt, check, max_evaluations=3, max_retries=2)
    a = source.next()
    source.fail(a, retry=True)  # e.g. its evaluator's node was lost
    assert source.next() == a and source.stats.retried == 1 and opt.num_tell == 0
    source.complete(a, fake_ao(a))
    b = source.next()
    for _ in range(2):
        source.fail(b, retry=True)
        assert source.next() == b
    source.fail(b, retry=True)  # the third failure: given up
    assert source.stats.failed == 1 and source.stats.retried == 3 and opt.num_tell == 2
    for _ in range(2):  # a failure counts no evaluation: two more for the 3 asked
        c = source.next()
        assert c not in (a, b)
        source.complete(c, fake_ao(c))
    assert source.next() is None and source.stats.trials == 3


def test_open_search_builds_the_configured_optimizer_seeds_it_and_counts_what_was_done():
    """The per-budget assembly every driver uses (the Ray job, benches): the config's
    optimizer, the cached rows that fit told before the first ask, this search's own rows
    for this budget counted as done (an interrupted search goes on where it stopped)."""
    from lighttrack.config import load
    from lighttrack.search.config import SearchConfig
    from lighttrack.search.evolution import _Evolution, _Random
    from lighttrack.search.searcher import open_search

    check = BudgetCheck(Budget(600_000_000, 2_000_000), CostModel())
    fits = [a for a in (resolve("smallest"), resolve("lighttrack-mobile")) if check(a)]
    big = resolve("largest")
    assert len(fits) == 2 and not check(big)
    rows = [{"arch": str(fits[0]), "ao": 0.3, "search": "s", "budget": "600M_2M"},
            {"arch": str(fits[1]), "ao": 0.2, "search": "other", "budget": "600M_2M"},
            {"arch": str(big), "ao": 0.9, "search": "s", "budget": "900M_5M"}]
    cfg = load(SearchConfig, None, ["optimizer.population=4", "optimizer.topk=2", "optimizer.evaluations=5"])
    source = open_search(cfg, check, rows, name="s", label="600M_2M")
    assert isinstance(source.opt, _Evolution) and not isinstance(source.opt, _Random)
    assert source.stats.seeded == 2  # the two rows inside the budget, not the large one
    assert source.done == 1 and source.max_evaluations == 5
    proposed = run_plain(source, fake_ao).proposed
    assert len(proposed) == 4 and not set(proposed) & {r["arch"] for r in rows}  # cached ones never re-run
    with pytest.raises(Exception, match="not a registered Nevergrad optimizer"):
        load(SearchConfig, None, ["optimizer.name=NoSuchOpt"])
