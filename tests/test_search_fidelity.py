"""Successive halving over validation sequences, and the accuracy predictor (issue 36)."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from lighttrack.arch import PAPER, resolve
from lighttrack.models import TrackSupernet
from lighttrack.search import space
from lighttrack.search.budget import Budget, BudgetCheck, CostModel
from lighttrack.search.cache import CachedEvaluator, EvalCache
from lighttrack.search.config import SearchConfig
from lighttrack.search.evaluate import CandidateEvaluator, EvalConfig, load_supernet
from lighttrack.search.fidelity import Halving, evaluate_halving, rungs
from lighttrack.search.predictor import PredictorConfig, Screen, kendall_tau
from lighttrack.search.searcher import open_search, run_plain
from lighttrack.config import ConfigError, from_dict
from tests.home import EMBEDDED

SYNTH = EMBEDDED / "got10k"
CFG = EvalConfig(val_root=str(SYNTH), recalibrate_root=str(SYNTH), val_sequences=3, val_frames=6,
                 recalibrate_batches=1, recalibrate_batch_size=2, backend="torch")
ARCH = resolve("lighttrack-mobile")


# -- rung bookkeeping --------------------------------------------------------------------------
def test_rungs_grow_by_the_reduction_up_to_the_whole_split():
    assert rungs(21, 3, 3) == (3, 9, 21)
    assert rungs(27, 3, 3) == (3, 9, 27)
    assert rungs(4, 3, 3) == (3, 4)
    assert rungs(3, 3, 3) == (3,) and rungs(2, 3, 3) == (2,)


def test_halving_decides_as_ray_tunes_asha_bracket():
    from ray.tune.schedulers.async_hyperband import _Bracket

    bracket = _Bracket(min_t=3, max_t=21, reduction_factor=3, s=0)
    ours = Halving(rungs(21, 3, 3), 3)
    rng = np.random.default_rng(0)
    decisions = []
    for i in range(40):
        trial, value = SimpleNamespace(trial_id=f"t{i}"), float(rng.random())
        for k in (3, 9):
            ray_goes_on = bracket.on_result(trial, k, value) == "CONTINUE"
            assert ours.promote(k, value) == ray_goes_on, (i, k)
            decisions.append(ray_goes_on)
            if not ray_goes_on:
                break
            value = float(np.clip(value + rng.normal(0, 0.1), 0, 1))
    assert 0 < sum(not d for d in decisions) < len(decisions)  # some stopped, some went on


def test_fidelity_needs_the_ao_metric():
    with pytest.raises(ConfigError, match="fidelity.enabled: successive halving needs eval.metric ao"):
        from_dict(SearchConfig, {"fidelity": {"enabled": True}, "eval": {"metric": "eao"}})


# -- rung rows on a real evaluator -------------------------------------------------------------
@pytest.fixture(scope="module")
def supernet(tmp_path_factory):
    if not (SYNTH / "val").is_dir():
        pytest.skip("embedded data missing: run `lighttrack data synth --out data/synth`")
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("supernet") / "checkpoint.pt"
    torch.save({"model": TrackSupernet().state_dict()}, path)
    return load_supernet(path)


def test_rung_rows_merge_to_the_whole_split_figures(supernet):
    ev = CandidateEvaluator(*supernet, CFG)
    assert ev.num_sequences == 3 and sorted(ev.order) == [0, 1, 2]
    whole = ev.evaluate(ARCH)
    low = ev.evaluate(ARCH, 2)
    assert low["sequences"] == 2 and whole["sequences"] is None
    top = ev.evaluate(ARCH, 3, start=low)  # the sequence the low rung lacks, merged
    assert top["sequences"] is None
    for key in ("ao", "sr50", "sr75", "baseline_ao", "fitness", "baseline_fitness"):
        assert top[key] == pytest.approx(whole[key], abs=1e-9), key
    # the low rung is a figure of its own two sequences, not of the split
    assert ev.evaluate(ARCH, 2)["ao"] == pytest.approx(low["ao"], abs=1e-12)
    assert ev.sequences_tracked == 3 + 2 + 1 + 2
    with pytest.raises(ValueError, match="cannot go on from a row of 2"):
        ev.evaluate(ARCH, 2, start=low)


def test_a_stopped_candidate_resumes_from_its_rung_row_after_a_restart(supernet, tmp_path):
    loc = str(tmp_path / "cache")
    first = CachedEvaluator(CandidateEvaluator(*supernet, CFG), EvalCache(loc))
    low = first(ARCH, "s", "b", sequences=2)
    assert not low["cached"] and low["sequences"] == 2
    assert EvalCache(loc).rows() == [] and len(EvalCache(loc).rows(partial=True)) == 1  # a rung row only

    restarted = CachedEvaluator(CandidateEvaluator(*supernet, CFG), EvalCache(loc))  # a new process
    again = restarted(ARCH, "s", "b", sequences=2)
    assert again["cached"] and restarted.ev.sequences_tracked == 0
    top = restarted(ARCH, "s", "b", sequences=3)
    assert not top["cached"] and top["sequences"] is None
    assert restarted.ev.sequences_tracked == 1  # only the one the rung row lacked
    whole = CandidateEvaluator(*supernet, CFG).evaluate(ARCH)
    assert top["ao"] == pytest.approx(whole["ao"], abs=1e-9)
    cache = EvalCache(loc)
    assert [r["arch"] for r in cache.rows()] == [str(ARCH)]  # the whole-split row, for every later search
    assert cache.partial(top["supernet_id"], top["settings_id"], str(ARCH))["sequences"] == 2
    assert restarted(ARCH, sequences=2)["sequences"] is None  # a whole-split row answers every rung


# -- partial fitness is marked ------------------------------------------------------------------
def _source(**extra):
    cfg = from_dict(SearchConfig, {"optimizer": {"population": 4, "topk": 2, "generations": 3}, **extra})
    check = BudgetCheck(Budget.parse("1000M,10M"), CostModel())
    return open_search(cfg, check, [], "s", "b", total_sequences=9)


def test_a_stopped_candidate_is_told_marked_partial_and_never_becomes_a_parent():
    src = _source()
    opt = src.opt
    a, b = src.next(), src.next()
    src.complete(a, {"arch": str(a), "fitness": 0.9, "sequences": 3})  # stopped at the first rung
    src.complete(b, {"arch": str(b), "fitness": 0.2, "sequences": None})
    assert src.stats.stopped == 1 and src.stats.trials == 2 and src.stats.sequences == 3 + 9
    assert [h["source"] for h in src.history] == ["partial", "trial"]
    assert str(a) not in src.known and src.results == {str(b): 0.2}
    parents = [space.normalize(p[3]) for p in opt.parents(all_results=True)]
    assert parents == [space.normalize(b.to_choices())]  # the partial 0.9 is seen but no parent
    assert space.normalize(a.to_choices()) in opt._seen


def test_restarted_search_seeds_rung_rows_as_partial_and_counts_each_candidate_once():
    src = _source()
    a = src.next()
    rows = [{"arch": str(a), "fitness": 0.5, "sequences": 3, "search": "s", "budget": "b"},
            {"arch": str(a), "fitness": 0.6, "sequences": 9, "search": "s", "budget": "b"}]
    cfg = from_dict(SearchConfig, {"optimizer": {"population": 4, "topk": 2, "generations": 3}})
    again = open_search(cfg, BudgetCheck(Budget.parse("1000M,10M"), CostModel()), [], "s", "b", partial=rows)
    assert again.done == 1 and again.stats.seeded == 1 and again.opt.parents(all_results=True) == []


def test_plain_loop_with_halving_tracks_fewer_sequences():
    src = _source()
    halving = Halving(rungs(9, 1, 3), 3)
    rng = np.random.default_rng(0)
    quality: dict[str, float] = {}

    def evaluate(arch):
        q = quality.setdefault(str(arch), float(rng.random()))
        return evaluate_halving(lambda k: {"arch": str(arch), "fitness": q, "sequences": None if k == 9 else k},
                                halving)

    run_plain(src, evaluate)
    assert src.stats.trials == 12 and 0 < src.stats.stopped < 12
    assert src.stats.sequences < 12 * 9
    best_full = max(h["fitness"] for h in src.history if h["source"] == "trial")
    assert best_full == max(quality[h["arch"]] for h in src.history if h["source"] == "trial")


# -- the accuracy predictor --------------------------------------------------------------------
def _synthetic(n, seed):
    """Random archs of the paper space and a fitness that depends on their choices (+ noise)."""
    rng = np.random.default_rng(seed)
    weights = np.random.default_rng(99).normal(0, 1, len(PAPER.decisions))
    archs, fit = [], []
    for _ in range(n):
        choices = [int(rng.integers(k)) for _, k in PAPER.decisions]
        a = PAPER.from_choices(choices)
        archs.append(a)
        fit.append(float(np.dot(weights, PAPER.to_choices(a)) * 0.02 + rng.normal(0, 0.01)))
    return archs, np.array(fit)


def _screen(archs, fit, kind="gp"):
    s = Screen(PredictorConfig(enabled=True, kind=kind, min_rows=20, topk=10), PAPER)
    s.update({str(a): float(f) for a, f in zip(archs, fit)})
    return s


@pytest.mark.parametrize("kind", ["gp", "gbm"])
def test_predictor_ranks_what_it_learnt_and_screens_the_hopeless(kind):
    archs, fit = _synthetic(80, 0)
    test, truth = _synthetic(200, 1)
    s = _screen(archs, fit, kind)
    mean, std = s.predictor.predict(test)
    assert kendall_tau(mean, truth) > 0.4
    results = {str(a): float(f) for a, f in zip(archs, fit)}
    kept, out, _ = s.rank(test, results)
    assert len(out) > 50 and sorted(kept + out) == list(range(200))
    assert kept[0] == int(np.argmax(mean + std))  # the pool's best upper bound is always tracked
    bar = sorted(results.values(), reverse=True)[9]
    assert np.mean(truth[out] < bar) > 0.9  # what it rules out is truly below the bar


def test_predictor_fitted_on_shuffled_fitness_screens_out_no_more_than_chance():
    archs, fit = _synthetic(80, 0)
    test, truth = _synthetic(400, 1)
    results = {str(a): float(f) for a, f in zip(archs, np.random.default_rng(5).permutation(fit))}
    s = Screen(PredictorConfig(enabled=True, min_rows=20, topk=10), PAPER)
    s.update(results)
    kept, out, _ = s.rank(test, results)
    rate = len(out) / len(test)
    top = np.argsort(-truth)[:100]  # the truly best quarter
    top_rate = np.isin(top, out).mean()
    # no more of the truly good ones ruled out than of all (3 binomial standard errors)
    assert top_rate <= rate + 3 * np.sqrt(max(rate * (1 - rate), 1e-4) / len(top))
    if out:  # and what it rules out is no worse than what it keeps, beyond chance
        se = np.sqrt(truth[out].var() / len(out) + truth[kept].var() / len(kept))
        assert truth[out].mean() >= truth[kept].mean() - 3 * se


def test_search_with_the_screen_tracks_only_what_it_keeps():
    archs, fit = _synthetic(40, 0)
    src = _source(predictor={"enabled": True, "min_rows": 20, "pool": 4, "topk": 3})
    src.max_evaluations = 61  # not a multiple of the pool: the last pool keeps more than the room left
    truth = {}

    def evaluate(arch):
        return {"arch": str(arch), "fitness": truth.setdefault(str(arch), float(_synthetic_fitness(arch)))}

    run_plain(src, evaluate)
    assert src.screen.predictor is not None and src.stats.screened > 0
    assert src.stats.trials == 61 and len(src.proposed) == 61
    assert all(h["source"] == "trial" for h in src.history)
    assert src.screen.taus and all(-1 <= t <= 1 for _, t in src.screen.taus)


def _synthetic_fitness(arch):
    weights = np.random.default_rng(99).normal(0, 1, len(PAPER.decisions))
    return np.dot(weights, PAPER.to_choices(arch)) * 0.02


def test_predictor_command_reports_heldout_tau(tmp_path, capsys):
    from lighttrack.cli import main

    archs, fit = _synthetic(70, 0)
    EvalCache(str(tmp_path / "c")).append(
        [{"supernet_id": "s1", "settings_id": "e1", "arch": str(a), "fitness": float(f), "ao": float(f)}
         for a, f in zip(archs, fit)])
    assert main(["search", "predictor", "--cache", str(tmp_path / "c"), "--rows", "50,200", "--kind", "gp",
                 "--repeats", "2"]) == 0
    out = capsys.readouterr().out
    assert "70 whole-split rows of supernet s1" in out and "fitted on   50 rows: held-out tau +0." in out
    assert "fitted on  200 rows: not enough rows (has 70)" in out
    assert main(["search", "predictor", "--cache", str(tmp_path / "empty")]) == 2
    assert "no whole-split rows" in capsys.readouterr().err
