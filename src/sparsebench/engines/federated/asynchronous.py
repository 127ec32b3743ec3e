"""Asynchronous server loops on a simulated clock: buffered (FedBuff) and fixed-interval
(FedFix)."""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass, field

import torch

from sparsebench.engines.context import RunContext
from sparsebench.engines.federated.clients import (
    byzantine_clients,
    load_vector,
    message_bytes,
    model_vector,
    partition_clients,
    train_round,
    upload,
)
from sparsebench.engines.federated.record import log_round, new_curves, run_result
from sparsebench.seeds import derive
from sparsebench.spec import RunResult


@dataclass(order=True)
class _Job:
    finish: float
    order: int
    client: int = field(compare=False)
    version: int = field(compare=False)
    start: torch.Tensor = field(compare=False)
    trained: torch.Tensor = field(compare=False)
    loss: float = field(compare=False)


def async_setup(ctx: RunContext):
    """What both asynchronous loops draw from the run's seeds: the partition, the client
    sampler, the attack noise, the Byzantine set and the client speeds."""
    params, root = ctx.method.params, ctx.seeds["root"]
    return (
        partition_clients(ctx),
        torch.Generator().manual_seed(ctx.seeds["method"]),
        torch.Generator().manual_seed(derive(root, "attack")),
        byzantine_clients(params.clients, params.byzantine_fraction, derive(root, "byzantine")),
        ctx.method.client_speeds(derive(root, "client-speeds")),
    )


def run_buffered(ctx: RunContext) -> RunResult:
    """Simulated-clock asynchronous rounds (FedBuff-style): `clients_per_round` clients in
    flight; finished updates are buffered with their staleness; the strategy steps once per full
    buffer. A budget round is one server step. Clients finishing at the same instant are all
    buffered before idle clients are started on the current model."""
    strategy, params, budget = ctx.method, ctx.method.params, ctx.budget
    parts, sampler, attacker, byzantine, speeds = async_setup(ctx)
    global_vec = model_vector(ctx.model)
    model_bytes = message_bytes({"model": global_vec})
    curves = {**new_curves(), "sim_time": []}
    traffic: list[tuple[int, int]] = []
    state = {"version": 0, "dispatches": 0, "order": 0, "down": 0, "up": 0}
    jobs: list[_Job] = []
    buffer: list[tuple[torch.Tensor, int, float]] = []

    def dispatch(count: int, now: float) -> None:
        busy = {job.client for job in jobs}
        idle = [c for c in range(params.clients) if c not in busy]
        chosen = [idle[i] for i in torch.randperm(len(idle), generator=sampler)[:count].tolist()]
        state["dispatches"] += 1
        trained, losses = train_round(ctx, parts, chosen, state["dispatches"], global_vec)
        for client, vec, loss in zip(chosen, trained, losses, strict=True):
            finish = now + float(speeds[client]) * budget.local_steps
            state["order"] += 1
            job = _Job(finish, state["order"], client, state["version"], global_vec, vec, loss)
            heapq.heappush(jobs, job)
        state["down"] += model_bytes * len(chosen)

    dispatch(params.clients_per_round, 0.0)
    diverged = False
    while state["version"] < budget.rounds and not diverged:
        now, finished = jobs[0].finish, []
        while jobs and jobs[0].finish == now:
            finished.append(heapq.heappop(jobs))
        for job in finished:
            if not math.isfinite(job.loss):
                diverged = True
                break
            msg = upload(ctx, job.client, job.start, job.trained, job.client in byzantine, attacker)
            state["up"] += message_bytes(msg)
            buffer.append((msg["delta"], state["version"] - job.version, job.loss))
            if len(buffer) == strategy.params.buffer_size:
                deltas, stale, losses = (list(t) for t in zip(*buffer, strict=True))
                global_vec = strategy.aggregate_buffer(global_vec, deltas, stale)
                state["version"] += 1
                buffer.clear()
                load_vector(ctx.model, global_vec)
                log_round(ctx, curves, state["version"], losses, state["up"], state["down"])
                curves["sim_time"].append(now)
                traffic.append((2 * model_bytes, 2))
                state["up"] = state["down"] = 0
                if state["version"] == budget.rounds:
                    break
        if state["version"] < budget.rounds and not diverged:
            dispatch(len(finished), now)
    load_vector(ctx.model, global_vec)
    return run_result(ctx, parts, curves, traffic, diverged)


def run_fixed_interval(ctx: RunContext) -> RunResult:
    """Simulated-clock FedFix rounds: a seeded set of `clients_per_round` clients works without
    pause; at every multiple of the strategy's interval the server merges the updates of the
    clients that finished since the last merge and sends them the new model, while the others
    keep training on the version they hold. A budget round is one interval; an interval in
    which nobody finished leaves the model as it is and is not logged."""
    strategy, params, budget = ctx.method, ctx.method.params, ctx.budget
    parts, sampler, attacker, byzantine, speeds = async_setup(ctx)
    active = sorted(torch.randperm(params.clients, generator=sampler)[: params.clients_per_round])
    active = [int(c) for c in active]
    strategy.set_population(active, [len(parts[c]) for c in active])
    interval = strategy.interval_length(budget.local_steps)
    global_vec = model_vector(ctx.model)
    model_bytes = message_bytes({"model": global_vec})
    curves = {**new_curves(), "sim_time": []}
    traffic: list[tuple[int, int]] = []
    jobs: dict[int, tuple[float, torch.Tensor, torch.Tensor, float]] = {}

    def dispatch(clients: list[int], now: float, rnd: int) -> None:
        trained, losses = train_round(ctx, parts, clients, rnd, global_vec)
        for client, vec, loss in zip(clients, trained, losses, strict=True):
            finish = now + float(speeds[client]) * budget.local_steps
            jobs[client] = (finish, global_vec, vec, loss)

    dispatch(active, 0.0, 1)
    down = model_bytes * len(active)
    diverged = False
    for rnd in range(1, budget.rounds + 1):
        now = rnd * interval
        done = [c for c in active if jobs[c][0] <= now * (1 + 1e-12)]
        if not done:
            continue
        losses = [jobs[c][3] for c in done]
        if not all(math.isfinite(v) for v in losses):
            diverged = True
            break
        msgs = [upload(ctx, c, jobs[c][1], jobs[c][2], c in byzantine, attacker) for c in done]
        up = sum(message_bytes(m) for m in msgs)
        deltas = [m["delta"] for m in msgs]
        global_vec = strategy.aggregate_interval(global_vec, deltas, done, budget.local_steps)
        load_vector(ctx.model, global_vec)
        sending = done if rnd < budget.rounds else []
        down += model_bytes * len(sending)
        log_round(ctx, curves, rnd, losses, up, down)
        curves["sim_time"].append(now)
        traffic.append((2 * model_bytes, 2))
        down = 0
        if sending:
            dispatch(sending, now, rnd + 1)
    load_vector(ctx.model, global_vec)
    return run_result(ctx, parts, curves, traffic, diverged)
