"""The search space as a Nevergrad parametrization: one ``ng.p.Choice`` per decision.

Decisions come from :attr:`lighttrack.arch.Space.decisions` (output layer, 14 backbone
blocks, two heads), in ``Space.to_choices()`` order. The parametrization is an
``ng.p.Instrumentation`` of keyword choices so that Ray Tune's ``NevergradSearch``
accepts an optimizer instance built on it. The space ('paper' or 'wide') is read back
from a parametrization by the number of output-layer options (8 or 12).
"""
from __future__ import annotations

from typing import Any, Mapping

import nevergrad as ng

from lighttrack.arch import PAPER, SPACES, Arch, ArchError, Space, get_space

__all__ = ["NAMES", "parametrization", "space_of", "to_arch", "to_kwargs", "candidate", "normalize"]

NAMES: tuple[str, ...] = tuple(name for name, _ in PAPER.decisions)  # the same names in every space


def parametrization(seed: int | None = None, space: str | Space = "paper") -> ng.p.Instrumentation:
    """Fresh parametrization; ``seed`` fixes its random state (and every optimizer's on it)."""
    sp = get_space(space)
    param = ng.p.Instrumentation(**{name: ng.p.Choice(list(range(n))) for name, n in sp.decisions})
    if seed is not None:
        param.random_state.seed(seed)
    return param


def space_of(param: ng.p.Parameter) -> Space:
    """The Space a parametrization (or one of its candidates) was built for."""
    n = len(param[1]["out"].choices)
    for sp in SPACES.values():
        if len(sp.out_blocks) == n:
            return sp
    raise ArchError(f"no search space has {n} output-layer options")


def _kwargs_of(value: Any) -> Mapping[str, int]:
    # A candidate (Parameter), its .value ((), kwargs) or the kwargs dict itself.
    if isinstance(value, ng.p.Parameter):
        return value.kwargs
    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[1], Mapping):
        return value[1]
    if isinstance(value, Mapping):
        return value
    raise ArchError(f"cannot read decisions from {type(value).__name__} {value!r}")


def to_arch(value: Any, space: str | Space | None = None) -> Arch:
    """Arch of a candidate, a parametrization value or a ``{decision: index}`` mapping
    (the space: given, else the candidate's own, else the paper's)."""
    kwargs = _kwargs_of(value)
    missing = [n for n in NAMES if n not in kwargs]
    if missing:
        raise ArchError(f"decisions missing: {missing}")
    if space is None:
        space = space_of(value) if isinstance(value, ng.p.Parameter) else PAPER
    return get_space(space).from_choices([int(kwargs[n]) for n in NAMES])


def to_kwargs(arch: Arch, space: str | Space = "paper") -> dict[str, int]:
    return dict(zip(NAMES, get_space(space).to_choices(arch)))


def candidate(param: ng.p.Parameter, arch: Arch) -> ng.p.Parameter:
    """A child of ``param`` holding ``arch`` (for telling results that were not asked)."""
    return param.spawn_child(new_value=((), to_kwargs(arch, space_of(param))))


def normalize(choices: tuple[int, ...], space: str | Space = "paper") -> tuple[int, ...]:
    """Choices with the blocks after the output layer zeroed (one encoding per Arch)."""
    sp = get_space(space)
    return sp.to_choices(sp.from_choices(choices))
