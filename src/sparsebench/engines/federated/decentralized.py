"""Loops without a server: gossip between all nodes (D-PSGD and kin) and MoDeST-style sampled
rounds whose aggregators change every round. Checkpoints hold every node's model (gossip) or
the model the next sample trains from (sampled), with the strategy's state."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from tqdm import tqdm

from sparsebench.engines.context import RunContext, slowdowns
from sparsebench.engines.federated.clients import (
    load_vector,
    message_bytes,
    model_vector,
    partition_clients,
    timed_round,
)
from sparsebench.engines.federated.record import flush, log_round, new_curves, run_result
from sparsebench.engines.federated.resume import Checkpoints, Progress
from sparsebench.seeds import derive
from sparsebench.spec import RunResult


@dataclass(kw_only=True)
class _Model(Progress):
    """The sampled-gossip loop between rounds: the model the next sample trains from."""

    model: torch.Tensor


def run_sampled(ctx: RunContext) -> RunResult:
    """MoDeST-style rounds without a server: the strategy's sample for the round trains from
    the current model and sends it to the next round's aggregators, which average the models
    and send the result to the next sample. Bytes: one fp32 model per node-to-node transfer
    (self-deliveries are free); the critical path is an aggregator's link, which receives and
    sends one model per sample member."""
    strategy, budget = ctx.method, ctx.budget
    parts = partition_clients(ctx)
    slowdown = slowdowns(ctx, ctx.method.params.clients)
    run = _Model(curves=new_curves(), model=model_vector(ctx.model))
    model_bytes = message_bytes({"model": run.model})
    saves = Checkpoints(ctx)
    saves.resume(run)
    diverged = False
    rounds = range(run.rounds_done + 1, budget.rounds + 1)
    for rnd in tqdm(rounds, desc="samples", mininterval=2.0, leave=False):
        sample = strategy.sample(rnd)
        trained, losses, compute_s = timed_round(ctx, parts, sample, rnd, run.model, slowdown)
        if not all(math.isfinite(v) for v in losses):
            diverged = True
            break
        aggregators = strategy.aggregators_of(rnd + 1)
        run.model = strategy.average(trained)
        up = model_bytes * strategy.transfers(sample, aggregators)
        following = strategy.sample(rnd + 1) if rnd < budget.rounds else []
        down = model_bytes * strategy.transfers(aggregators, following)
        run.traffic.append((2 * len(sample) * model_bytes, 2 * len(sample)))
        log_round(ctx, run, rnd, losses, up, down, run.model, compute_s)
        run.rounds_done = rnd
        saves.reached(run)
    flush(ctx, run, run.model, timed=True)
    saves.finish()
    load_vector(ctx.model, run.model)
    return run_result(ctx, parts, run, diverged)


def consensus_distance(models: torch.Tensor) -> float:
    """sqrt(mean_i ||x_i - mean_j x_j||^2): how far the nodes are from agreeing."""
    return float((models - models.mean(0)).square().sum(1).mean().sqrt())


def node_models(model: torch.nn.Module, nodes: int, init: str, seed: int) -> torch.Tensor:
    """Every node's starting vector [N, d]: copies of the model (`shared`), or one fresh
    initialisation per node (`independent`, re-running each layer's reset_parameters under its
    own seed, derived from `seed`), leaving `model` and the global RNG as they were."""
    start = model_vector(model)
    if init == "shared":
        return start.expand(nodes, -1).clone()
    rows = []
    with torch.random.fork_rng():
        for node in range(nodes):
            torch.manual_seed(derive(seed, "init", node))
            for module in model.modules():
                if hasattr(module, "reset_parameters"):
                    module.reset_parameters()
            rows.append(model_vector(model))
    load_vector(model, start)
    return torch.stack(rows)


@dataclass(kw_only=True)
class _Nodes(Progress):
    """The gossip loop between rounds: every node's model [N, d]."""

    models: torch.Tensor


def run_gossip(ctx: RunContext) -> RunResult:
    """Every node trains locally from its own model, then the strategy gossips (a strategy
    that `merges_at_end` replaces the last round's gossip by its global merge); the nodes'
    average is evaluated. Bytes: each node sends and receives its fp32 model per message, as
    counted by the strategy for the exchange just done."""
    strategy, params, budget = ctx.method, ctx.method.params, ctx.budget
    parts = partition_clients(ctx)
    slowdown = slowdowns(ctx, ctx.method.params.clients)
    nodes = list(range(params.clients))
    run = _Nodes(
        curves={**new_curves(), "consensus_distance": []},
        models=node_models(ctx.model, params.clients, params.init, ctx.seeds["init"]),
    )
    model_bytes = message_bytes({"model": run.models[0]})
    layout = [p.numel() for p in ctx.model.parameters()]
    saves = Checkpoints(ctx)
    saves.resume(run)
    diverged = False
    rounds = range(run.rounds_done + 1, budget.rounds + 1)
    for rnd in tqdm(rounds, desc="gossip", mininterval=2.0, leave=False):
        models, losses, compute_s = timed_round(ctx, parts, nodes, rnd, run.models, slowdown)
        if not all(math.isfinite(v) for v in losses):
            diverged = True
            break
        if strategy.merges_at_end and rnd == budget.rounds:
            run.models = strategy.merge(models)
        else:
            run.models = strategy.gossip(models, layout)
        sent = sum(strategy.messages_per_node()) * model_bytes
        run.traffic.append((max(strategy.messages_per_node()) * model_bytes, 2))
        if log_round(ctx, run, rnd, losses, sent, sent, run.models.mean(0), compute_s):
            run.curves["consensus_distance"].append(consensus_distance(run.models))
        run.rounds_done = rnd
        saves.reached(run)
    if flush(ctx, run, run.models.mean(0), timed=True):
        run.curves["consensus_distance"].append(consensus_distance(run.models))
    saves.finish()
    load_vector(ctx.model, run.models.mean(0))
    result = run_result(ctx, parts, run, diverged)
    if run.curves["consensus_distance"]:
        result.metrics["consensus_distance"] = run.curves["consensus_distance"][-1]
    return result
