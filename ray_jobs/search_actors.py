"""Ray pieces of phase 3: long-lived evaluator actors, the Tune searcher, the trial function.

* :class:`Evaluator` (a Ray actor) loads the supernet weights ONCE and scores candidates
  on request through ``lighttrack.search.cache.CachedEvaluator``: the evaluation cache
  answers what it holds (a resumed search may re-run trials that were in flight), every
  new result is appended to it.
* :class:`LightTrackSearcher` is Ray Tune's ``NevergradSearch`` driven by our
  :class:`~lighttrack.search.searcher.CandidateSource`: infeasible and cached candidates
  are told to the optimizer without a trial, and each trial is pinned to a free evaluator.
* :func:`trial` is the Tune trainable: a remote call to its evaluator and a report per rung
  of successive halving (one for the whole split when halving is off); Tune's
  ``ASHAScheduler`` stops it at a rung, with ``sequences_seen`` as its time.
"""
from __future__ import annotations

import datetime as dt
import os
import pickle
import time
from typing import Any, Callable

import ray
from ray import tune
from ray.tune.search import Searcher
from ray.tune.search.nevergrad import NevergradSearch

from lighttrack.arch import parse
from lighttrack.search.budget import CostModel
from lighttrack.search.cache import SCHEMA, CachedEvaluator, EvalCache
from lighttrack.search.searcher import CandidateSource

__all__ = ["Evaluator", "LightTrackSearcher", "trial", "to_report", "from_report"]

_TIME_KEYS = ("started", "finished")


def to_report(row: dict) -> dict:
    """A cache row as Tune metrics (timestamps as epoch seconds, no None)."""
    out = {k: (v.timestamp() if k in _TIME_KEYS and v is not None else v) for k, v in row.items()}
    return {k: v for k, v in out.items() if v is not None}


def from_report(result: dict) -> dict:
    row = {k: result.get(k) for k in SCHEMA.names if k not in _TIME_KEYS}
    for k in _TIME_KEYS:
        if result.get(k) is not None:
            row[k] = dt.datetime.fromtimestamp(result[k], dt.timezone.utc)
    return row


@ray.remote
class Evaluator:
    """The evaluator actor: the supernet loaded once, a :class:`CachedEvaluator` around it."""

    def __init__(self, checkpoint: bytes | str, eval_cfg: Any, cache_location: str,
                 costs: CostModel | None = None, threads: int = 1) -> None:
        """``checkpoint``: the supernet's ``checkpoint.pt`` as bytes (through the object store,
        so an actor on any node has it) or a path; ``costs`` as the driver built them (the
        latency table travels inside); ``cache_location`` a URI every node can open."""
        import torch

        from lighttrack.search.evaluate import CandidateEvaluator, load_supernet

        torch.set_num_threads(threads)
        net, sid = load_supernet(checkpoint, "cuda" if torch.cuda.is_available() else "cpu")
        node = ray.get_runtime_context().get_node_id()  # whole: ids of one machine share prefixes
        self.ev = CachedEvaluator(CandidateEvaluator(net, sid, eval_cfg, costs or CostModel()),
                                  EvalCache(cache_location), worker=f"{node}:pid{os.getpid()}")

    def info(self) -> dict:
        ev = self.ev.ev
        return {"pid": os.getpid(), "loads": 1,  # weights are loaded in __init__ and nowhere else
                "supernet_id": ev.supernet_id, "settings_id": ev.settings_id, "evaluated": self.ev.evaluated,
                "cache_answers": self.ev.cache_answers,
                "unwritten": self.ev.flush(),  # rows a long store outage held back (the driver asks at the end)
                "device": str(ev.device), "space": ev.net.space.name, "sequences": ev.num_sequences}

    def evaluate(self, arch: str, search: str = "", budget: str = "", trial_id: str = "",
                 sequences: int | None = None) -> dict:
        return self.ev(parse(arch), search, budget, trial_id, sequences)


