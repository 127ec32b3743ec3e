"""Paper-shaped tables, one per (dataset, model) setting, means ± 95% intervals over seeds.

- sparse_training, pruning: rows are method variants, columns the requested sparsity (density
  or N:M pattern), cells the test accuracy, or perplexity for language models, with the measured
  density beside it (`@ d`), so a cell whose layers were left dense shows it: the shape of the
  RigL, Wanda and SparseGPT tables.
- federated: rows are strategies, columns the Dirichlet alpha of the partition (niid-bench).
- compression: GRACE's shape: rows are compressors, columns the compression ratio, the final
  accuracy and the time to the target accuracy under each network link.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from sparsebench.report.stats import mean_interval
from sparsebench.spec import Component

PATTERN_PARAMS = {
    "sparse_training": ("nm", "density"),
    "pruning": ("nm", "density"),
    "federated": ("alpha",),
}


def mean_ci(values: pd.Series) -> str:
    values = values.dropna()
    if values.empty:
        return "–"
    mean, half = mean_interval(values.tolist())
    return f"{mean:.4g}" if math.isnan(half) else f"{mean:.4g} ± {half:.2g}"


def _variant(row: pd.Series, hidden: tuple[str, ...]) -> str:
    params = {
        col.removeprefix("p_method_"): row[col]
        for col in row.index
        if col.startswith("p_method_")
        and col.removeprefix("p_method_") not in hidden
        and not _missing(row[col])
    }
    return Component(row["method"], params).label()


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _pattern(row: pd.Series, params: tuple[str, ...]) -> str:
    for name in params:
        value = row.get(f"p_method_{name}")
        if not _missing(value):
            return str(value)
    return "dense" if params[-1] == "density" else "default"


def pivot_tables(family: str, table: pd.DataFrame) -> list[dict[str, Any]]:
    ok = table[table["status"] == "ok"].copy()
    if ok.empty:
        return []
    ok["setting"] = ok["dataset"] + " / " + ok["model"]
    if family == "compression":
        return [_grace(setting, part) for setting, part in ok.groupby("setting")]
    params = PATTERN_PARAMS[family]
    out = []
    for setting, part in ok.groupby("setting"):
        part = part.copy()
        part["variant"] = part.apply(_variant, axis=1, hidden=params)
        part["pattern"] = part.apply(_pattern, axis=1, params=params)
        ppl = "metric_test_ppl" in part and part["metric_test_ppl"].notna().any()
        value = "metric_test_ppl" if ppl else "metric_test_acc"
        columns = sorted(part["pattern"].unique(), key=_pattern_order)
        rows = []
        for variant, group in part.groupby("variant"):
            cells = {p: _cell(group[group["pattern"] == p], value, family) for p in columns}
            rows.append({"row": variant, **cells})
        title = f"{setting}: {'test perplexity' if ppl else 'test accuracy'} by " + (
            "Dirichlet alpha" if family == "federated" else "sparsity"
        )
        out.append({"title": title, "columns": ["row", *columns], "rows": rows})
    return out


def _cell(group: pd.DataFrame, value: str, family: str) -> str:
    """Mean ± interval of `value`, and for the sparsity families the measured density."""
    text = mean_ci(group[value])
    if family == "federated" or "density" not in group or group["density"].isna().all():
        return text
    return f"{text} @ {group['density'].mean():.3g}"


def _pattern_order(label: str) -> tuple[int, float, str]:
    """Dense first, then N:M patterns, then densities from high to low."""
    if ":" in label:
        n, m = label.split(":")
        return (1, -int(n) / int(m), label)
    try:
        return (2, -float(label), label)
    except ValueError:
        return (0, 0.0, label)


def _grace(setting: str, part: pd.DataFrame) -> dict[str, Any]:
    part = part.copy()
    part["variant"] = part.apply(_variant, axis=1, hidden=())
    links = sorted(
        c.removeprefix("time_to_target_s_")
        for c in part.columns
        if c.startswith("time_to_target_s_")
    )
    rows = []
    for variant, group in part.groupby("variant"):
        row = {
            "row": variant,
            "ratio": mean_ci(group.get("metric_compression_ratio", pd.Series(dtype=float))),
            "test acc": mean_ci(group["metric_test_acc"]),
        }
        for link in links:
            reached = group[f"time_to_target_s_{link}"]
            row[f"time to target, {link} (s)"] = (
                mean_ci(reached) if reached.notna().all() else "not reached"
            )
        rows.append(row)
    columns = ["row", "ratio", "test acc", *[f"time to target, {link} (s)" for link in links]]
    return {"title": f"{setting}: compression (GRACE's table)", "columns": columns, "rows": rows}
