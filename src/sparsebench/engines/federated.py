"""Federated simulation: all clients in one process, sequentially on one reused model or as one
vmap-batched computation (engines/federated_batched.py).

Each round the engine samples clients (from the method's seed stream); every sampled client
downloads the strategy's broadcast, runs `local_steps` minibatch steps (the strategy may add a
correction to each gradient), and uploads the strategy's message; Byzantine clients replace
their update with an attack; the strategy aggregates. Bytes are counted per client and direction
from the fp32 payloads of every broadcast and uploaded tensor. Two other loops share the client
training: `run_decentralized` (no server: every node trains, then the strategy gossips; the
nodes' consensus distance is logged) and `run_async` (a simulated clock, FedBuff-style).
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.nn.utils import parameters_to_vector
from tqdm import tqdm

from sparsebench import registry
from sparsebench.comm.compressors import Identity
from sparsebench.data.base import Dataset
from sparsebench.data.partition import (
    dirichlet,
    iid,
    label_skew,
    manifest_hash,
    natural,
    shards,
    write_manifest,
)
from sparsebench.engines import federated_batched
from sparsebench.engines.context import RunContext, model_costs
from sparsebench.engines.trainer import batches, make_optimizer
from sparsebench.methods.federated.base import FederatedParams, Message, Strategy
from sparsebench.methods.federated.robust import attack
from sparsebench.metrics import evaluate, final_metrics
from sparsebench.seeds import all_seeds
from sparsebench.spec import Budget, RunResult, RunSpec


@torch.no_grad()
def load_vector(model: torch.nn.Module, vec: torch.Tensor) -> None:
    """Copy a flat vector into the model's parameters in place (never aliasing `vec`)."""
    offset = 0
    for p in model.parameters():
        p.copy_(vec[offset : offset + p.numel()].view_as(p))
        offset += p.numel()


def model_vector(model: torch.nn.Module) -> torch.Tensor:
    return parameters_to_vector(model.parameters()).detach().clone()


def partition_clients(ctx: RunContext) -> list[torch.Tensor]:
    owner = ctx.data.meta.get("train_client")
    return partition_for(ctx.method.params, ctx.data.y_train, ctx.seeds["partition"], owner)


def partition_for(
    p: FederatedParams, y: torch.Tensor, seed: int, owner: torch.Tensor | None = None
) -> list[torch.Tensor]:
    """The clients' sample indices for a strategy's params (also usable outside a run, e.g. to
    write the partition manifest as a workflow output). `natural` takes each sample's client from
    the dataset (`owner`, e.g. a Shakespeare speaking role)."""
    if p.partition == "natural":
        return natural(owner, p.clients)
    if p.partition == "iid":
        return iid(len(y), p.clients, seed)
    if p.partition == "shards":
        return shards(y, p.clients, p.classes_per_client, seed)
    return dirichlet(y, p.clients, p.alpha, seed)


def write_partition_manifest(spec: RunSpec, data: Dataset, path: str | Path) -> str:
    """Write the partition a federated run of `spec` will use as a checksummed JSON manifest
    (for a workflow to keep as an output); returns its sha256, which the run also records."""
    params = registry.make_params("federated", spec.method.name, spec.method.params)
    seed = all_seeds(spec.seed)["partition"]
    parts = partition_for(params, data.y_train, seed, data.meta.get("train_client"))
    scheme = {
        "dataset": spec.dataset.label(),
        "partition": params.partition,
        "clients": params.clients,
        "alpha": params.alpha,
        "classes_per_client": params.classes_per_client,
    }
    return write_manifest(parts, path, scheme, seed)


def byzantine_clients(clients: int, fraction: float, seed: int) -> set[int]:
    """A fixed, seeded set of round(fraction * clients) Byzantine clients."""
    order = torch.randperm(clients, generator=torch.Generator().manual_seed(seed + 7919))
    return set(order[: round(fraction * clients)].tolist())


def message_bytes(message: Message) -> int:
    """Bytes of a message: floating tensors are sent as fp32 payloads, one per tensor; integer
    tensors (a compressor's indices or bit-packed codes) as their own raw buffers."""
    codec = Identity()
    return sum(
        codec.compress(t).nbytes if t.is_floating_point() else t.numel() * t.element_size()
        for t in message.values()
    )


