"""Synchronous server rounds (FedAvg and every strategy shaped like it)."""

from __future__ import annotations

import math

import torch
from tqdm import tqdm

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


def run_synchronous(ctx: RunContext) -> RunResult:
    """Server rounds: sample, train locally, attack (Byzantine clients), aggregate, evaluate."""
    strategy, params, budget = ctx.method, ctx.method.params, ctx.budget
    parts = partition_clients(ctx)
    sampler = torch.Generator().manual_seed(ctx.seeds["method"])
    attacker = torch.Generator().manual_seed(derive(ctx.seeds["root"], "attack"))
    byzantine_seed = derive(ctx.seeds["root"], "byzantine")
    byzantine = byzantine_clients(params.clients, params.byzantine_fraction, byzantine_seed)
    global_vec = model_vector(ctx.model)
    curves = new_curves()
    traffic: list[tuple[int, int]] = []
    diverged = False
    for rnd in tqdm(range(1, budget.rounds + 1), desc="rounds", mininterval=2.0, leave=False):
        sampled = torch.randperm(params.clients, generator=sampler)[: params.clients_per_round]
        sampled = sampled.tolist()
        down_each = message_bytes(strategy.broadcast(global_vec))
        trained, losses = train_round(ctx, parts, sampled, rnd, global_vec)
        if not all(math.isfinite(v) for v in losses):
            diverged = True
            break
        messages = [
            upload(ctx, client, global_vec, local, client in byzantine, attacker)
            for client, local in zip(sampled, trained, strict=True)
        ]
        up = sum(message_bytes(m) for m in messages)
        global_vec = strategy.aggregate(global_vec, messages, [len(parts[c]) for c in sampled])
        traffic.append((down_each + up // len(sampled), 2))
        load_vector(ctx.model, global_vec)
        log_round(ctx, curves, rnd, losses, up, down_each * len(sampled))
    load_vector(ctx.model, global_vec)
    return run_result(ctx, parts, curves, traffic, diverged)
