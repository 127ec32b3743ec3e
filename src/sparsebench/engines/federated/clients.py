"""What every federated loop does with clients: the partition, the Byzantine set, local training
(sequential on one reused model, or vmap-batched in `batched`), what a client uploads, and the
bytes a message takes.

Bytes are counted per client and direction from the fp32 payloads of every broadcast and
uploaded tensor.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.nn.utils import parameters_to_vector

from sparsebench import registry
from sparsebench.comm.attacks import attack, attack_round
from sparsebench.comm.compressors import Identity
from sparsebench.data.base import Dataset
from sparsebench.data.partition import dirichlet, iid, natural, shards, write_manifest
from sparsebench.engines.context import RunContext, parallel_compute
from sparsebench.engines.federated import batched
from sparsebench.engines.trainer import batches, make_optimizer
from sparsebench.methods.federated.base import FederatedParams, Message, Strategy
from sparsebench.seeds import all_seeds, derive
from sparsebench.spec import Budget, RunSpec


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
    order = torch.randperm(clients, generator=torch.Generator().manual_seed(seed))
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
    return derive(ctx.seeds["root"], "data", rnd, client)


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


def timed_round(
    ctx: RunContext,
    parts: list[torch.Tensor],
    sampled: list[int],
    rnd: int,
    start: torch.Tensor,
    slowdown: torch.Tensor,
) -> tuple[torch.Tensor, list[float], float]:
    """`train_round` and the round's compute time on the clients' own devices: they train in
    parallel on equal work (the same local steps and batch), each for the measured time of the
    round divided by the clients (the simulation runs them together or in turn) times its
    device's `slowdown`; the round lasts as long as the slowest."""
    started = time.perf_counter()
    trained, losses = train_round(ctx, parts, sampled, rnd, start)
    share = (time.perf_counter() - started) / max(len(sampled), 1)
    factors = [float(slowdown[c]) for c in sampled]
    return trained, losses, parallel_compute([share] * len(sampled), factors)


def train_round(
    ctx: RunContext, parts: list[torch.Tensor], sampled: list[int], rnd: int, start: torch.Tensor
) -> tuple[torch.Tensor, list[float]]:
    """Trained vectors [C, d] and mean losses of the sampled clients, batched when possible.
    `start` is the global vector [d] or one start per client [C, d] (decentralized nodes)."""
    model, data, budget, strategy = ctx.model, ctx.data, ctx.budget, ctx.method
    gens = [_client_generator(ctx, rnd, c) for c in sampled]
    local = [(data.x_train[parts[c]], data.y_train[parts[c]]) for c in sampled]
    if strategy.params.simulation == "vmap" and batched.batchable(
        model, [len(y) for _, y in local], budget
    ):

        def correction(w: torch.Tensor) -> torch.Tensor | None:
            if not strategy.corrects_gradient:
                return None
            return strategy.gradient_correction(sampled, w, start)

        return batched.train_clients(
            model, start, local, budget, gens, correction, strategy.sam_rho
        )
    starts = start.expand(len(sampled), -1)
    vecs, losses = [], []
    for client, (x, y), gen, s in zip(sampled, local, gens, starts, strict=True):
        losses.append(train_one(model, strategy, client, s, x, y, budget, gen))
        vecs.append(model_vector(model))
    return torch.stack(vecs), losses


def upload(ctx, client, global_vec, local, byzantine: bool, attacker) -> Message:
    """The client's message, with its update replaced by the attack if it is Byzantine."""
    strategy, params, budget = ctx.method, ctx.method.params, ctx.budget
    msg = strategy.client_message(client, global_vec, local, budget.local_steps, budget.lr)
    if byzantine:
        msg["delta"] = attack(msg["delta"], params.attack, params.attack_scale, attacker)
    return msg


def upload_round(ctx, clients, starts, trained, byzantine, attacker) -> list[Message]:
    """The messages of clients uploading together; the Byzantine ones replace their updates
    through `attack_round`, so the omniscient attacks (ALIE, IPM) see the round's honest ones."""
    strategy, params, budget = ctx.method, ctx.method.params, ctx.budget
    msgs = [
        strategy.client_message(c, s, y, budget.local_steps, budget.lr)
        for c, s, y in zip(clients, starts, trained, strict=True)
    ]
    flags = [c in byzantine for c in clients]
    if any(flags):
        deltas = torch.stack([m["delta"] for m in msgs])
        attacked = attack_round(
            deltas,
            flags,
            params.attack,
            params.attack_scale,
            attacker,
            epsilon=params.ipm_epsilon,
            z=params.alie_z,
        )
        for m, d in zip(msgs, attacked, strict=True):
            m["delta"] = d
    return msgs