def client_seed(ctx: RunContext, rnd: int, client: int) -> int:
    """The seed of a client's minibatch order in a round (any process can rebuild it)."""
    return ctx.seeds["data"] + rnd * 100_003 + client


def _client_generator(ctx: RunContext, rnd: int, client: int) -> torch.Generator:
    return torch.Generator().manual_seed(client_seed(ctx, rnd, client))


def train_one(
    model: torch.nn.Module,
    strategy: Strategy,
    client: int,
    global_vec: torch.Tensor,
    x: torch.Tensor,
    y: torch.Tensor,
    budget: Budget,
    generator: torch.Generator,
) -> float:
    """`local_steps` minibatch steps with a fresh optimizer from the global model, adding the
    strategy's gradient correction (and taking the gradient at the SAM-perturbed point when the
    strategy asks for it); returns the mean loss, NaN if it stopped being finite."""
    load_vector(model, global_vec)
    optimizer = make_optimizer(model.parameters(), budget)
    index_stream = batches(len(y), min(budget.batch_size, len(y)), generator)
    model.train()
    total = 0.0
    for _ in range(budget.local_steps):
        idx = next(index_stream)
        loss = F.cross_entropy(model(x[idx]), y[idx])
        if not math.isfinite(loss.item()):
            return math.nan
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if strategy.sam_rho > 0:
            _sam_gradient(model, optimizer, x[idx], y[idx], strategy.sam_rho)
        if strategy.corrects_gradient:
            extra = strategy.gradient_correction([client], model_vector(model)[None], global_vec)
            _add_to_grads(model, extra[0])
        optimizer.step()
        total += loss.item()
    return total / max(budget.local_steps, 1)


def _sam_gradient(model, optimizer, x: torch.Tensor, y: torch.Tensor, rho: float) -> None:
    """Replace the gradient g at w by the gradient at w + rho g / ||g|| (sharpness-aware
    minimisation, Foret et al. 2021), leaving the weights at w."""
    params = [p for p in model.parameters() if p.grad is not None]
    with torch.no_grad():
        g = torch.cat([p.grad.flatten() for p in params])
        scale = rho / (g.norm() + 1e-12)
        shifts = [scale * p.grad for p in params]
        for p, e in zip(params, shifts, strict=True):
            p.add_(e)
    optimizer.zero_grad(set_to_none=True)
    F.cross_entropy(model(x), y).backward()
    with torch.no_grad():
        for p, e in zip(params, shifts, strict=True):
            p.sub_(e)


@torch.no_grad()
def _add_to_grads(model: torch.nn.Module, vec: torch.Tensor) -> None:
    offset = 0
    for p in model.parameters():
        p.grad.add_(vec[offset : offset + p.numel()].view_as(p))
        offset += p.numel()


def train_round(
    ctx: RunContext, parts: list[torch.Tensor], sampled: list[int], rnd: int, start: torch.Tensor
) -> tuple[torch.Tensor, list[float]]:
    """Trained vectors [C, d] and mean losses of the sampled clients, batched when possible.
    `start` is the global vector [d] or one start per client [C, d] (decentralized nodes)."""
    model, data, budget, strategy = ctx.model, ctx.data, ctx.budget, ctx.method
    gens = [_client_generator(ctx, rnd, c) for c in sampled]
    local = [(data.x_train[parts[c]], data.y_train[parts[c]]) for c in sampled]
    if strategy.params.simulation == "vmap" and federated_batched.batchable(
        model, [len(y) for _, y in local], budget
    ):

        def correction(w: torch.Tensor) -> torch.Tensor | None:
            if not strategy.corrects_gradient:
                return None
            return strategy.gradient_correction(sampled, w, start)

        return federated_batched.train_clients(
            model, start, local, budget, gens, correction, strategy.sam_rho
        )
    starts = start.expand(len(sampled), -1)
    vecs, losses = [], []
    for client, (x, y), gen, s in zip(sampled, local, gens, starts, strict=True):
        losses.append(train_one(model, strategy, client, s, x, y, budget, gen))
        vecs.append(model_vector(model))
    return torch.stack(vecs), losses


EVAL_BATCH = 1000


