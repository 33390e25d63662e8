"""The phase-3 job config (``configs/search*.yaml``)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Callable

from lighttrack.config import ConfigError, Count, PosFloat, PosInt, Probability, Range

from lighttrack.search.evaluate import EvalConfig
from lighttrack.search.fidelity import FidelityConfig
from lighttrack.search.predictor import PredictorConfig

__all__ = ["OptimizerConfig", "SearchConfig"]

OWN_OPTIMIZERS = ("LightTrackEvolution", "LightTrackRandom")  # lighttrack.search.evolution


@dataclass
class OptimizerConfig:
    name: str = "LightTrackEvolution"  # or LightTrackRandom, or any registered Nevergrad optimizer
    population: Annotated[int, Range(ge=2)] = 50  # initial random population (evolution)
    topk: Annotated[int, Range(ge=2)] = 10  # parents are always among the k best so far
    generations: PosInt = 20  # evaluations per budget = population * generations (unless `evaluations`)
    mutation_prob: Probability = 0.1  # each decision re-drawn with this probability
    crossover_prob: Probability = 0.5  # share of children made by crossover (the rest by mutation)
    evaluations: Count = 0  # override of population * generations (0 = use them)
    penalty: float = 1.0  # loss told for infeasible or failed candidates (fitness is -AO)

    def validate(self) -> None:
        if self.topk > self.population:
            raise ConfigError(f"topk: {self.topk} is more than population ({self.population})")
        import nevergrad as ng

        if self.name not in OWN_OPTIMIZERS and self.name not in ng.optimizers.registry:
            raise ConfigError(f"name: {self.name!r} is not a registered Nevergrad optimizer "
                              "(e.g. LightTrackEvolution, LightTrackRandom, NGOpt, OnePlusOne, RandomSearch)")

    def build(self, parametrization, feasible: Callable | None = None, num_workers: int = 1):
        """The optimizer for one budget's search over ``parametrization``; ``feasible(arch)``
        lets LightTrack's own optimizers draw only candidates inside the budget."""
        import nevergrad as ng

        from lighttrack.search.evolution import LightTrackEvolution, LightTrackRandom

        if self.name == "LightTrackEvolution":
            factory = LightTrackEvolution(population=self.population, topk=self.topk, mutation_prob=self.mutation_prob,
                                          crossover_prob=self.crossover_prob, feasible=feasible)
        elif self.name == "LightTrackRandom":
            factory = LightTrackRandom(feasible=feasible)
        else:
            factory = ng.optimizers.registry[self.name]
        return factory(parametrization, budget=self.max_evaluations, num_workers=num_workers)

    @property
    def max_evaluations(self) -> int:
        return self.evaluations or self.population * self.generations


@dataclass
class SearchConfig:
    supernet: str = ""  # MLflow run id of a phase-2 run, or a checkpoint path
    budgets: list[str] = field(default_factory=list)  # "600M,2M[,8ms]"; CLI --budget adds
    latency_table: str = ""  # JSON from `lighttrack arch profile` (needed by latency budgets)
    cache: str = ""  # evaluation cache dir/URI ("" = beside the supernet: its run or its file)
    seed: Count = 0  # optimizer seed
    workers: PosInt = 1  # evaluator actors = concurrent trials
    cpus_per_worker: PosFloat = 0.9  # < 1 so that N evaluators + N trial stubs (0.01 CPU) fit N CPUs
    gpus_per_worker: PosFloat = 0.25  # used only when the cluster has GPUs; 4 a GPU: 1.66x of 1 (docs/results.md)
    threads: PosInt = 1  # torch threads per evaluator
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    fidelity: FidelityConfig = field(default_factory=FidelityConfig)  # successive halving over sequences
    predictor: PredictorConfig = field(default_factory=PredictorConfig)  # pre-screen by an accuracy predictor

    def validate(self) -> None:
        if self.fidelity.enabled and self.eval.metric != "ao":
            raise ConfigError(f"fidelity.enabled: successive halving needs eval.metric ao, not "
                              f"{self.eval.metric!r} (EAO is no mean over sequences)")
