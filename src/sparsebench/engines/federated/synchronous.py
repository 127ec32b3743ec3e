"""Synchronous server rounds (FedAvg and every strategy shaped like it).

`server_round` is one whole round without its evaluation (sampling, local training, attacks,
uploads, bytes, aggregation): the loop below runs it, and so does the throughput benchmark.
"""

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
from sparsebench.engines.federated.local import local_training
from sparsebench.engines.federated.record import flush, log_round, new_curves, run_result
from sparsebench.engines.federated.resume import Checkpoints, Progress
from sparsebench.seeds import derive
from sparsebench.spec import RunResult


@dataclass(frozen=True)
class Population:
    """The run's clients: their shards (and sizes), device slowdowns and the Byzantine set."""

    parts: list[torch.Tensor]
    sizes: list[int]
    slowdown: torch.Tensor
    byzantine: set[int]


@dataclass(kw_only=True)
class Server(Progress):
    """The global model and the streams that sample clients and draw the attacks."""

    global_vec: torch.Tensor
    sampler: torch.Generator
    attacker: torch.Generator


@dataclass(frozen=True)
class RoundDone:
    """What a round sent and measured: the clients' mean losses, bytes each way, compute."""

    losses: list[float]
    up: int
    down: int
    compute_s: float


def population(ctx: RunContext) -> Population:
    params = ctx.method.params
    parts = partition_clients(ctx)
    byzantine_seed = derive(ctx.seeds["root"], "byzantine")
    return Population(
        parts,
        [len(p) for p in parts],
        slowdowns(ctx, params.clients),
        byzantine_clients(params.clients, params.byzantine_fraction, byzantine_seed),
    )


def new_server(ctx: RunContext) -> Server:
    return Server(
        curves=new_curves(),
        global_vec=model_vector(ctx.model),
        sampler=torch.Generator().manual_seed(ctx.seeds["method"]),
        attacker=torch.Generator().manual_seed(derive(ctx.seeds["root"], "attack")),
    )


def server_round(ctx: RunContext, pop: Population, server: Server, rnd: int) -> RoundDone | None:
    """Round `rnd`: sample, train locally, attack (Byzantine clients), upload, aggregate into
    `server.global_vec`, record the round's traffic; None (the model unchanged) when a
    client's loss stopped being finite."""
    strategy, params = ctx.method, ctx.method.params
    sampled = torch.randperm(params.clients, generator=server.sampler)
    sampled = sampled[: params.clients_per_round].tolist()
    global_vec = server.global_vec
    down_each = message_bytes(strategy.broadcast(global_vec))
    trained, losses, compute_s = timed_round(ctx, pop.parts, sampled, rnd, global_vec, pop.slowdown)
    if not all(math.isfinite(v) for v in losses):
        return None
    starts = [global_vec] * len(sampled)
    messages = upload_round(ctx, sampled, starts, trained, pop.byzantine, server.attacker)
    up = sum(message_bytes(m) for m in messages)
    server.global_vec = strategy.aggregate(global_vec, messages, [pop.sizes[c] for c in sampled])
    del messages  # the uploads are rows of `trained`: it can be recycled once they are gone
    local_training(ctx, pop.parts).recycle(trained)
    down = down_each * len(sampled)
    server.traffic.append((down_each + up // len(sampled), 2, up + down))
    return RoundDone(losses, up, down, compute_s)


def run_synchronous(ctx: RunContext) -> RunResult:
    """Server rounds: sample, train locally, attack (Byzantine clients), aggregate, and
    evaluate every `eval_every_rounds` rounds and after the last."""
    pop, server = population(ctx), new_server(ctx)
    saves = Checkpoints(ctx)
    saves.resume(server)
    diverged = False
    rounds = range(server.rounds_done + 1, ctx.budget.rounds + 1)
    for rnd in tqdm(rounds, desc="rounds", mininterval=2.0, leave=False):
        done = server_round(ctx, pop, server, rnd)
        if done is None:
            diverged = True
            break
        log_round(
            ctx, server, rnd, done.losses, done.up, done.down, server.global_vec, done.compute_s
        )
        server.rounds_done = rnd
        saves.reached(server)
    flush(ctx, server, server.global_vec, timed=True)
    saves.finish()
    load_vector(ctx.model, server.global_vec)
    return run_result(ctx, pop.parts, server, diverged)
