"""Interval estimates over seeds, written once for the tables, the pivots and the claims, and the
power analysis and equivalence test the claims report."""

from __future__ import annotations

import math
from collections.abc import Sequence

from scipy import stats

LEVEL = 0.95


def mean_interval(values: Sequence[float], level: float = LEVEL) -> tuple[float, float]:
    """Mean and half-width of the two-sided Student-t interval for the mean of `values`.

    The half-width is NaN for fewer than two values (no spread to estimate)."""
    n = len(values)
    if n == 0:
        return math.nan, math.nan
    mean = sum(values) / n
    if n < 2:
        return mean, math.nan
    return mean, stats.t.ppf(0.5 + level / 2, n - 1) * sample_sd(values) / math.sqrt(n)


def sample_sd(values: Sequence[float]) -> float:
    """The sample standard deviation (NaN for fewer than two values)."""
    n = len(values)
    if n < 2:
        return math.nan
    mean = sum(values) / n
    return math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))


def equivalent(values: Sequence[float], margin: float, alpha: float = 0.05) -> bool:
    """Two one-sided t-tests (Schuirmann 1987, TOST) at level `alpha`: the mean difference is
    shown to lie within (-margin, margin), i.e. its (1 - 2 alpha) t-interval does."""
    n = len(values)
    if n < 2 or margin <= 0:
        return False
    mean = sum(values) / n
    half = stats.t.ppf(1 - alpha, n - 1) * sample_sd(values) / math.sqrt(n)
    return -margin < mean - half and mean + half < margin


def detectable_difference(sd: float, n: int, alpha: float = 0.05, power: float = 0.8) -> float:
    """The smallest true mean difference a two-sided paired t-test at level `alpha` on `n`
    seeds detects with probability `power` when differences have spread `sd` (the usual
    approximation (t_{1-alpha/2} + t_{power}) * sd / sqrt(n) with n - 1 degrees of freedom)."""
    if n < 2 or not math.isfinite(sd):
        return math.nan
    t = stats.t.ppf(1 - alpha / 2, n - 1) + stats.t.ppf(power, n - 1)
    return t * sd / math.sqrt(n)


def seeds_needed(
    sd: float, difference: float, alpha: float = 0.05, power: float = 0.8, cap: int = 1000
) -> int | None:
    """The fewest seeds whose detectable difference is at most |difference| (None above `cap`
    or when the spread is unknown)."""
    if not math.isfinite(sd) or difference == 0 or not math.isfinite(difference):
        return None

    def enough(n: int) -> bool:
        return detectable_difference(sd, n, alpha, power) <= abs(difference)

    if not enough(cap):
        return None
    low, high = 1, cap  # enough(high) holds; the detectable difference falls as n grows
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (low, middle) if enough(middle) else (middle, high)
    return high
