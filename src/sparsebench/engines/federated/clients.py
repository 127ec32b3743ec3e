"""What every federated loop does with clients: the partition, the Byzantine set, local training
(set up once per run in `local`: sequential on one reused model, or vmap-batched in `batched`),
what the clients upload together, and the bytes a message takes.

Bytes are counted per client and direction as the serialized payloads of every broadcast and
uploaded tensor (fp32 values, raw integer buffers), from their sizes alone.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch
from torch.nn.utils import parameters_to_vector

from sparsebench import registry
from sparsebench.comm.attacks import attack, attack_round
from sparsebench.data.base import Dataset
from sparsebench.data.partition import dirichlet, iid, natural, shards, write_manifest
from sparsebench.engines.context import RunContext, parallel_compute
from sparsebench.engines.federated.local import local_training
from sparsebench.engines.federated.plans import draws
from sparsebench.engines.federated.sequential import SequentialTrainer
from sparsebench.methods.federated.base import FederatedParams, Message, Strategy, Uploads
from sparsebench.seeds import all_seeds
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
    """Bytes of a message: floating tensors are sent as fp32 payloads, one per tensor (what
    `Identity().compress(t).nbytes` counts: 4 bytes a value, without building the payload);
    integer tensors (a compressor's indices or bit-packed codes) as their own raw buffers."""
    return sum(
        t.numel() * (4 if t.is_floating_point() else t.element_size()) for t in message.values()
    )


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
    """`local_steps` minibatch steps (drawn from `generator` as `trainer.batches` draws them)
    with a fresh optimizer from the global model, adding the strategy's gradient correction
    (and taking the gradient at the SAM-perturbed point when the strategy asks for it); leaves
    the model at the result and returns the mean loss, NaN if it stopped being finite."""
    trainer = SequentialTrainer(model, budget, strategy.sam_rho, flat=False)
    plan = draws(len(y), min(budget.batch_size, len(y)), budget.local_steps, generator)
    correction = strategy.local_correction([client], global_vec)
    step_correction = None if correction is None else (lambda w: correction(w, slice(None)))
    model.train()
    return trainer.client(global_vec, x, y, plan, step_correction)


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
    `start` is the global vector [d] or one start per client [C, d] (decentralized nodes).
    The run's training setup is built on the first call and reused (`local.local_training`)."""
    return local_training(ctx, parts).train(sampled, rnd, start)


def upload(ctx, client, global_vec, local, byzantine: bool, attacker) -> Message:
    """The client's message, with its update replaced by the attack if it is Byzantine."""
    strategy, params, budget = ctx.method, ctx.method.params, ctx.budget
    msg = strategy.client_message(client, global_vec, local, budget.local_steps, budget.lr)
    if byzantine:
        msg["delta"] = attack(msg["delta"], params.attack, params.attack_scale, attacker)
    return msg


def upload_round(ctx, clients, starts, trained, byzantine, attacker) -> list[Message]:
    """The messages of clients uploading together; the Byzantine ones replace their updates
    through `attack_round`, so the omniscient attacks (ALIE, IPM) see the round's honest ones.
    `trained` (a [C, d] tensor, or a list) is consumed: the messages may reuse its storage."""
    strategy, params, budget = ctx.method, ctx.method.params, ctx.budget
    msgs = strategy.client_messages(
        Uploads(clients, starts, trained, budget.local_steps, budget.lr)
    )
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
