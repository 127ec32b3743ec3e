"""Range and choice checks for the fields of params dataclasses, in one wording.

Params dataclasses check their fields in `__post_init__`, so a bad grid is refused when it
loads; the message names the field, what is allowed and what was given:
"density must be in (0, 1], got 1.5", "workers must be >= 1, got 0".
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any


def check_range(
    name: str,
    value: float,
    low: float | None = None,
    high: float | None = None,
    *,
    low_open: bool = False,
    high_open: bool = False,
) -> None:
    """Refuse `value` outside [low, high] (an open end excludes its bound; None: unbounded).

    NaN lies in no interval, so it is refused wherever a bound is given.
    """
    above = low is None or (value > low if low_open else value >= low)
    below = high is None or (value < high if high_open else value <= high)
    if not (above and below):
        allowed = _interval(low, high, low_open, high_open)
        raise ValueError(f"{name} must be {allowed}, got {value}")


def check_density(value: float, name: str = "density") -> None:
    """A density, the share of weights or coordinates kept, lies in (0, 1]."""
    check_range(name, value, 0.0, 1.0, low_open=True)


def check_choice(name: str, value: Any, choices: Collection[Any]) -> None:
    """Refuse a `value` that is not one of `choices`, listing them in their given order."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}")


def _interval(low: float | None, high: float | None, low_open: bool, high_open: bool) -> str:
    if high is None:
        return f"{'>' if low_open else '>='} {_bound(low)}"
    if low is None:
        return f"{'<' if high_open else '<='} {_bound(high)}"
    left, right = "(" if low_open else "[", ")" if high_open else "]"
    return f"in {left}{_bound(low)}, {_bound(high)}{right}"


def _bound(x: float | None) -> str:
    """Whole-number bounds without a decimal point (1.0 reads as 1), others as given."""
    return str(int(x)) if isinstance(x, float) and x.is_integer() else str(x)
