"""argparse ``type=`` functions with a domain, so a bad option is a usage error at once
(``--max-sequences -1``: "must be >= 0") instead of a surprise after the work."""
from __future__ import annotations

import argparse

__all__ = ["positive_int", "count", "positive_float"]


def _number(text: str, kind: type, low: float, strict: bool) -> int | float:
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {'an integer' if kind is int else 'a number'}, "
                                         f"got {text!r}") from None
    if value < low or (strict and value == low) or value != value:
        raise argparse.ArgumentTypeError(f"must be {'>' if strict else '>='} {low:g}, got {text}")
    return value


def positive_int(text: str) -> int:
    """An integer >= 1 (workers, samples, repeats)."""
    return _number(text, int, 1, False)


def count(text: str) -> int:
    """An integer >= 0 (where 0 means all or none)."""
    return _number(text, int, 0, False)


def positive_float(text: str) -> float:
    """A number > 0 (frame rates, budgets)."""
    return _number(text, float, 0, True)
