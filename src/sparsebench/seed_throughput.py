"""Seeds per second of one cell run as one job per seed, as one seed group, and batched.

Each mode is the wall clock of real `sparsebench` processes, started and timed from here, on the
default grids' cells (MNIST-1D, the MLP with 256 hidden units, the grid's optimizer regime):
- `jobs`: one `sparsebench run` process per seed, one after another, as a workflow with one
  job per seed runs them: every seed pays the interpreter, the torch and sparsebench imports and
  its own data loading;
- `group`: one `sparsebench run-seeds --no-batch` process: the seeds share that start and train
  one after another;
- `batched`: one `sparsebench run-seeds` process: the seeds train as one batched computation
  (`runner.execute_seeds`).
Snakemake's own scheduling and MLflow logging (the same per seed in every mode) are left out.
Each cell also records, per metric, the largest difference over the seeds between each mode and
`jobs`: batched and alone agree up to float reassociation, which Adam's per-coordinate scaling
and pruning's top-k threshold amplify.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sparsebench import provenance
from sparsebench.spec import Component, RunSpec

MODES = ("jobs", "group", "batched")
STEPS = 300
"""Training steps per seed: a fifth of the default grids' 1,500, to keep the benchmark short
(the per-step speedup does not depend on it; the share of the process start does)."""

CELLS = {
    "sparse_training": (
        Component("rigl", {"density": 0.1, "update_interval": 100}),
        {"lr": 0.2, "optimizer": "sgd", "momentum": 0.9, "schedule": "step"},
    ),
    "pruning": (
        Component("magnitude", {"density": 0.1, "finetune_fraction": 0.3}),
        {"lr": 0.01, "optimizer": "adam"},
    ),
}
"""One cell per family that batches seeds, each in its default grid's regime."""


def cell_specs(family: str, seeds: int, steps: int) -> list[RunSpec]:
    """The run specs of `seeds` seeds of `family`'s benchmark cell."""
    method, regime = CELLS[family]
    budget = {"steps": steps, "batch_size": 100, "eval_every": max(1, steps // 4), **regime}
    return [
        RunSpec(
            family,
            method,
            Component("mnist1d"),
            Component("mlp", {"hidden": 256}),
            "cpu",
            seed,
            budget,
        )
        for seed in range(seeds)
    ]


def _sparsebench(args: list[str], root: Path) -> None:
    """Run `sparsebench ARGS` in a fresh interpreter with one torch thread, from `root`."""
    command = [sys.executable, "-m", "sparsebench.cli", *args, "--threads", "1", "--no-track"]
    subprocess.run(command, cwd=root, check=True, capture_output=True, env=os.environ.copy())


def run_mode(mode: str, specs: list[RunSpec], out: Path, root: Path) -> float:
    """Run `specs` the way `mode` says, their result.json files under `out`; seconds taken."""
    clock = time.perf_counter()
    if mode == "jobs":
        for spec in specs:
            target = out / spec.run_id()
            _sparsebench(["run", json.dumps(spec.to_dict()), "--out", str(target)], root)
    else:
        text = json.dumps([spec.to_dict() for spec in specs])
        extra = ["--no-batch"] if mode == "group" else []
        _sparsebench(["run-seeds", text, "--out", str(out), *extra], root)
    return time.perf_counter() - clock


def _metrics(out: Path, specs: list[RunSpec]) -> list[dict[str, float]]:
    return [
        json.loads((out / spec.run_id() / "result.json").read_text())["metrics"] for spec in specs
    ]


def metric_differences(a: list[dict[str, float]], b: list[dict[str, float]]) -> dict[str, float]:
    """Per metric, the largest |difference| over the seeds between two runs of the same seeds."""
    return {name: max(abs(x[name] - y[name]) for x, y in zip(a, b, strict=True)) for name in a[0]}


def measure(
    root: Path,
    seeds: int = 3,
    steps: int = STEPS,
    families: tuple[str, ...] = tuple(CELLS),
    progress: Callable[[str], None] = lambda line: None,
) -> dict[str, Any]:
    """Time every mode on every family's cell; the benchmark's JSON document."""
    rows = []
    for family in families:
        specs = cell_specs(family, seeds, steps)
        seconds, metrics = {}, {}
        with tempfile.TemporaryDirectory() as tmp:
            for mode in MODES:
                out = Path(tmp) / mode
                seconds[mode] = run_mode(mode, specs, out, root)
                metrics[mode] = _metrics(out, specs)
                progress(f"{family} {mode}: {seeds} seeds in {seconds[mode]:.1f} s")
        differences = {mode: metric_differences(metrics[mode], metrics["jobs"]) for mode in MODES}
        for mode in MODES:
            rows.append(
                {
                    "family": family,
                    "method": specs[0].method.name,
                    "mode": mode,
                    "seeds": seeds,
                    "steps": steps,
                    "wall_s": seconds[mode],
                    "seeds_per_s": seeds / seconds[mode],
                    "speedup_vs_jobs": seconds["jobs"] / seconds[mode],
                    "max_metric_diff_vs_jobs": max(differences[mode].values()),
                    "metric_diffs_vs_jobs": differences[mode],
                }
            )
    return {
        "benchmark": "seed_batching",
        "threads": 1,
        "rows": rows,
        "environment": {"cpu": provenance.cpu_model(), "versions": provenance.versions()},
    }


def summary(document: dict[str, Any]) -> str:
    """One line per family and mode: seeds/s and the speedup over one job per seed."""
    return "\n".join(
        f"{r['family']:16} {r['mode']:8} {r['seeds_per_s']:6.3f} seeds/s "
        f"{r['speedup_vs_jobs']:5.2f}x jobs  (max metric diff {r['max_metric_diff_vs_jobs']:.2g})"
        for r in document["rows"]
    )
