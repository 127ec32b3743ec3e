"""Claims from papers, checked against our runs.

An experiment config may list claims in a small declarative form:

    claims:
      - claim: ERK random masks beat uniform ones at 10% density
        paper: Liu et al., "The Unreasonable Effectiveness of Random Pruning", ICLR 2022
        metric: test_acc            # any metric in result.json `metrics`
        better: higher              # or lower
        margin: 0.0                 # optional: a only needs to be within `margin` of b
        where: {dataset: mnist1d, model: mlp}
        a: {method: static-random, params: {density: 0.1, allocation: erk}}
        b: {method: static-random, params: {density: 0.1, allocation: uniform}}

A side may name its own `metric` (for example the same runs' accuracy before pruning), and the
b side may be a published number, `b: {value: 0.94}`, to check a reference result.
The check pairs a's and b's runs by seed, takes d = (a - b) oriented so that positive is better
for a, and a 95% t-interval of its mean. The claim is `supported` when the whole interval lies
above -margin, `contradicted` when it lies below -margin; a claim that states an
`equivalence_margin` m is `equivalent` when two one-sided tests (TOST) place the mean difference
within (-m, m); `inconclusive` otherwise (and with fewer than two paired seeds), together with
the smallest difference the seeds could detect (80% power) and the seeds the observed
difference would need. The verdict is reported, never forced.

Two checks keep a verdict from comparing what it does not claim to. When both sides are sparse
(measured density below 1), their mean measured densities must agree within
`density_tolerance` (relative, default 5%), or the verdict is `not comparable` and says both
densities: an N:M cell with dense layers left out is not a 10%-density cell. A side that ran
off its method's paper regime (another optimizer or schedule shape, see `Regime`) keeps its
verdict, and the claim's `caveats` say so.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import json
import math
from dataclasses import dataclass
from typing import Any

from sparsebench import registry
from sparsebench.report.sequential import ALPHA, SeedPlan, fixed
from sparsebench.report.stats import (
    detectable_difference,
    equivalent,
    mean_interval,
    sample_sd,
    seeds_needed,
)
from sparsebench.report.tables import off_regime
from sparsebench.spec import Component

DENSITY_TOLERANCE = 0.05
"""Relative gap between two sparse sides' measured densities beyond which they are not
compared."""


@dataclass
class ClaimResult:
    claim: str
    paper: str
    metric: str
    a: str
    b: str
    a_mean: float
    b_mean: float
    diff: float
    low: float
    high: float
    seeds: int
    verdict: str
    a_density: float = math.nan
    b_density: float = math.nan
    caveats: str = ""
    test: str = ""
    detectable: float = math.nan
    """Smallest difference these seeds detect with 80% power (paired t, 5%)."""
    seeds_needed: int | None = None
    """Seeds needed to detect the observed difference with 80% power."""
    next_seeds: int | None = None
    """Paired seeds the next planned look needs while the claim is undecided (None: no
    further look is planned)."""
    paired: list[int] = dataclasses.field(default_factory=list)
    """The seeds both sides ran, in the order the looks take them."""


@functools.cache
def _resolved(family: str, method: str, params_json: str) -> dict[str, Any]:
    """The method's full params, defaults filled in, so a claim can name a default value."""
    params = json.loads(params_json)
    try:
        made = registry.make_params(family, method, params)
    except registry.RegistryError:
        return params
    return dataclasses.asdict(made) if made is not None else params


def _matches(doc: dict[str, Any], side: dict[str, Any], where: dict[str, Any]) -> bool:
    spec = doc["spec"]
    if doc["status"] != "ok" or spec["method"]["name"] != side["method"]:
        return False
    params = _resolved(
        spec.get("family", ""),
        spec["method"]["name"],
        json.dumps(spec["method"]["params"], sort_keys=True),
    )
    if any(params.get(k) != v for k, v in side.get("params", {}).items()):
        return False
    for axis in ("dataset", "model"):
        if axis in where and spec[axis]["name"] != where[axis]:
            return False
    return True


