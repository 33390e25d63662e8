"""An accuracy predictor fitted on the evaluation cache: architecture -> fitness, with its
uncertainty, to pre-screen the optimizer's candidates (as Once-for-All pre-screens with its
accuracy predictor).

Input: the architecture's decisions (``Arch.to_choices``), one-hot, a block the
candidate's backbone does not reach encoded as all zeros (so an unused block is not taken
for its first option). Models (scikit-learn), chosen by held-out Kendall tau
(``lighttrack search predictor``, docs/results.md):

* ``gp``: a Gaussian process (constant x RBF on the one-hot plus white noise, its
  hyper-parameters fitted by marginal likelihood); mean and standard deviation are its own.
* ``gbm``: gradient boosting; the uncertainty is the spread of five models fitted on
  bootstrap samples.

:class:`Screen` uses it in the search: a pool of the optimizer's asks is ranked by the
prediction's upper bound (mean + ``z`` std), and a candidate whose upper bound is below the
``topk``-th best fitness tracked so far is ruled out, not tracked (the pool's best never is,
so the search moves on whatever the predictor thinks). It is refitted every
``refit_every`` results, and each refit scores the previous fit on the results that came
since (the predictor's tau as the search went).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Annotated, Iterable, Literal, Mapping, Sequence

import numpy as np

from lighttrack.arch import NUM_BLOCKS, Arch, Space, parse
from lighttrack.config import Count, PosInt, Range
from lighttrack.search.cache import fitness

__all__ = ["PredictorConfig", "Predictor", "Screen", "encode", "kendall_tau", "heldout_tau"]

Kind = Literal["gp", "gbm"]


@dataclass
class PredictorConfig:
    """The search's pre-screen (off: every feasible new candidate is tracked)."""

    enabled: bool = False
    kind: Kind = "gp"
    min_rows: Annotated[int, Range(ge=5)] = 20  # whole-split results before the first fit
    refit_every: PosInt = 10  # results between fits
    pool: Annotated[int, Range(ge=1)] = 4  # asks ranked together
    z: float = 1.0  # ruled out when mean + z * std < the topk-th best fitness
    topk: PosInt = 10
    seed: Count = 0


def encode(archs: Iterable[Arch], space: Space) -> np.ndarray:
    """(N, sum of options) one-hot of every decision; unused backbone blocks all zeros."""
    decisions = space.decisions
    offsets = np.cumsum([0] + [n for _, n in decisions])
    rows = []
    for arch in archs:
        x = np.zeros(offsets[-1], np.float32)
        depth = arch.out_block + 1
        for i, c in enumerate(space.to_choices(arch)):
            if 1 <= i <= NUM_BLOCKS and i - 1 >= depth:  # decisions 1..14 are the backbone blocks
                continue
            x[offsets[i] + c] = 1.0
        rows.append(x)
    return np.stack(rows) if rows else np.zeros((0, offsets[-1]), np.float32)


def kendall_tau(a: Sequence[float], b: Sequence[float]) -> float:
    from scipy.stats import kendalltau

    tau = kendalltau(a, b).statistic
    return float(tau) if np.isfinite(tau) else 0.0


class Predictor:
    """Fitness from architecture: ``fit(archs, fitness)``, ``predict(archs) -> (mean, std)``."""

    def __init__(self, space: Space, kind: Kind = "gp", seed: int = 0) -> None:
        if kind not in ("gp", "gbm"):
            raise ValueError(f"predictor kind {kind!r}: use gp or gbm")
        self.space, self.kind, self.seed = space, kind, seed
        self.models: list = []

    def fit(self, archs: Sequence[Arch], fitness: Sequence[float]) -> "Predictor":
        x, y = encode(archs, self.space), np.asarray(fitness, np.float64)
        with warnings.catch_warnings():  # bounds reached by the length scale on small data
            warnings.simplefilter("ignore")
            if self.kind == "gp":
                from sklearn.gaussian_process import GaussianProcessRegressor
                from sklearn.gaussian_process.kernels import RBF, ConstantKernel, WhiteKernel

                kernel = ConstantKernel(1.0, (1e-3, 1e2)) * RBF(3.0, (0.3, 100.0)) + WhiteKernel(0.1, (1e-4, 1.0))
                gp = GaussianProcessRegressor(kernel, normalize_y=True, n_restarts_optimizer=2,
                                              random_state=self.seed)
                self.models = [gp.fit(x, y)]
            else:
                from sklearn.ensemble import GradientBoostingRegressor

                rng = np.random.default_rng(self.seed)
                self.models = []
                for i in range(5):
                    idx = rng.integers(0, len(y), len(y))
                    m = GradientBoostingRegressor(n_estimators=150, max_depth=3, learning_rate=0.05,
                                                  subsample=0.8, random_state=self.seed + i)
                    self.models.append(m.fit(x[idx], y[idx]))
        return self

    def predict(self, archs: Sequence[Arch]) -> tuple[np.ndarray, np.ndarray]:
        x = encode(archs, self.space)
        if self.kind == "gp":
            mean, std = self.models[0].predict(x, return_std=True)
            return mean, std
        preds = np.stack([m.predict(x) for m in self.models])
        return preds.mean(0), preds.std(0)


