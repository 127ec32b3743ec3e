"""Tidy tables: one row per run, built from result.json files only.

Columns: identity (key, run_id, family, method, dataset, model, hardware, seed, status), params
as `p_method_*`, `p_dataset_*`, `p_model_*`, metrics as `metric_*`, and the cost axes (density,
bytes, FLOPs with the executed training FLOPs over the dense ones, simulated time per link, wall
time, peak memory), how the run departed from its
paper's optimizer regime (`off_regime`, empty when on it), plus git commit.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from sparsebench.report.stats import mean_interval
from sparsebench.spec import FAMILIES, Component


def load_results(results_dir: Path, family: str | None = None) -> list[dict[str, Any]]:
    pattern = f"runs/{family or '*'}/*/result.json"
    return [json.loads(p.read_text()) for p in sorted(Path(results_dir).glob(pattern))]


def row(doc: dict[str, Any]) -> dict[str, Any]:
    spec, costs = doc["spec"], doc["costs"]
    out: dict[str, Any] = {
        "key": doc["key"],
        "run_id": doc["run_id"],
        "family": spec["family"],
        "method": spec["method"]["name"],
        "dataset": spec["dataset"]["name"],
        "model": spec["model"]["name"],
        "hardware": spec["hardware"],
        "seed": spec["seed"],
        "status": doc["status"],
        "config": config_label(spec),
    }
    for section in ("method", "dataset", "model"):
        for k, v in spec[section]["params"].items():
            out[f"p_{section}_{k}"] = v if not isinstance(v, (list, dict)) else json.dumps(v)
    for k, v in doc["metrics"].items():
        out[f"metric_{k}"] = v
    out["density"] = costs.get("density")
    out["bytes_up"] = costs.get("bytes", {}).get("up", 0)
    out["bytes_down"] = costs.get("bytes", {}).get("down", 0)
    for k, v in costs.get("flops", {}).items():
        out[f"flops_{k}"] = v
    out["train_flops_ratio"] = train_flops_ratio(costs.get("flops", {}))
    out["compute_s"] = costs.get("compute_s")
    for k, v in costs.get("comm_time_s", {}).items():
        out[f"comm_s_{k}"] = v
        if out["compute_s"] is not None:
            out[f"total_s_{k}"] = out["compute_s"] + v
    out["wall_s"] = costs.get("wall_s")
    out["prune_s"] = costs.get("prune_s")
    for k, v in costs.get("time_to_target_s", {}).items():
        out[f"time_to_target_s_{k}"] = v
    out["peak_mem_bytes"] = costs.get("peak_mem_bytes")
    out["off_regime"] = "; ".join(off_regime(doc))
    out["git_commit"] = doc["provenance"].get("git_commit")
    return out


def train_flops_ratio(flops: dict[str, float]) -> float | None:
    """Training FLOPs as executed over the dense model's for the same steps (None: unknown)."""
    dense, executed = flops.get("train_dense"), flops.get("train_sparse")
    return executed / dense if dense and executed is not None else None


def off_regime(doc: dict[str, Any]) -> list[str]:
    """How the run departed from its method's paper regime (empty: on-regime or undeclared)."""
    return list((doc.get("regime") or {}).get("off", []))


def config_label(spec: dict[str, Any]) -> str:
    """The run's identity without its seed: what seeds are aggregated over."""
    return " / ".join(Component.from_dict(spec[s]).label() for s in ("method", "dataset", "model"))


def table(results_dir: Path, family: str) -> pd.DataFrame:
    return pd.DataFrame([row(doc) for doc in load_results(results_dir, family)])


def write_tables(results_dir: Path, families: list[str] | None = None) -> list[Path]:
    """results/tables/<family>.parquet for every family that has runs (or those asked for)."""
    out_dir = Path(results_dir) / "tables"
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for family in families or FAMILIES:
        frame = table(results_dir, family)
        path = out_dir / f"{family}.parquet"
        tmp = path.with_suffix(".parquet.tmp")
        frame.to_parquet(tmp, index=False)
        tmp.replace(path)
        written.append(path)
    return written


def seed_summary(frame: pd.DataFrame, value: str) -> pd.DataFrame:
    """Mean, 95% t-interval half-width and seed count of `value` per config (ok runs only)."""
    ok = frame[frame["status"] == "ok"]
    rows = []
    for config, values in ok.groupby("config")[value]:
        mean, half = mean_interval(values.dropna().tolist())
        rows.append({"config": config, "mean": mean, "ci95": half, "count": values.count()})
    return pd.DataFrame(rows, columns=["config", "mean", "ci95", "count"])
