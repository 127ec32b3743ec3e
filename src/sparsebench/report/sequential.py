"""Looks at a claim as its seeds grow, with the error rate held across the looks.

A claim first compared on n_1 paired seeds that stays inconclusive gets `batch` more seeds per
cell at each further look, up to `max_seeds`: looks at n_k = min(n_1 + (k - 1) batch,
max_seeds). The overall level alpha is spent across the looks with the Lan-DeMets (1983)
Pocock-type spending function alpha(t) = alpha ln(1 + (e - 1) t) at information fraction
t = n_k / max_seeds. Look k tests at the increment alpha(t_k) - alpha(t_(k-1)); by the union
bound the chance of a false verdict at any look stays at most alpha (conservative: it leaves
out the positive correlation between looks that exact group-sequential boundaries use). The
Pocock shape spends early, so a claim clear at its first look is still decided there.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

ALPHA = 0.05


def spent(t: float, alpha: float = ALPHA) -> float:
    """The level spent by information fraction `t` (Pocock-type Lan-DeMets spending)."""
    return alpha * math.log(1.0 + (math.e - 1.0) * min(max(t, 0.0), 1.0))


@dataclass(frozen=True)
class SeedPlan:
    """The suite's `adaptive_seeds`: seeds added per look, and the most seeds per cell."""

    batch: int
    max_seeds: int
    alpha: float = ALPHA

    def looks(self, first: int) -> list[int]:
        """Seeds at every planned look of a claim first compared on `first` seeds."""
        if first >= self.max_seeds:
            return [first]
        looks = list(range(first, self.max_seeds, self.batch))
        return [*looks, self.max_seeds]

    def levels(self, looks: list[int]) -> list[float]:
        """The level each look tests at: the spending increments (they sum to alpha)."""
        top = looks[-1]
        spending = [spent(n / top, self.alpha) for n in looks]
        return [b - a for a, b in itertools.pairwise([0.0, *spending])]


def fixed(seeds: int, alpha: float = ALPHA) -> tuple[list[int], list[float]]:
    """One look at all `seeds` at level `alpha` (a suite without adaptive seeding)."""
    return [seeds], [alpha]
