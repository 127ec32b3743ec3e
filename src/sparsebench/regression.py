"""The regression gate: compare fresh runs with a committed baseline, metric by metric.

A baseline (configs/baselines/<hardware>.json) holds, per run configuration (the run key with
the seed left out) and metric, the values over seeds and the direction that counts as better.

- Quality metrics (accuracy, perplexity) are judged against seed noise, asv-style: a change is a
  regression only if it goes the bad way by more than a minimum relative step AND a one-sided
  Welch t-test over seeds finds it significant (MLPerf's reference-convergence-point rule).
  Re-running the same code on CPU reproduces the same numbers, so noise alone never fails.
- Exact metrics (measured density, bytes sent up) must match exactly: any change is reported.
- Timings are never compared across runs; only ratios measured in one run are: the federated
  simulator's round time over a bare torch loop's on the same workload must stay at or above
  1.0 (`SPEED_FLOORS`); a ratio within `SPEED_NOISE` below its floor is reported as noise.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sparsebench.spec import RunSpec

QUALITY = {"test_acc": "higher", "best_test_acc": "higher", "test_ppl": "lower"}
EXACT = {"density": "lower", "bytes_up": "lower"}
MIN_RELATIVE_CHANGE = 0.01
ALPHA = 0.05
EXACT_TOLERANCE = 1e-9
SPEED_FLOORS = {"vmap": 1.0}
"""Per engine mode, the least its speed over the bare loop of its kind may be (one process).
The sequential path is not gated: its ratio at 10 clients per round measured 0.85 to 1.16."""
SPEED_NOISE = 0.1
"""How far below its floor a speed ratio may fall and count as noise: repeated runs on the
2-core CPU profile put vmap's best-round ratio between 1.02 and 1.20."""


class BaselineError(ValueError):
    """A baseline that cannot be used for this comparison (wrong hardware, missing file)."""


def config_key(spec: dict[str, Any]) -> str:
    """The run key with the seed replaced by `*`: what seeds are aggregated over."""
    key = RunSpec.from_dict({**spec, "seed": 0}).key()
    return key.replace("/seed=0", "/seed=*")


def collect(docs: list[dict[str, Any]]) -> dict[str, dict[str, list[float]]]:
    """Per config key and tracked metric, the values of every ok run (seeds in order)."""
    out: dict[str, dict[str, list[float]]] = {}
    for doc in sorted(docs, key=lambda d: (d["key"], d["spec"]["seed"])):
        if doc["status"] != "ok":
            continue
        values = out.setdefault(config_key(doc["spec"]), {})
        for name in QUALITY:
            if doc["metrics"].get(name) is not None:
                values.setdefault(name, []).append(float(doc["metrics"][name]))
        exact = {
            "density": doc["costs"].get("density"),
            "bytes_up": doc["costs"].get("bytes", {}).get("up"),
        }
        for name, value in exact.items():
            if value is not None:
                values.setdefault(name, []).append(float(value))
    return out


def make_baseline(docs: list[dict[str, Any]], hardware: str) -> dict[str, Any]:
    fingerprints = sorted({d["provenance"]["hardware"].get("fingerprint", "") for d in docs})
    entries = {
        key: {
            name: {
                "values": vals,
                "direction": {**QUALITY, **EXACT}[name],
                "kind": "quality" if name in QUALITY else "exact",
            }
            for name, vals in metrics.items()
        }
        for key, metrics in collect(docs).items()
    }
    return {
        "hardware": hardware,
        "fingerprints": fingerprints,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "git_commits": sorted({str(d["provenance"].get("git_commit")) for d in docs}),
        "entries": entries,
    }


def write_baseline(baseline: dict[str, Any], path: Path, force: bool = False) -> None:
    """Write a baseline, refusing to replace one made on another hardware profile."""
    if path.exists() and not force:
        old = json.loads(path.read_text())
        if old.get("hardware") != baseline["hardware"]:
            raise BaselineError(
                f"{path} is the baseline of hardware profile {old.get('hardware')!r}; refusing "
                f"to overwrite it with one from {baseline['hardware']!r} (use --force)"
            )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(baseline, indent=1, sort_keys=True) + "\n")


@dataclass
class Verdict:
    config: str
    metric: str
    baseline: float
    fresh: float
    change: float
    p_value: float | None
    status: str


