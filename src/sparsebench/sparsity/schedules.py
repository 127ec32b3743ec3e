"""Step schedules shared by sparse-training methods: GMP's cubic density, RigL's cosine drop
fraction, PGF's mask decay and N:M structure decay, and how a step horizon is resolved.

Every function takes the 1-based training step and returns a plain float or tuple, so tests can
check the published formulas value by value.
"""

from __future__ import annotations

import math

from sparsebench.checks import check_choice


def resolve_step(explicit: int | None, fraction: float, total_steps: int | None, name: str) -> int:
    """An absolute step: `explicit` if given, else `fraction` of the run's `total_steps`.

    Methods are built before the budget is known; once the engine has passed `total_steps` to
    the method's `prepare`, grids may use fractions, otherwise the absolute step must be given.
    """
    if explicit is not None:
        return explicit
    if total_steps is None:
        raise ValueError(f"{name} is not set and the engine gave no total_steps: set {name}")
    return round(fraction * total_steps)


def cubic_density(
    step: int, final_density: float, start: int, end: int, initial_density: float = 1.0
) -> float:
    """Zhu & Gupta (2017): s_t = s_f + (s_i - s_f)(1 - (t - t0)/(n dt))^3, as a density 1 - s_t.

    Before `start` the density is `initial_density`; from `end` = t0 + n dt on it is final.
    """
    if step <= start:
        return initial_density
    if step >= end:
        return final_density
    progress = (step - start) / (end - start)
    s_i, s_f = 1.0 - initial_density, 1.0 - final_density
    return 1.0 - (s_f + (s_i - s_f) * (1.0 - progress) ** 3)


def is_update_step(step: int, start: int, end: int, interval: int) -> bool:
    """True at start, start + interval, ... and always at end, so the final value is reached."""
    return start <= step <= end and ((step - start) % interval == 0 or step == end)


def cosine_drop_fraction(step: int, alpha: float, end: int) -> float:
    """RigL: f(t) = alpha/2 (1 + cos(pi t / T_end)) for t < T_end, else 0 (no more updates)."""
    if step >= end:
        return 0.0
    return 0.5 * alpha * (1.0 + math.cos(math.pi * step / end))


def mask_decay(step: int, start: int, kind: str, coef: float) -> float:
    """PGF's MDGF factor on pruned weights: 1 at `start`, then linear max(0, 1 - c t') or
    exponential exp(-c t') with t' = step - start."""
    check_choice("mask decay", kind, ("linear", "exp"))
    elapsed = max(step - start, 0)
    if kind == "linear":
        return max(1.0 - coef * elapsed, 0.0)
    return math.exp(-coef * elapsed)
