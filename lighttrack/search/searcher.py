"""The search loop's bookkeeping, independent of who runs the evaluations.

:class:`CandidateSource` sits between a Nevergrad optimizer and the evaluators:

* it seeds the optimizer with every cached result that fits the budget (told, not asked);
* on :meth:`next` it asks until it gets a candidate worth a trial: infeasible ones
  (lookup-table check) are told ``penalty`` and never leave; ones already in the cache are
  told their cached score (no trial); duplicates of an in-flight candidate wait for it;
* :meth:`complete` tells the optimizer a finished evaluation.

Ray Tune's searcher (``ray_jobs/search_actors.py``) and the plain in-process loop
(:func:`run_plain`) both drive it, so they propose the same candidates for the same seed.
Fitness is the settings' metric (GOT-10k AO or VOT EAO, ``cache.fitness``), maximised;
Nevergrad minimises its negative.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping

import nevergrad as ng

from lighttrack.arch import Arch, parse
from lighttrack.search import space
from lighttrack.search.cache import baseline_fitness, fitness
from lighttrack.search.budget import BudgetCheck

__all__ = ["SearchStats", "CandidateSource", "open_search", "run_plain"]


@dataclass
class SearchStats:
    seeded: int = 0  # cached results told before the first ask
    cache_hits: int = 0  # asked candidates answered from the cache
    trials: int = 0  # evaluations actually run (completed)
    infeasible: int = 0  # asked candidates rejected by the budget check
    duplicates: int = 0  # asked candidates equal to one in flight
    failed: int = 0  # given up on (told the penalty)
    retried: int = 0  # failed attempts handed out again (a lost node, a lost evaluator)

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


@dataclass
class _Pending:
    candidates: list  # the asked candidate, then any duplicates waiting for its result
    started: float = field(default_factory=time.time)


class CandidateSource:
    """Ask/tell bookkeeping for one search (one budget).

    ``known`` maps arch strings to cached rows (with a fitness) valid for this supernet and
    settings; ``max_evaluations`` counts results obtained by this search (trials plus cache
    answers, plus ``done`` from an interrupted earlier run of the same search).
    """

    def __init__(self, optimizer: ng.optimizers.base.Optimizer, check: BudgetCheck,
                 max_evaluations: int, known: Mapping[str, Mapping[str, Any]] | None = None,
                 done: int = 0, penalty: float = 1.0, max_asks: int = 100_000, max_retries: int = 2) -> None:
        self.opt, self.check = optimizer, check
        self.max_retries = max_retries
        self.requeued: list[str] = []  # pending candidates whose evaluation failed, to hand out again
        self.attempts: dict[str, int] = {}
        self.max_evaluations, self.done = max_evaluations, done
        self.penalty, self.max_asks = penalty, max_asks
        self.known: dict[str, Mapping[str, Any]] = dict(known or {})
        self.pending: dict[str, _Pending] = {}
        self.stats = SearchStats()
        self.history: list[dict] = []  # one row per result this search obtained, in order
        self.proposed: list[str] = []  # arch strings sent to evaluation, in order

    # -- seeding ------------------------------------------------------------------------
    def seed(self, rows: Iterable[Mapping[str, Any]]) -> int:
        """Tell the optimizer every cached row that fits the budget; returns how many."""
        told = 0
        sp = space.space_of(self.opt.parametrization)
        for row in rows:
            arch = parse(row["arch"])
            self.known.setdefault(str(arch), row)
            if not sp.contains(arch) or not self.check(arch):
                continue
            try:
                self.opt.tell(space.candidate(self.opt.parametrization, arch), -fitness(row))
            except ng.errors.TellNotAskedNotSupportedError:
                break  # this optimizer cannot be seeded; repeated archs still come from the cache
            told += 1
        self.stats.seeded += told
        return told

    # -- asking -------------------------------------------------------------------------
    @property
    def evaluations(self) -> int:
        return self.done + self.stats.trials + self.stats.cache_hits

    @property
    def finished(self) -> bool:
        return self.evaluations + len(self.pending) >= self.max_evaluations

    def next(self) -> Arch | None:
        """The next architecture to evaluate, or None when the search has enough results."""
        if self.requeued:  # still pending: it counts once, however often it is tried
            return parse(self.requeued.pop(0))
        for _ in range(self.max_asks):
            if self.finished:
                return None
            cand = self.opt.ask()
            arch = space.to_arch(cand)
            key = str(arch)
            if not self.check(arch):
                self.stats.infeasible += 1
                self.opt.tell(cand, self.penalty)
                continue
            if key in self.known:
                self.stats.cache_hits += 1
                row = self.known[key]
                self.opt.tell(cand, -fitness(row))
                self._record(key, row, "cache")
                continue
            if key in self.pending:
                self.stats.duplicates += 1
                self.pending[key].candidates.append(cand)
                continue
            self.pending[key] = _Pending([cand])
            self.proposed.append(key)
            return arch
        raise RuntimeError(f"no new feasible candidate after {self.max_asks} asks "
                           f"({self.stats.infeasible} infeasible, {self.stats.cache_hits} cached)")

    # -- telling ------------------------------------------------------------------------
    def complete(self, arch: Arch | str, row: Mapping[str, Any], cached: bool = False) -> None:
        """Result of a trial (a cache row: ``fitness``, ``params``, ``macs``, ...); ``cached``:
        the evaluator found it in the cache (another search, or a trial re-run after a loss,
        wrote it since it was asked), so it counts as a cache answer, not an evaluation."""
        key = str(arch)
        pending = self.pending.pop(key)
        for cand in pending.candidates:
            self.opt.tell(cand, -fitness(row))
        self.known[key] = row
        if cached:
            self.stats.cache_hits += 1
        else:
            self.stats.trials += 1
        self._record(key, row, "cache" if cached else "trial")

    def fail(self, arch: Arch | str, retry: bool = False) -> None:
        """An evaluation failed. With ``retry`` (the failure may be the machine's, such as a
        lost node) the same architecture is handed out again by :meth:`next`, up to
        ``max_retries`` times; then, or without ``retry``, the penalty is told so the
        optimizer moves on."""
        key = str(arch)
        if retry and self.attempts.get(key, 0) < self.max_retries:
            self.attempts[key] = self.attempts.get(key, 0) + 1
            self.requeued.append(key)
            self.stats.retried += 1
            return
        pending = self.pending.pop(key)
        for cand in pending.candidates:
            self.opt.tell(cand, self.penalty)
        self.stats.failed += 1

    def _record(self, key: str, row: Mapping[str, Any], source: str) -> None:
        keep = ("ao", "baseline_ao", "sr50", "sr75", "eao", "baseline_eao", "params", "macs", "latency_ms",
                "seconds", "search")
        self.history.append({"eval": len(self.history), "arch": key, "source": source, "fitness": fitness(row),
                             "baseline_fitness": baseline_fitness(row), **{k: row.get(k) for k in keep}})


def open_search(cfg: Any, check: BudgetCheck, rows: list[Mapping[str, Any]], name: str = "", label: str = "",
                space_name: str = "paper") -> CandidateSource:
    """One budget's candidate source, as every search driver starts it: ``cfg``'s optimizer
    (a ``SearchConfig``) over the supernet's space ``space_name``, seeded with the cached
    ``rows`` (this supernet's and settings') that fit ``check``, and counting as done the
    evaluations search ``name`` made for budget ``label`` before it was interrupted."""
    done = sum(1 for r in rows if r.get("search") == name and r.get("budget") == label)
    opt = cfg.optimizer.build(space.parametrization(cfg.seed, space_name), check, cfg.workers)
    source = CandidateSource(opt, check, cfg.optimizer.max_evaluations, known={r["arch"]: r for r in rows},
                             done=done, penalty=cfg.optimizer.penalty)
    source.seed(rows)
    return source


def run_plain(source: CandidateSource, evaluate: Callable[[Arch], Mapping[str, Any]]) -> CandidateSource:
    """Sequential in-process search loop: ask, evaluate, tell, until finished."""
    while True:
        arch = source.next()
        if arch is None:
            return source
        source.complete(arch, evaluate(arch))
