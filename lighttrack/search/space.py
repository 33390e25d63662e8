"""The search space as a Nevergrad parametrization: one ``ng.p.Choice`` per decision.

Decisions come from :data:`lighttrack.arch.DECISIONS` (output layer, 14 backbone blocks,
two heads), in ``Arch.to_choices()`` order. The parametrization is an
``ng.p.Instrumentation`` of keyword choices so that Ray Tune's ``NevergradSearch``
accepts an optimizer instance built on it.
"""
from __future__ import annotations

from typing import Any, Mapping

import nevergrad as ng

from lighttrack.arch import DECISIONS, Arch, ArchError

__all__ = ["NAMES", "parametrization", "to_arch", "to_kwargs", "candidate", "normalize"]

NAMES: tuple[str, ...] = tuple(name for name, _ in DECISIONS)


def parametrization(seed: int | None = None) -> ng.p.Instrumentation:
    """Fresh parametrization; ``seed`` fixes its random state (and every optimizer's on it)."""
    param = ng.p.Instrumentation(**{name: ng.p.Choice(list(range(n))) for name, n in DECISIONS})
    if seed is not None:
        param.random_state.seed(seed)
    return param


def _kwargs_of(value: Any) -> Mapping[str, int]:
    # A candidate (Parameter), its .value ((), kwargs) or the kwargs dict itself.
    if isinstance(value, ng.p.Parameter):
        return value.kwargs
    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[1], Mapping):
        return value[1]
    if isinstance(value, Mapping):
        return value
    raise ArchError(f"cannot read decisions from {type(value).__name__} {value!r}")


def to_arch(value: Any) -> Arch:
    """Arch of a candidate, a parametrization value or a ``{decision: index}`` mapping."""
    kwargs = _kwargs_of(value)
    missing = [n for n in NAMES if n not in kwargs]
    if missing:
        raise ArchError(f"decisions missing: {missing}")
    return Arch.from_choices([int(kwargs[n]) for n in NAMES])


def to_kwargs(arch: Arch) -> dict[str, int]:
    return dict(zip(NAMES, arch.to_choices()))


def candidate(param: ng.p.Parameter, arch: Arch) -> ng.p.Parameter:
    """A child of ``param`` holding ``arch`` (for telling results that were not asked)."""
    return param.spawn_child(new_value=((), to_kwargs(arch)))


def normalize(choices: tuple[int, ...]) -> tuple[int, ...]:
    """Choices with the blocks after the output layer zeroed (one encoding per Arch)."""
    return Arch.from_choices(choices).to_choices()