def side_runs(docs: list[dict[str, Any]], side, where, metric: str) -> dict[int, dict[str, Any]]:
    """The result documents per seed of the one configuration the side names that report
    `metric` (none for a published number).

    Raises AmbiguousClaim when the side matches several configurations (say which)."""
    if "value" in side:
        return {}
    out: dict[int, dict[str, Any]] = {}
    configs = set()
    for doc in docs:
        if _matches(doc, side, where) and doc["metrics"].get(metric) is not None:
            configs.add(doc["key"].replace(f"/seed={doc['spec']['seed']}", ""))
            out[doc["spec"]["seed"]] = doc
    if len(configs) > 1:
        raise AmbiguousClaim(f"{_label(side)} matches {len(configs)} configurations")
    return out


def _by_seed(runs: dict[int, dict[str, Any]], side, metric: str) -> dict[int, float]:
    """The metric per seed (for a published number `{value: x}`, x for every seed)."""
    if "value" in side:
        return collections.defaultdict(lambda: float(side["value"]))
    return {seed: float(doc["metrics"][metric]) for seed, doc in runs.items()}


def _mean_density(runs: dict[int, dict[str, Any]], seeds: list[int]) -> float:
    values = [runs[s].get("costs", {}).get("density") for s in seeds if s in runs]
    values = [float(v) for v in values if v is not None]
    return sum(values) / len(values) if values else math.nan


def _density_mismatch(result: ClaimResult, tolerance: float | None) -> str | None:
    """Why two sparse sides are not at the same measured density (None: they are, or one
    side is dense or a published number, or the claim turned the check off)."""
    a, b = result.a_density, result.b_density
    if tolerance is None or math.isnan(a) or math.isnan(b) or max(a, b) >= 1.0 - 1e-9:
        return None
    if abs(a - b) <= tolerance * max(a, b):
        return None
    return (
        f"not comparable (measured density a {a:.3f} vs b {b:.3f}, "
        f"beyond the {tolerance:.0%} tolerance)"
    )


def _off_regime(runs: dict[int, dict[str, Any]], label: str) -> list[str]:
    departures = sorted({d for doc in runs.values() for d in off_regime(doc)})
    return [f"{label} ran off its paper's regime: {', '.join(departures)}"] if departures else []


class AmbiguousClaim(ValueError):
    """A claim side that does not single out one configuration."""


def _label(side: dict[str, Any]) -> str:
    if "value" in side:
        return f"published {side['value']}"
    label = Component(side["method"], side.get("params", {})).label()
    return f"{label}.{side['metric']}" if "metric" in side else label


def _diverged_verdict(claim, docs, where, a, b) -> str | None:
    """When one side trained and the other diverged on every seed, that settles the claim."""

    def diverged(side) -> int:
        return sum(
            d["status"] == "diverged" and _matches({**d, "status": "ok"}, side, where) for d in docs
        )

    if "value" in claim["b"]:
        return None
    if a and not b and diverged(claim["b"]):
        return f"supported (b diverged on {diverged(claim['b'])} seeds)"
    if b and not a and diverged(claim["a"]):
        return f"contradicted (a diverged on {diverged(claim['a'])} seeds)"
    return None


def check(
    claim: dict[str, Any],
    docs: list[dict[str, Any]],
    plan: SeedPlan | None = None,
    base_keys: set[str] | None = None,
) -> ClaimResult:
    """The claim's verdict on `docs`; with a seed `plan`, the sequential verdict over the
    looks its seeds allow. The first look takes the paired seeds whose runs are all among
    `base_keys` (the grid's own runs; every paired seed when None)."""
    result = ClaimResult(
        claim["claim"], claim.get("paper", ""), claim["metric"], _label(claim["a"]),
        _label(claim["b"]), math.nan, math.nan, math.nan, math.nan, math.nan, 0,
        "inconclusive (no paired runs)",
    )  # fmt: skip
    where = claim.get("where", {})
    metric_a = claim["a"].get("metric", claim["metric"])
    metric_b = claim["b"].get("metric", claim["metric"])
    try:
        runs_a = side_runs(docs, claim["a"], where, metric_a)
        runs_b = side_runs(docs, claim["b"], where, metric_b)
    except AmbiguousClaim as err:
        result.verdict = f"ambiguous: {err}"
        return result
    a, b = _by_seed(runs_a, claim["a"], metric_a), _by_seed(runs_b, claim["b"], metric_b)
    seeds = sorted(set(a) & set(b)) if "value" not in claim["b"] else sorted(a)
    notes = [claim["note"]] if claim.get("note") else []
    result.caveats = "; ".join(
        notes + _off_regime(runs_a, result.a) + _off_regime(runs_b, result.b)
    )
    if not seeds:
        result.verdict = _diverged_verdict(claim, docs, where, a, b) or result.verdict
        return result
    result.a_density = _mean_density(runs_a, seeds)
    result.b_density = _mean_density(runs_b, seeds)
    sign = 1.0 if claim.get("better", "higher") == "higher" else -1.0
    margin = float(claim.get("margin", 0.0))
    diffs = [sign * (a[s] - b[s]) for s in seeds]
    result.paired, result.seeds = seeds, len(seeds)
    result.diff = sum(diffs) / len(diffs)
    _side_means(result, a, b, seeds)
    mismatch = _density_mismatch(result, claim.get("density_tolerance", DENSITY_TOLERANCE))
    if mismatch is not None:
        result.verdict = mismatch
        return result
    first = len(seeds) if base_keys is None else _in_grid(seeds, runs_a, runs_b, base_keys)
    if plan is not None and "max_seeds" in claim:
        plan = dataclasses.replace(plan, max_seeds=min(plan.max_seeds, int(claim["max_seeds"])))
    looks, levels = plan_looks(plan, first)
    _decide_sequentially(result, diffs, looks, levels, margin, claim.get("equivalence_margin"))
    _side_means(result, a, b, seeds[: result.seeds])
    return result


