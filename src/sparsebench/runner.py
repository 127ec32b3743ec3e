"""Execute one RunSpec and write its result.json atomically.

Build order: seeds -> data -> model (init seed) -> method (method seed) -> the family's engine.
The runner adds the costs every family shares (wall time, peak memory, simulated communication
time per link) and the provenance, then writes result.json via a temp file and a rename, so a
killed job never leaves a half-written result behind.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from sparsebench import provenance, registry
from sparsebench.comm.links import comm_time, links_from_profile, server_links, time_to_target
from sparsebench.data.base import load_dataset
from sparsebench.engines import federated, pruning, sparse_training, workers
from sparsebench.engines.context import RunContext
from sparsebench.metrics import peak_memory_bytes
from sparsebench.models import build_model
from sparsebench.seeds import all_seeds
from sparsebench.spec import Budget, Regime, RunResult, RunSpec

ENGINES = {
    "sparse_training": sparse_training.run,
    "pruning": pruning.run,
    "compression": workers.run,
    "federated": federated.run,
}


def regime_record(regime: Regime | None, budget: Budget) -> dict[str, Any] | None:
    """The paper's regime and how this run's budget departs from it (None: not declared)."""
    if regime is None:
        return None
    shape = f"{regime.optimizer}, {' or '.join(regime.schedules) or 'any schedule'}"
    return {"paper": shape, "source": regime.source, "off": regime.departures(budget)}


def execute(
    spec: RunSpec,
    hardware: dict[str, Any],
    data_dir: str | Path | None = None,
    threads: int = 1,
    checkpoint: Path | None = None,
) -> dict[str, Any]:
    """Run the cell and return the result.json document (not yet written); `checkpoint` is
    where training keeps a resumable state when budget.checkpoint_every > 0."""
    torch.set_num_threads(threads)
    started = datetime.now(UTC)
    clock = time.perf_counter()
    seeds = all_seeds(spec.seed)
    entry = registry.get(spec.family, spec.method.name)
    method_params = registry.make_params(spec.family, spec.method.name, spec.method.params)
    budget = Budget(**spec.budget)
    data = load_dataset(spec.dataset, data_dir)
    torch.manual_seed(seeds["init"])
    model = build_model(spec.model, data.input_shape, data.num_classes)
    method = entry.obj(method_params, seeds["method"])
    ctx = RunContext(spec, data, model, method, budget, seeds, hardware=hardware)
    if checkpoint is not None:
        ctx.extra["checkpoint"] = Path(checkpoint)
    result: RunResult = ENGINES[spec.family](ctx)
    costs = dict(result.costs)
    links, server = links_from_profile(hardware), server_links(hardware)
    costs["comm_time_s"] = comm_time(result.traffic, links, server)
    if budget.target_acc > 0 and "compute_s_at_eval" in costs:
        costs["time_to_target_s"] = time_to_target(
            result.curves,
            costs["compute_s_at_eval"],
            result.traffic,
            links,
            budget.target_acc,
            server,
        )
    costs["wall_s"] = time.perf_counter() - clock
    costs["peak_mem_bytes"] = peak_memory_bytes()
    return {
        "key": spec.key(),
        "run_id": spec.run_id(),
        "spec": spec.to_dict(),
        "spec_hash": spec.spec_hash(),
        "status": result.status,
        "metrics": result.metrics,
        "curves": result.curves,
        "costs": costs,
        "regime": regime_record(entry.regime, budget),
        "provenance": {
            **provenance.git_state(),
            "versions": provenance.versions(),
            "hardware": provenance.hardware(spec.hardware, threads),
            "seeds": seeds,
            "started": started.isoformat(timespec="seconds"),
            "finished": datetime.now(UTC).isoformat(timespec="seconds"),
        },
    }
