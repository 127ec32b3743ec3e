"""Synchronous server rounds (FedAvg and every strategy shaped like it)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from tqdm import tqdm

from sparsebench.engines.context import RunContext, slowdowns
from sparsebench.engines.federated.clients import (
    byzantine_clients,
    load_vector,
    message_bytes,
    model_vector,
    partition_clients,
    timed_round,
    upload_round,
)
from sparsebench.engines.federated.record import log_round, new_curves, run_result
from sparsebench.engines.federated.resume import Checkpoints, Progress
from sparsebench.seeds import derive
from sparsebench.spec import RunResult


@dataclass(kw_only=True)
class _Server(Progress):
    """The global model and the streams that sample clients and draw the attacks."""

    global_vec: torch.Tensor
    sampler: torch.Generator
    attacker: torch.Generator


def run_synchronous(ctx: RunContext) -> RunResult:
    """Server rounds: sample, train locally, attack (Byzantine clients), aggregate, evaluate."""
    strategy, params, budget = ctx.method, ctx.method.params, ctx.budget
    parts = partition_clients(ctx)
    slowdown = slowdowns(ctx, ctx.method.params.clients)
    byzantine_seed = derive(ctx.seeds["root"], "byzantine")
    byzantine = byzantine_clients(params.clients, params.byzantine_fraction, byzantine_seed)
    server = _Server(
        curves=new_curves(),
        global_vec=model_vector(ctx.model),
        sampler=torch.Generator().manual_seed(ctx.seeds["method"]),
        attacker=torch.Generator().manual_seed(derive(ctx.seeds["root"], "attack")),
    )
    saves = Checkpoints(ctx)
    saves.resume(server)
    diverged = False
    rounds = range(server.rounds_done + 1, budget.rounds + 1)
    for rnd in tqdm(rounds, desc="rounds", mininterval=2.0, leave=False):
        sampled = torch.randperm(params.clients, generator=server.sampler)
        sampled = sampled[: params.clients_per_round].tolist()
        global_vec = server.global_vec
        down_each = message_bytes(strategy.broadcast(global_vec))
        trained, losses, compute_s = timed_round(ctx, parts, sampled, rnd, global_vec, slowdown)
        if not all(math.isfinite(v) for v in losses):
            diverged = True
            break
        starts = [global_vec] * len(sampled)
        messages = upload_round(ctx, sampled, starts, trained, byzantine, server.attacker)
        up = sum(message_bytes(m) for m in messages)
        server.global_vec = strategy.aggregate(
            global_vec, messages, [len(parts[c]) for c in sampled]
        )
        down = down_each * len(sampled)
        server.traffic.append((down_each + up // len(sampled), 2, up + down))
        server.compute_s.append(compute_s)
        load_vector(ctx.model, server.global_vec)
        log_round(ctx, server.curves, rnd, losses, up, down)
        server.rounds_done = rnd
        saves.reached(server)
    saves.finish()
    load_vector(ctx.model, server.global_vec)
    return run_result(ctx, parts, server, diverged)