def heldout_tau(rows: Sequence[Mapping], sizes: Sequence[int], space: Space, kind: Kind = "gp",
                repeats: int = 5, seed: int = 0) -> dict[int, list[float]]:
    """Kendall tau on the held-out rows of predictors fitted on ``n`` random cache rows, for
    each ``n`` in ``sizes`` smaller than the rows, ``repeats`` random splits each."""
    archs = [parse(r["arch"]) for r in rows]
    y = np.array([fitness(r) for r in rows])
    rng = np.random.default_rng(seed)
    out: dict[int, list[float]] = {}
    for n in sizes:
        if n >= len(rows):
            continue
        taus = []
        for rep in range(repeats):
            perm = rng.permutation(len(rows))
            train, test = perm[:n], perm[n:]
            p = Predictor(space, kind, seed + rep).fit([archs[i] for i in train], y[train])
            mean, _ = p.predict([archs[i] for i in test])
            taus.append(kendall_tau(mean, y[test]))
        out[n] = taus
    return out


class Screen:
    """The search's pre-screen: rank a pool of asks, rule out the hopeless (see module doc)."""

    def __init__(self, cfg: PredictorConfig, space: Space) -> None:
        self.cfg, self.space = cfg, space
        self.predictor: Predictor | None = None
        self.fitted_at = 0  # results the current fit saw
        self.predicted: dict[str, float] = {}  # arch -> mean predicted when it was kept
        self.taus: list[tuple[int, float]] = []  # (results, tau of the previous fit on the results since)

    def update(self, results: Mapping[str, float]) -> None:
        """Refit on ``results`` (arch -> whole-split fitness) when enough came since the last fit."""
        n = len(results)
        if n < self.cfg.min_rows or (self.predictor is not None and n - self.fitted_at < self.cfg.refit_every):
            return
        if self.predictor is not None:  # how the fit in use ranked what came after it
            new = [(self.predicted[a], f) for a, f in results.items() if a in self.predicted]
            if len(new) >= 5:
                self.taus.append((n, kendall_tau([p for p, _ in new], [f for _, f in new])))
        archs = [parse(a) for a in results]
        self.predictor = Predictor(self.space, self.cfg.kind, self.cfg.seed).fit(archs, list(results.values()))
        self.fitted_at, self.predicted = n, {}

    def rank(self, archs: Sequence[Arch], results: Mapping[str, float]) -> tuple[list[int], list[int], np.ndarray]:
        """(indices kept, best upper bound first; indices ruled out; predicted means)."""
        if self.predictor is None:
            return list(range(len(archs))), [], np.full(len(archs), np.nan)
        mean, std = self.predictor.predict(archs)
        upper = mean + self.cfg.z * std
        best = sorted(results.values(), reverse=True)
        bar = best[min(self.cfg.topk, len(best)) - 1]
        order = [int(i) for i in np.argsort(-upper, kind="stable")]
        # The best of a pool is always kept: a search the predictor thinks converged still moves.
        kept = order[:1] + [i for i in order[1:] if upper[i] >= bar]
        for i in kept:
            self.predicted[str(archs[i])] = float(mean[i])
        return kept, [i for i in order[1:] if upper[i] < bar], mean
