"""The search loop's bookkeeping, independent of who runs the evaluations.

:class:`CandidateSource` sits between a Nevergrad optimizer and the evaluators:

* it seeds the optimizer with every cached result that fits the budget (told, not asked);
* on :meth:`next` it asks until it gets a candidate worth a trial: infeasible ones
  (lookup-table check) are told ``penalty`` and never leave; ones already in the cache are
  told their cached score (no trial); duplicates of an in-flight candidate wait for it;
* :meth:`complete` tells the optimizer a finished evaluation. A candidate that successive
  halving stopped early (its row covers ``sequences`` < the split) is told its partial
  fitness *marked partial* (``mark_partial``: LightTrack's optimizers never take it for a
  parent; other Nevergrad optimizers cannot tell a mark and take the value as it is);
* with a :class:`~lighttrack.search.predictor.Screen`, a pool of asks is ranked by the
  accuracy predictor and only the candidates it does not rule out are tracked; the ruled-out
  ones are told their predicted fitness, marked like partial ones.

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
import numpy as np

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
    stopped: int = 0  # trials that successive halving stopped before the whole split
    sequences: int = 0  # validation sequences the trials' rows cover (what halving saves is beside trials * split)
    screened: int = 0  # asks the accuracy predictor ruled out (never tracked)

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
                 done: int = 0, penalty: float = 1.0, max_asks: int = 100_000, max_retries: int = 2,
                 screen: Any = None, total_sequences: int = 0) -> None:
        self.opt, self.check, self.screen = optimizer, check, screen
        self.total_sequences = total_sequences  # of the validation split (for stats.sequences)
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
        self.results: dict[str, float] = {}  # whole-split fitness of every result inside the budget
        self.queue: list[str] = []  # pending candidates the screen kept, best first, not handed out yet

    # -- seeding ------------------------------------------------------------------------
    def seed(self, rows: Iterable[Mapping[str, Any]], partial: Iterable[Mapping[str, Any]] = ()) -> int:
        """Tell the optimizer every cached row that fits the budget (the ``partial`` rung rows,
        the deepest of each arch, marked partial); returns how many."""
        told = 0
        sp = space.space_of(self.opt.parametrization)
        deepest: dict[str, Mapping[str, Any]] = {}
        for row in partial:
            if row["arch"] not in deepest or row["sequences"] > deepest[row["arch"]]["sequences"]:
                deepest[row["arch"]] = row
        for row in [*rows, *(r for a, r in deepest.items() if a not in self.known)]:
            arch = parse(row["arch"])
            is_partial = row.get("sequences") is not None
            if not is_partial:
                self.known.setdefault(str(arch), row)
            if not sp.contains(arch) or not self.check(arch):
                continue
            if not is_partial:
                self.results[str(arch)] = fitness(row)
            cand = space.candidate(self.opt.parametrization, arch)
            try:
                self._tell(cand, -fitness(row), partial=is_partial)
            except ng.errors.TellNotAskedNotSupportedError:
                break  # this optimizer cannot be seeded; repeated archs still come from the cache
            told += 1
        self.stats.seeded += told
        self._refit()
        return told

    def _tell(self, cand: Any, loss: float, partial: bool = False) -> None:
        if partial and hasattr(self.opt, "mark_partial"):
            self.opt.mark_partial(cand)
        self.opt.tell(cand, loss)

    def _refit(self) -> None:
        if self.screen is not None:
            self.screen.update(self.results)

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
        if self.queue:
            return parse(self._hand_out(self.queue.pop(0)))
        pool: list[tuple[Any, Arch]] = []  # asks for the screen to rank
        screening = self.screen is not None and self.screen.predictor is not None
        for _ in range(self.max_asks):
            if self.finished:
                break
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
            if key in (str(a) for _, a in pool):
                self.opt.tell(cand, self.penalty)  # asked twice within one pool: rare, and never tracked
                continue
            if not screening:
                self.pending[key] = _Pending([cand])
                return parse(self._hand_out(key))
            pool.append((cand, arch))
            if len(pool) < self.screen.cfg.pool:
                continue
            self._screen(pool)
            pool = []
            if self.queue:
                return parse(self._hand_out(self.queue.pop(0)))
        else:
            raise RuntimeError(f"no new feasible candidate after {self.max_asks} asks "
                               f"({self.stats.infeasible} infeasible, {self.stats.cache_hits} cached)")
        if pool:  # the search is full: what the pool holds was asked, so it is told something
            self._screen(pool)
        return parse(self._hand_out(self.queue.pop(0))) if self.queue else None

    def _screen(self, pool: list[tuple[Any, Arch]]) -> None:
        kept, out, mean = self.screen.rank([a for _, a in pool], self.results)
        for i in out:
            self.stats.screened += 1
            self._tell(pool[i][0], -float(mean[i]), partial=True)
        room = max(0, self.max_evaluations - self.evaluations - len(self.pending))
        for i in kept[room:]:  # kept, but the search is full: asked, so told, never tracked
            self._tell(pool[i][0], -float(mean[i]) if np.isfinite(mean[i]) else self.penalty, partial=True)
        for i in kept[:room]:
            key = str(pool[i][1])
            self.pending[key] = _Pending([pool[i][0]])
            self.queue.append(key)

    def _hand_out(self, key: str) -> str:
        self.proposed.append(key)
        return key

    # -- telling ------------------------------------------------------------------------
    def complete(self, arch: Arch | str, row: Mapping[str, Any], cached: bool = False) -> None:
        """Result of a trial (a cache row: ``fitness``, ``params``, ``macs``, ...); ``cached``:
        the evaluator found it in the cache (another search, or a trial re-run after a loss,
        wrote it since it was asked), so it counts as a cache answer, not an evaluation. A row
        with ``sequences`` set is a candidate stopped by successive halving: told marked partial."""
        key = str(arch)
        pending = self.pending.pop(key)
        partial = row.get("sequences") is not None
        for cand in pending.candidates:
            self._tell(cand, -fitness(row), partial=partial)
        if cached:
            self.stats.cache_hits += 1
        else:
            self.stats.trials += 1
            self.stats.sequences += row.get("sequences") or self.total_sequences
        if partial:
            self.stats.stopped += 1
        else:
            self.known[key] = row
            self.results[key] = fitness(row)
        self._record(key, row, "partial" if partial else "cache" if cached else "trial")
        self._refit()

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
        if key in self.queue:
            self.queue.remove(key)

    def _record(self, key: str, row: Mapping[str, Any], source: str) -> None:
        keep = ("ao", "baseline_ao", "sr50", "sr75", "eao", "baseline_eao", "params", "macs", "latency_ms",
                "seconds", "search", "sequences")
        self.history.append({"eval": len(self.history), "arch": key, "source": source, "fitness": fitness(row),
                             "baseline_fitness": baseline_fitness(row), **{k: row.get(k) for k in keep}})


def open_search(cfg: Any, check: BudgetCheck, rows: list[Mapping[str, Any]], name: str = "", label: str = "",
                space_name: str = "paper", partial: list[Mapping[str, Any]] = (),
                total_sequences: int = 0) -> CandidateSource:
    """One budget's candidate source, as every search driver starts it: ``cfg``'s optimizer
    (a ``SearchConfig``) over the supernet's space ``space_name``, with its accuracy
    predictor's screen when ``cfg.predictor`` is on, seeded with the cached ``rows`` (this
    supernet's and settings', whole-split) and ``partial`` rung rows that fit ``check``, and
    counting as done the candidates search ``name`` evaluated for budget ``label`` before it
    was interrupted (a candidate stopped at a rung counts once)."""
    done = len({r["arch"] for r in [*rows, *partial] if r.get("search") == name and r.get("budget") == label})
    param = space.parametrization(cfg.seed, space_name)
    opt = cfg.optimizer.build(param, check, cfg.workers)
    screen = None
    if cfg.predictor.enabled:
        from lighttrack.search.predictor import Screen

        screen = Screen(cfg.predictor, space.space_of(param))
    source = CandidateSource(opt, check, cfg.optimizer.max_evaluations, known={r["arch"]: r for r in rows},
                             done=done, penalty=cfg.optimizer.penalty, screen=screen,
                             total_sequences=total_sequences)
    source.seed(rows, partial)
    return source


def run_plain(source: CandidateSource, evaluate: Callable[[Arch], Mapping[str, Any]]) -> CandidateSource:
    """Sequential in-process search loop: ask, evaluate, tell, until finished."""
    while True:
        arch = source.next()
        if arch is None:
            return source
        source.complete(arch, evaluate(arch))