def _side_means(result: ClaimResult, a: dict, b: dict, seeds: list[int]) -> None:
    result.a_mean = sum(a[s] for s in seeds) / len(seeds)
    result.b_mean = sum(b[s] for s in seeds) / len(seeds)


def _in_grid(seeds: list[int], runs_a: dict, runs_b: dict, base_keys: set[str]) -> int:
    """How many paired seeds the grid itself ran on both sides (a published b: on a)."""
    return sum(all(runs[s]["key"] in base_keys for runs in (runs_a, runs_b) if runs) for s in seeds)


def plan_looks(plan: SeedPlan | None, first: int) -> tuple[list[int], list[float]]:
    """The seeds at each look of a claim first compared on `first` seeds, and each look's
    level: one look at 5% without a plan; with one, looks from at least 2 seeds up."""
    if plan is None:
        return fixed(first)
    looks = plan.looks(max(first, 2))
    return looks, plan.levels(looks)


def _decide_sequentially(result, diffs, looks, levels, margin, equivalence) -> None:
    """Take the planned looks the seeds allow, in order, and stop at the first that decides;
    the result keeps that look's interval and test. While undecided, it also gets the last
    look's power analysis, and `next_seeds` says how many paired seeds the next planned look
    needs (None when the plan is spent)."""
    taken = [k for k, n in enumerate(looks) if n <= len(diffs)]
    if not taken or len(diffs) < 2:
        result.verdict = "inconclusive (1 seed)"
        result.next_seeds = looks[0] if looks[0] > len(diffs) else None
        return
    for k in taken:
        _decide(result, diffs[: looks[k]], levels[k], margin, equivalence)
        if len(looks) > 1:
            result.test += f"; look {k + 1} of {len(looks)}"
        if not result.verdict.startswith("inconclusive"):
            return
    last = taken[-1]
    result.next_seeds = looks[last + 1] if last + 1 < len(looks) else None
    spread = sample_sd(diffs[: looks[last]])
    result.detectable = detectable_difference(spread, looks[last], levels[last])
    result.seeds_needed = seeds_needed(spread, result.diff + margin, levels[last])


def _decide(result, diffs, alpha: float, margin: float, equivalence: float | None) -> None:
    """One look at `diffs` at level `alpha`: supported when the (1 - alpha) t-interval lies
    above -margin, contradicted below it, equivalent when TOST at `alpha` puts the mean within
    the equivalence margin, inconclusive otherwise."""
    result.seeds = len(diffs)
    result.diff = sum(diffs) / len(diffs)
    _, half = mean_interval(diffs, 1 - alpha)
    result.low, result.high = result.diff - half, result.diff + half
    level = "95%" if alpha == ALPHA else f"level {alpha:.3g}"
    result.test = f"paired t, {level}" + (f"; TOST within ±{equivalence:g}" if equivalence else "")
    if result.low > -margin:
        result.verdict = "supported"
    elif result.high < -margin:
        result.verdict = "contradicted"
    elif equivalence and equivalent(diffs, equivalence, alpha):
        result.verdict = f"equivalent (within ±{equivalence:g})"
    else:
        result.verdict = "inconclusive"
