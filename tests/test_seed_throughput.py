"""The seed-batching benchmark times real processes in every mode and reports their speedups."""

from __future__ import annotations

import json

import pytest

from sparsebench.report.build import seed_batching_table
from sparsebench.seed_throughput import measure


def test_seed_benchmark_times_every_mode_on_real_processes(root, tmp_path):
    document = measure(root, seeds=2, steps=6, families=("sparse_training",))
    rows = {row["mode"]: row for row in document["rows"]}
    assert set(rows) == {"jobs", "group", "batched"}
    assert rows["jobs"]["speedup_vs_jobs"] == 1.0 and rows["jobs"]["max_metric_diff_vs_jobs"] == 0
    for row in rows.values():
        assert row["wall_s"] > 0 and row["seeds_per_s"] == pytest.approx(2 / row["wall_s"])
    assert rows["group"]["max_metric_diff_vs_jobs"] == 0
    assert rows["batched"]["max_metric_diff_vs_jobs"] < 1e-3
    diffs = rows["batched"]["metric_diffs_vs_jobs"]
    assert "test_acc" in diffs and max(diffs.values()) == rows["batched"]["max_metric_diff_vs_jobs"]
    (tmp_path / "benchmarks").mkdir()
    (tmp_path / "benchmarks" / "seed_batching.json").write_text(json.dumps(document))
    table = seed_batching_table(tmp_path)
    assert [r["x one job per seed"] for r in table["rows"]] == [
        rows[m]["speedup_vs_jobs"] for m in ("jobs", "group", "batched")
    ]