def judge(metric: str, spec: dict[str, Any], fresh: list[float]) -> tuple[str, float, float | None]:
    """(status, relative change in the better direction, p-value) for one metric."""
    base = spec["values"]
    sign = 1.0 if spec["direction"] == "higher" else -1.0
    b_mean, f_mean = sum(base) / len(base), sum(fresh) / len(fresh)
    scale = abs(b_mean) if b_mean else 1.0
    change = sign * (f_mean - b_mean) / scale
    if spec["kind"] == "exact":
        if abs(f_mean - b_mean) <= EXACT_TOLERANCE * max(scale, 1.0):
            return "same", 0.0, None
        return ("changed" if change < 0 else "improved (update the baseline)"), change, None
    if abs(change) < MIN_RELATIVE_CHANGE:
        return "same", change, None
    p = _p_value(base, fresh, fresh_higher=f_mean > b_mean)
    if p is not None and p >= ALPHA:
        return "noise", change, p
    return ("regressed" if change < 0 else "improved"), change, p


def _p_value(base: list[float], fresh: list[float], fresh_higher: bool) -> float | None:
    """One-sided Welch t-test p-value for the observed direction; None with < 2 seeds a side."""
    if len(base) < 2 or len(fresh) < 2:
        return None
    if _var(base) == 0 and _var(fresh) == 0:
        return 0.0
    from scipy import stats  # here, not at the top: every CLI call would pay its import

    alternative = "greater" if fresh_higher else "less"
    return float(stats.ttest_ind(fresh, base, equal_var=False, alternative=alternative).pvalue)


def _var(values: list[float]) -> float:
    mean = sum(values) / len(values)
    return sum((v - mean) ** 2 for v in values)


def compare(baseline: dict[str, Any], docs: list[dict[str, Any]], hardware: str) -> list[Verdict]:
    if baseline["hardware"] != hardware:
        raise BaselineError(
            f"baseline is for hardware profile {baseline['hardware']!r}, runs are on "
            f"{hardware!r}: timings and numbers are not comparable across profiles"
        )
    fresh = collect(docs)
    verdicts = []
    for config, metrics in sorted(baseline["entries"].items()):
        for metric, spec in sorted(metrics.items()):
            values = fresh.get(config, {}).get(metric)
            base_mean = sum(spec["values"]) / len(spec["values"])
            if not values:
                verdicts.append(
                    Verdict(config, metric, base_mean, math.nan, math.nan, None, "missing")
                )
                continue
            status, change, p = judge(metric, spec, values)
            verdicts.append(
                Verdict(config, metric, base_mean, sum(values) / len(values), change, p, status)
            )
    return verdicts


def speed_verdicts(benchmark: dict[str, Any] | None, name: str) -> list[Verdict]:
    """One verdict per clients-per-round setting and engine mode of `SPEED_FLOORS`, from the
    document of benchmark `name` (`sparsebench throughput`); None (not run) is missing. The
    ratio is of best round times (the bare loop's over the engine's): as in timeit, the
    fastest round is the one least disturbed by anything else on the machine."""
    if benchmark is None:
        return [
            Verdict(f"benchmark/{name}", "result", math.nan, math.nan, math.nan, None, "missing")
        ]
    best = {(r["clients_per_round"], r["mode"]): r["best_round_s"] for r in benchmark["rows"]}
    verdicts = []
    for k in sorted({per_round for per_round, _ in best}):
        config = f"benchmark/{name}/per_round={k}"
        for mode, floor in SPEED_FLOORS.items():
            metric = f"{mode}_over_bare_{mode}"
            if (k, mode) not in best or (k, f"bare-{mode}") not in best:
                verdicts.append(Verdict(config, metric, floor, math.nan, math.nan, None, "missing"))
                continue
            ratio = best[(k, f"bare-{mode}")] / best[(k, mode)]
            if ratio >= floor:
                status = "same"
            else:
                status = "noise" if ratio >= floor - SPEED_NOISE else "regressed"
            verdicts.append(Verdict(config, metric, floor, ratio, ratio / floor - 1, None, status))
    return verdicts


FAILING = {"regressed", "changed", "missing"}


def failed(verdicts: list[Verdict]) -> bool:
    return any(v.status in FAILING for v in verdicts)


def render(verdicts: list[Verdict]) -> str:
    """A fixed-width table, worst first."""
    order = sorted(verdicts, key=lambda v: (v.status not in FAILING, v.config, v.metric))
    lines = [
        f"{'status':<10} {'metric':<14} {'baseline':>12} {'fresh':>12} {'change':>8} "
        f"{'p':>7}  config"
    ]
    for v in order:
        p = "-" if v.p_value is None else f"{v.p_value:.3g}"
        change = "-" if math.isnan(v.change) else f"{100 * v.change:+.2f}%"
        lines.append(
            f"{v.status[:10]:<10} {v.metric:<14} {v.baseline:>12.6g} {v.fresh:>12.6g} "
            f"{change:>8} {p:>7}  {v.config}"
        )
    bad = sum(v.status in FAILING for v in verdicts)
    lines.append(f"{len(verdicts)} checks, {bad} failing")
    return "\n".join(lines)


def to_json(verdicts: list[Verdict]) -> list[dict[str, Any]]:
    return [asdict(v) for v in verdicts]
