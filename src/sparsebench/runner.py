"""Execute one RunSpec and write its result.json atomically.

Build order: seeds -> data -> model (init seed) -> method (method seed) -> the family's engine.
`execute_seeds` runs a seed group (`seed_groups`: the seeds of one cell) in one process, as one
batched computation where the engine and method allow, one result.json document per seed.
The runner adds the costs every family shares (wall time, peak memory, simulated communication
time per link) and the provenance, then writes result.json via a temp file and a rename, so a
killed job never leaves a half-written result behind.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from sparsebench import provenance, registry
from sparsebench.comm.links import comm_time, links_from_profile, server_links, time_to_target
from sparsebench.data.base import Dataset, load_dataset
from sparsebench.engines import federated, pruning, sparse_training, workers
from sparsebench.engines.context import RunContext
from sparsebench.engines.stacked import model_batchable
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


SEED_ENGINES = {
    "sparse_training": (sparse_training.prepare, sparse_training.run_seeds),
    "pruning": (pruning.prepare, pruning.run_seeds),
}
"""Engines that can train several seeds of one cell as one batched computation: how each
seed's run is prepared right after it is built (its draws from the global RNG then match a
run of its own), and how the prepared seeds train together."""


def batches_seeds(spec: RunSpec) -> bool:
    """Whether the seeds of `spec`'s cell can train as one batched computation: its family's
    engine batches seeds and its method declares its rule batchable (`seed_batchable`)."""
    if spec.family not in SEED_ENGINES:
        return False
    return registry.get(spec.family, spec.method.name).obj.seed_batchable


def seed_groups(specs: list[RunSpec]) -> list[list[RunSpec]]:
    """The jobs that run `specs`: the seeds of each cell together (in seed order), which
    saves every seed but the first its process start and, where `batches_seeds`, trains them
    as one batched computation; a run that keeps mid-run checkpoints alone (resuming is per
    run)."""
    cells: dict[str, list[RunSpec]] = {}
    groups: list[list[RunSpec]] = []
    for spec in specs:
        if spec.budget.get("checkpoint_every", 0):
            groups.append([spec])
        else:
            cells.setdefault(spec.cell_key(), []).append(spec)
    groups += [sorted(cell, key=lambda s: s.seed) for cell in cells.values()]
    return groups


def group_id(specs: list[RunSpec]) -> str:
    """A group's folder name: 12 hex digits of the SHA-256 of its run ids."""
    return hashlib.sha256(" ".join(s.run_id() for s in specs).encode()).hexdigest()[:12]


def _context(spec: RunSpec, hardware: dict[str, Any], data: Dataset) -> RunContext:
    """The built parts of one run: seeds, then the model (init seed), then the method."""
    seeds = all_seeds(spec.seed)
    entry = registry.get(spec.family, spec.method.name)
    method_params = registry.make_params(spec.family, spec.method.name, spec.method.params)
    torch.manual_seed(seeds["init"])
    model = build_model(spec.model, data.input_shape, data.num_classes)
    method = entry.obj(method_params, seeds["method"])
    return RunContext(spec, data, model, method, Budget(**spec.budget), seeds, hardware=hardware)


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
    ctx = _context(spec, hardware, load_dataset(spec.dataset, data_dir))
    if checkpoint is not None:
        ctx.extra["checkpoint"] = Path(checkpoint)
    result: RunResult = ENGINES[spec.family](ctx)
    return _document(ctx, result, threads, started, time.perf_counter() - clock)


def execute_seeds(
    specs: list[RunSpec],
    hardware: dict[str, Any],
    data_dir: str | Path | None = None,
    threads: int = 1,
    batch: bool = True,
) -> Iterator[dict[str, Any]]:
    """Run the seeds of one cell (a `seed_groups` group) in this process and yield their
    result.json documents, in order. Where `batches_seeds` and their models can run batched
    (`stacked.model_batchable`) they train as one batched computation: each seed is built
    exactly as `execute` builds it, its wall time is the group's divided by the seeds, and its
    costs record `seed_batch`, how many seeds shared the computation. Otherwise, or with
    `batch` off, each seed runs with `execute`, one after another."""
    cells = sorted({s.cell_key() for s in specs})
    if len(cells) != 1:
        raise ValueError(f"a seed group holds the seeds of one cell; got {', '.join(cells)}")
    if batch and len(specs) > 1 and batches_seeds(specs[0]):
        batched = _execute_batched(specs, hardware, data_dir, threads)
        if batched is not None:
            yield from batched
            return
    for spec in specs:
        yield execute(spec, hardware, data_dir, threads)


def _execute_batched(
    specs: list[RunSpec], hardware: dict[str, Any], data_dir: str | Path | None, threads: int
) -> list[dict[str, Any]] | None:
    """The documents of `specs` trained as one batched computation; None, with nothing run,
    when their models cannot run batched."""
    torch.set_num_threads(threads)
    started = datetime.now(UTC)
    clock = time.perf_counter()
    data = load_dataset(specs[0].dataset, data_dir)
    prepare, run_seeds = SEED_ENGINES[specs[0].family]
    ctxs = []
    for spec in specs:
        ctx = _context(spec, hardware, data)
        if not model_batchable(ctx.model):
            return None
        prepare(ctx)
        ctxs.append(ctx)
    results = run_seeds(ctxs)
    wall_s = (time.perf_counter() - clock) / len(specs)
    documents = []
    for ctx, result in zip(ctxs, results, strict=True):
        result.costs["seed_batch"] = len(specs)
        documents.append(_document(ctx, result, threads, started, wall_s))
    return documents


def _document(
    ctx: RunContext, result: RunResult, threads: int, started: datetime, wall_s: float
) -> dict[str, Any]:
    """The result.json document of a finished run: the engine's result, the costs every
    family shares (simulated communication time per link, wall time, peak memory) and the
    provenance."""
    spec, hardware, budget = ctx.spec, ctx.hardware, ctx.budget
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
    costs["wall_s"] = wall_s
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
        "regime": regime_record(registry.get(spec.family, spec.method.name).regime, budget),
        "provenance": {
            **provenance.git_state(),
            "versions": provenance.versions(),
            "hardware": provenance.hardware(spec.hardware, threads),
            "seeds": ctx.seeds,
            "started": started.isoformat(timespec="seconds"),
            "finished": datetime.now(UTC).isoformat(timespec="seconds"),
        },
    }
