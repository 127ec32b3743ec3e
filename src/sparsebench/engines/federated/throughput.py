"""Clients trained per second by the federated simulator, and by an actor-per-client design.

The work: FedAvg on 1000 IID clients of MNIST-1D (4 training samples each), the MLP (hidden 256),
10 local SGD steps of batch 4 per client, 10 or 100 clients per round. Three ways to do it:
- `vmap`: the engine's batched path (torch.func functional_call + vmap over stacked client
  parameters, engines/federated/batched.py);
- `sequential`: the engine's loop over the sampled clients on one reused model;
- `actor`: the design of Flower's simulation engine on Ray: long-lived worker processes (one per
  thread given), and per client a task that ships the global parameters to a worker, builds the
  client's model there (Flower's `client_fn`), trains the same local steps with the same seed and
  ships the parameters back. The workers hold the dataset; they start before the clock does.
Only client training is timed (after one warm-up round): no evaluation, no aggregation.
"""

from __future__ import annotations

import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict
from typing import Any

import torch

from sparsebench import provenance, registry
from sparsebench.data.base import Dataset, build_dataset
from sparsebench.engines.context import RunContext
from sparsebench.engines.federated.clients import (
    client_seed,
    model_vector,
    partition_clients,
    train_one,
    train_round,
)
from sparsebench.models import build_model
from sparsebench.seeds import all_seeds
from sparsebench.spec import Budget, Component, RunSpec

MODES = ("vmap", "sequential", "actor")
DATASET = Component("mnist1d")
MODEL = Component("mlp", {"hidden": 256})
BUDGET = Budget(local_steps=10, batch_size=4, optimizer="sgd", lr=0.05, momentum=0.0)

_actor: dict[str, Any] = {}


def _context(data: Dataset, clients: int, per_round: int, simulation: str) -> RunContext:
    opts = {"clients": clients, "clients_per_round": per_round, "partition": "iid"}
    params = registry.make_params("federated", "fedavg", {**opts, "simulation": simulation})
    strategy = registry.get("federated", "fedavg").obj(params, 0)
    spec = RunSpec("federated", Component("fedavg", opts), DATASET, MODEL)
    model = build_model(MODEL, data.input_shape, data.num_classes)
    return RunContext(spec, data, model, strategy, BUDGET, all_seeds(0))


def _actor_start(threads: int, data: Dataset, clients: int, per_round: int) -> None:
    """A worker's one-time setup: its thread count, the registry, the data and the strategy."""
    torch.set_num_threads(threads)
    registry.load_all()
    _actor["data"] = data
    _actor["strategy"] = _context(data, clients, per_round, "sequential").method


def _actor_train(client: int, global_vec: torch.Tensor, idx: torch.Tensor, seed: int):
    """One client task: a fresh model from the shipped parameters, local steps, parameters back."""
    data = _actor["data"]
    model = build_model(MODEL, data.input_shape, data.num_classes)
    gen = torch.Generator().manual_seed(seed)
    train_one(model, _actor["strategy"], client, global_vec, data.x_train[idx], data.y_train[idx],
              BUDGET, gen)  # fmt: skip
    return model_vector(model)


def actor_pool(data: Dataset, threads: int, clients: int, per_round: int) -> ProcessPoolExecutor:
    """`threads` spawned workers, each holding the data (as Ray actors would)."""
    return ProcessPoolExecutor(
        threads,
        multiprocessing.get_context("spawn"),
        initializer=_actor_start,
        initargs=(1, data, clients, per_round),
    )


def actor_round(
    pool: ProcessPoolExecutor,
    ctx: RunContext,
    parts: list[torch.Tensor],
    sampled: list[int],
    rnd: int,
    start: torch.Tensor,
) -> torch.Tensor:
    """The sampled clients' trained vectors [C, d], one task per client."""
    jobs = [
        pool.submit(_actor_train, c, start, parts[c], client_seed(ctx, rnd, c)) for c in sampled
    ]
    return torch.stack([job.result() for job in jobs])


def _rounds(per_round: int, clients: int, rounds: int) -> list[list[int]]:
    """Round 0 (the warm-up) and the timed rounds: consecutive blocks of client ids."""
    return [[(r * per_round + i) % clients for i in range(per_round)] for r in range(rounds + 1)]


def clients_per_second(
    data: Dataset, mode: str, per_round: int, rounds: int, clients: int = 1000, threads: int = 1
) -> float:
    """Clients trained per second over `rounds` timed rounds of `per_round` clients."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    ctx = _context(data, clients, per_round, "sequential" if mode == "actor" else mode)
    parts = partition_clients(ctx)
    start = model_vector(ctx.model)
    plan = _rounds(per_round, clients, rounds)
    if mode != "actor":
        train_round(ctx, parts, plan[0], 0, start)
        begin = time.perf_counter()
        for rnd, sampled in enumerate(plan[1:], 1):
            train_round(ctx, parts, sampled, rnd, start)
        return rounds * per_round / (time.perf_counter() - begin)
    with actor_pool(data, threads, clients, per_round) as pool:
        actor_round(pool, ctx, parts, plan[0], 0, start)
        begin = time.perf_counter()
        for rnd, sampled in enumerate(plan[1:], 1):
            actor_round(pool, ctx, parts, sampled, rnd, start)
        return rounds * per_round / (time.perf_counter() - begin)


def measure(
    rounds: int = 10,
    clients: int = 1000,
    per_round: tuple[int, ...] = (10, 100),
    threads: int = 1,
    data: Dataset | None = None,
) -> dict[str, Any]:
    """Every mode at every clients-per-round: the document the report's table is made from."""
    torch.set_num_threads(threads)
    registry.load_all()
    data = build_dataset(DATASET) if data is None else data
    rows = [
        {
            "clients_per_round": k,
            "mode": mode,
            "clients_per_s": clients_per_second(data, mode, k, rounds, clients, threads),
        }
        for k in per_round
        for mode in MODES
    ]
    return {
        "benchmark": "federated_throughput",
        "work": {
            "strategy": "fedavg",
            "clients": clients,
            "rounds_timed": rounds,
            "dataset": DATASET.label(),
            "model": MODEL.label(),
            "budget": asdict(BUDGET),
        },
        "threads": threads,
        "rows": rows,
        "environment": {"cpu": provenance.cpu_model(), "versions": provenance.versions()},
    }