def _hits(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-sample accuracy (the mean over tokens for sequence targets)."""
    hits = (logits.argmax(1) == target).float()
    return hits.flatten(1).mean(1) if hits.dim() > 1 else hits


def client_accuracy(ctx: RunContext, parts: list[torch.Tensor]) -> dict[str, float]:
    """The global model's accuracy on each client's own training data: mean, spread, worst 10%."""
    x, y = ctx.data.x_train, ctx.data.y_train
    with torch.no_grad():
        ctx.model.eval()
        correct = torch.cat(
            [
                _hits(ctx.model(x[i : i + EVAL_BATCH]), y[i : i + EVAL_BATCH])
                for i in range(0, len(y), EVAL_BATCH)
            ]
        )
    accs = torch.stack([correct[p].mean() for p in parts])
    return {
        "client_acc_mean": float(accs.mean()),
        "client_acc_std": float(accs.std()) if len(parts) > 1 else 0.0,
        "client_acc_p10": float(accs.quantile(0.1)),
    }


def _new_curves() -> dict[str, list]:
    keys = ("round", "train_loss", "test_loss", "test_acc", "bytes_up", "bytes_down")
    return {k: [] for k in (*keys, "bytes_total")}


def _log_round(ctx, curves, rnd, losses, up, down) -> None:
    ev = evaluate(ctx.model, ctx.data.x_test, ctx.data.y_test)
    total = (curves["bytes_total"][-1] if curves["bytes_total"] else 0) + up + down
    row = {
        "round": rnd,
        "train_loss": sum(losses) / len(losses),
        "test_loss": ev["loss"],
        "test_acc": ev["acc"],
        "bytes_up": up,
        "bytes_down": down,
        "bytes_total": total,
    }
    for key, value in row.items():
        curves[key].append(value)


def run(ctx: RunContext) -> RunResult:
    """Server rounds: sample, train locally, attack (Byzantine clients), aggregate, evaluate.
    Decentralized strategies (no server) go to `run_decentralized`."""
    if ctx.method.decentralized:
        return run_decentralized(ctx)
    if getattr(ctx.method, "fixed_interval", False):
        return run_fixed_interval(ctx)
    if getattr(ctx.method, "sampled_decentralized", False):
        return run_sampled_decentralized(ctx)
    if ctx.method.asynchronous:
        return run_async(ctx)
    strategy, params, budget = ctx.method, ctx.method.params, ctx.budget
    parts = partition_clients(ctx)
    sampler = torch.Generator().manual_seed(ctx.seeds["method"])
    attacker = torch.Generator().manual_seed(ctx.seeds["method"] + 1)
    byzantine = byzantine_clients(params.clients, params.byzantine_fraction, ctx.seeds["method"])
    global_vec = model_vector(ctx.model)
    curves = _new_curves()
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
            _upload(ctx, client, global_vec, local, client in byzantine, attacker)
            for client, local in zip(sampled, trained, strict=True)
        ]
        up = sum(message_bytes(m) for m in messages)
        global_vec = strategy.aggregate(global_vec, messages, [len(parts[c]) for c in sampled])
        traffic.append((down_each + up // len(sampled), 2))
        load_vector(ctx.model, global_vec)
        _log_round(ctx, curves, rnd, losses, up, down_each * len(sampled))
    load_vector(ctx.model, global_vec)
    return _result(ctx, parts, curves, traffic, diverged)


def _upload(ctx, client, global_vec, local, byzantine: bool, attacker) -> Message:
    """The client's message, with its update replaced by the attack if it is Byzantine."""
    strategy, params, budget = ctx.method, ctx.method.params, ctx.budget
    msg = strategy.client_message(client, global_vec, local, budget.local_steps, budget.lr)
    if byzantine:
        msg["delta"] = attack(msg["delta"], params.attack, params.attack_scale, attacker)
    return msg


@dataclass(order=True)
class _Job:
    finish: float
    order: int
    client: int = field(compare=False)
    version: int = field(compare=False)
    start: torch.Tensor = field(compare=False)
    trained: torch.Tensor = field(compare=False)
    loss: float = field(compare=False)


def _async_setup(ctx: RunContext):
    """What both asynchronous loops draw from the run's seeds: the partition, the client
    sampler, the attack noise, the Byzantine set and the client speeds."""
    params, seed = ctx.method.params, ctx.seeds["method"]
    return (
        partition_clients(ctx),
        torch.Generator().manual_seed(seed),
        torch.Generator().manual_seed(seed + 1),
        byzantine_clients(params.clients, params.byzantine_fraction, seed),
        ctx.method.client_speeds(seed + 2),
    )


def run_async(ctx: RunContext) -> RunResult:
    """Simulated-clock asynchronous rounds (FedBuff-style): `clients_per_round` clients in
    flight; finished updates are buffered with their staleness; the strategy steps once per full
    buffer. A budget round is one server step. Clients finishing at the same instant are all
    buffered before idle clients are started on the current model."""
    strategy, params, budget = ctx.method, ctx.method.params, ctx.budget
    parts, sampler, attacker, byzantine, speeds = _async_setup(ctx)
    global_vec = model_vector(ctx.model)
    model_bytes = message_bytes({"model": global_vec})
    curves = {**_new_curves(), "sim_time": []}
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
            msg = _upload(
                ctx, job.client, job.start, job.trained, job.client in byzantine, attacker
            )
            state["up"] += message_bytes(msg)
            buffer.append((msg["delta"], state["version"] - job.version, job.loss))
            if len(buffer) == strategy.params.buffer_size:
                deltas, stale, losses = (list(t) for t in zip(*buffer, strict=True))
                global_vec = strategy.aggregate_buffer(global_vec, deltas, stale)
                state["version"] += 1
                buffer.clear()
                load_vector(ctx.model, global_vec)
                _log_round(ctx, curves, state["version"], losses, state["up"], state["down"])
                curves["sim_time"].append(now)
                traffic.append((2 * model_bytes, 2))
                state["up"] = state["down"] = 0
                if state["version"] == budget.rounds:
                    break
        if state["version"] < budget.rounds and not diverged:
            dispatch(len(finished), now)
    load_vector(ctx.model, global_vec)
    return _result(ctx, parts, curves, traffic, diverged)


def run_fixed_interval(ctx: RunContext) -> RunResult:
    """Simulated-clock FedFix rounds: a seeded set of `clients_per_round` clients works without
    pause; at every multiple of the strategy's interval the server merges the updates of the
    clients that finished since the last merge and sends them the new model, while the others
    keep training on the version they hold. A budget round is one interval; an interval in
    which nobody finished leaves the model as it is and is not logged."""
    strategy, params, budget = ctx.method, ctx.method.params, ctx.budget
    parts, sampler, attacker, byzantine, speeds = _async_setup(ctx)
    active = sorted(torch.randperm(params.clients, generator=sampler)[: params.clients_per_round])
    active = [int(c) for c in active]
    strategy.set_population(active, [len(parts[c]) for c in active])
    interval = strategy.interval_length(budget.local_steps)
    global_vec = model_vector(ctx.model)
    model_bytes = message_bytes({"model": global_vec})
    curves = {**_new_curves(), "sim_time": []}
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
        msgs = [_upload(ctx, c, jobs[c][1], jobs[c][2], c in byzantine, attacker) for c in done]
        up = sum(message_bytes(m) for m in msgs)
        deltas = [m["delta"] for m in msgs]
        global_vec = strategy.aggregate_interval(global_vec, deltas, done, budget.local_steps)
        load_vector(ctx.model, global_vec)
        sending = done if rnd < budget.rounds else []
        down += model_bytes * len(sending)
        _log_round(ctx, curves, rnd, losses, up, down)
        curves["sim_time"].append(now)
        traffic.append((2 * model_bytes, 2))
        down = 0
        if sending:
            dispatch(sending, now, rnd + 1)
    load_vector(ctx.model, global_vec)
    return _result(ctx, parts, curves, traffic, diverged)


def run_sampled_decentralized(ctx: RunContext) -> RunResult:
    """MoDeST-style rounds without a server: the strategy's sample for the round trains from
    the current model and sends it to the next round's aggregators, which average the models
    and send the result to the next sample. Bytes: one fp32 model per node-to-node transfer
    (self-deliveries are free); the critical path is an aggregator's link, which receives and
    sends one model per sample member."""
    strategy, budget = ctx.method, ctx.budget
    parts = partition_clients(ctx)
    model = model_vector(ctx.model)
    model_bytes = message_bytes({"model": model})
    curves = _new_curves()
    traffic: list[tuple[int, int]] = []
    diverged = False
    for rnd in tqdm(range(1, budget.rounds + 1), desc="samples", mininterval=2.0, leave=False):
        sample = strategy.sample(rnd)
        trained, losses = train_round(ctx, parts, sample, rnd, model)
        if not all(math.isfinite(v) for v in losses):
            diverged = True
            break
        aggregators = strategy.aggregators_of(rnd + 1)
        model = strategy.average(trained)
        up = model_bytes * strategy.transfers(sample, aggregators)
        following = strategy.sample(rnd + 1) if rnd < budget.rounds else []
        down = model_bytes * strategy.transfers(aggregators, following)
        traffic.append((2 * len(sample) * model_bytes, 2 * len(sample)))
        load_vector(ctx.model, model)
        _log_round(ctx, curves, rnd, losses, up, down)
    load_vector(ctx.model, model)
    return _result(ctx, parts, curves, traffic, diverged)


def consensus_distance(models: torch.Tensor) -> float:
    """sqrt(mean_i ||x_i - mean_j x_j||^2): how far the nodes are from agreeing."""
    return float((models - models.mean(0)).square().sum(1).mean().sqrt())


def node_models(model: torch.nn.Module, nodes: int, init: str, seed: int) -> torch.Tensor:
    """Every node's starting vector [N, d]: copies of the model (`shared`), or one fresh
    initialisation per node (`independent`, re-running each layer's reset_parameters under its
    own seed), leaving `model` and the global RNG as they were."""
    start = model_vector(model)
    if init == "shared":
        return start.expand(nodes, -1).clone()
    rows = []
    with torch.random.fork_rng():
        for node in range(nodes):
            torch.manual_seed(seed + 1 + node)
            for module in model.modules():
                if hasattr(module, "reset_parameters"):
                    module.reset_parameters()
            rows.append(model_vector(model))
    load_vector(model, start)
    return torch.stack(rows)


def run_decentralized(ctx: RunContext) -> RunResult:
    """Every node trains locally from its own model, then the strategy gossips (a strategy
    that `merges_at_end` replaces the last round's gossip by its global merge); the nodes'
    average is evaluated. Bytes: each node sends and receives its fp32 model per message, as
    counted by the strategy for the exchange just done."""
    strategy, params, budget = ctx.method, ctx.method.params, ctx.budget
    parts = partition_clients(ctx)
    nodes = list(range(params.clients))
    models = node_models(ctx.model, params.clients, params.init, ctx.seeds["init"])
    model_bytes = message_bytes({"model": models[0]})
    layout = [p.numel() for p in ctx.model.parameters()]
    merges_at_end = getattr(strategy, "merges_at_end", False)
    curves = {**_new_curves(), "consensus_distance": []}
    traffic: list[tuple[int, int]] = []
    diverged = False
    for rnd in tqdm(range(1, budget.rounds + 1), desc="gossip", mininterval=2.0, leave=False):
        models, losses = train_round(ctx, parts, nodes, rnd, models)
        if not all(math.isfinite(v) for v in losses):
            diverged = True
            break
        if merges_at_end and rnd == budget.rounds:
            models = strategy.merge(models)
        else:
            models = strategy.gossip(models, layout)
        sent = sum(strategy.messages_per_node()) * model_bytes
        traffic.append((max(strategy.messages_per_node()) * model_bytes, 2))
        load_vector(ctx.model, models.mean(0))
        _log_round(ctx, curves, rnd, losses, sent, sent)
        curves["consensus_distance"].append(consensus_distance(models))
    load_vector(ctx.model, models.mean(0))
    result = _result(ctx, parts, curves, traffic, diverged)
    if curves["consensus_distance"]:
        result.metrics["consensus_distance"] = curves["consensus_distance"][-1]
    return result


def _result(ctx, parts, curves, traffic, diverged) -> RunResult:
    budget, params = ctx.budget, ctx.method.params
    active = params.clients if ctx.method.decentralized else params.clients_per_round
    samples = budget.rounds * active * budget.local_steps * budget.batch_size
    costs = model_costs(ctx, samples)
    costs["bytes"] = {"up": sum(curves["bytes_up"]), "down": sum(curves["bytes_down"])}
    metrics = {}
    if curves["round"]:
        metrics = {
            **final_metrics(curves, ctx.data.language_model),
            **client_accuracy(ctx, parts),
        }
    metrics["label_skew"] = label_skew(ctx.data.y_train, parts, ctx.data.num_classes)
    costs["partition"] = {"sha256": manifest_hash(parts), "client_sizes": [len(p) for p in parts]}
    return RunResult(
        metrics=metrics,
        curves=curves,
        costs=costs,
        status="diverged" if diverged else "ok",
        traffic=traffic,
    )