def trial(config: dict, evaluators: list, search: str, budget: str, rungs: tuple = (None,), total: int = 0) -> None:
    """Tune trainable: score ``config['arch']`` on the evaluator the searcher picked, rung by
    rung (``rungs``: sequences seen at each; ``(None,)``: the whole split at once), reporting
    each rung's row with ``sequences_seen`` (``total``: the split's size); the scheduler's
    STOP after a report ends it there.

    An evaluator lost with its node hands the candidate to the next one (whose cache
    check answers it if the lost one had finished it, or goes on from its last rung row),
    so a lost node costs no candidate and evaluates none twice; only when every evaluator
    is gone does the trial fail.
    """
    ctx = tune.get_context()
    first = config["worker"]
    order = [(first + i) % len(evaluators) for i in range(len(evaluators))]  # evaluator indices
    for k in rungs:
        for i, j in enumerate(order):
            try:
                row = ray.get(evaluators[j].evaluate.remote(config["arch"], search, budget,
                                                            ctx.get_trial_id() or "", k))
                order = order[i:] + order[:i]  # the next rung stays on an evaluator that answered
                break
            except ray.exceptions.RayActorError as e:
                if i == len(order) - 1:
                    raise
                print(f"search: evaluator {j} lost ({type(e).__name__}); "
                      f"{config['arch']} goes to the next one", flush=True)
        tune.report({**to_report(row), "sequences_seen": row.get("sequences") or total})
        if row.get("sequences") is None:  # the whole split (or a cached whole-split row)
            return


class LightTrackSearcher(NevergradSearch):
    """``NevergradSearch`` on our optimizer instance, with the candidate source in front.

    The base class asks the optimizer and tells it each trial's metric; it cannot reject
    a candidate without a trial, nor answer one from a cache, nor seed the optimizer with
    results that were not asked. ``suggest`` here does all three through ``source`` and
    gives each trial the index of a free evaluator (``max_concurrent`` = evaluators).
    """

    def __init__(self, source: CandidateSource, max_concurrent: int,
                 on_result: Callable[[dict], None] | None = None) -> None:
        super().__init__(optimizer=source.opt, metric="fitness", mode="max")
        self.source, self.max_concurrent, self.on_result = source, max_concurrent, on_result
        self._arch_of: dict[str, str] = {}
        self._worker_of: dict[str, int] = {}
        self._reported = 0

    def _flush(self) -> None:
        # Results answered from the cache inside source.next() count as evaluations too.
        while self._reported < len(self.source.history):
            if self.on_result is not None:
                self.on_result(self.source.history[self._reported])
            self._reported += 1

    def suggest(self, trial_id: str) -> dict | None:
        if len(self._arch_of) >= self.max_concurrent:
            return None
        arch = self.source.next()
        self._flush()
        if arch is None:
            return Searcher.FINISHED if not self._arch_of else None
        busy = set(self._worker_of.values())
        worker = next(i for i in range(self.max_concurrent) if i not in busy)
        self._arch_of[trial_id], self._worker_of[trial_id] = str(arch), worker
        return {"arch": str(arch), "worker": worker}

    def save(self, checkpoint_path: str) -> None:
        # Tune checkpoints the searcher periodically; the logging hook is not picklable.
        state = {k: v for k, v in self.__dict__.items() if k != "on_result"}
        with open(checkpoint_path, "wb") as f:
            pickle.dump(state, f)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as f:
            self.__dict__.update(pickle.load(f))

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        pass  # one report per trial; handled on completion

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        arch = self._arch_of.pop(trial_id, None)
        self._worker_of.pop(trial_id, None)
        if arch is None:
            return
        if error or not result or ("fitness" not in result and "ao" not in result):  # "ao": an older row
            # a trial lost with its node errors too: try the candidate again (a bounded
            # number of times; the evaluator's cache check answers it if it was finished)
            self.source.fail(arch, retry=True)
            return
        row = from_report(result)
        self.source.complete(arch, row, cached=bool(result.get("cached")))
        self._flush()


def wait_ready(actors: list, timeout: float = 600.0) -> dict:
    """Block until the first evaluator has loaded its supernet; its ``info()``.

    The others need not be up: on a cluster that autoscales from zero each one waits for a
    node the autoscaler starts for it, and a trial the searcher gives it waits with it, so
    the search begins on the first node and spreads as the others arrive."""
    t0 = time.time()
    ready, _ = ray.wait([a.info.remote() for a in actors], num_returns=1, timeout=timeout)
    if not ready:
        raise TimeoutError(f"search: no evaluator was placed and loaded its supernet within {timeout:.0f} s")
    info = ray.get(ready[0])
    print(f"search: 1 of {len(actors)} evaluator(s) ready in {time.time() - t0:.1f} s; the others join "
          "as the cluster places them", flush=True)
    return info
