import pytest
import torch
import torch.nn.functional as F

from sparsebench import registry
from sparsebench.engines.context import RunContext
from sparsebench.engines.federated import batched
from sparsebench.engines.federated.clients import (
    load_vector,
    model_vector,
    partition_clients,
    train_one,
    train_round,
)
from sparsebench.engines.trainer import batches, make_optimizer
from sparsebench.models.mlp import MLP
from sparsebench.seeds import all_seeds
from sparsebench.spec import Budget, Component, RunSpec


@pytest.mark.parametrize(
    "name,budget",
    [
        ("fedavg", Budget(local_steps=4, batch_size=16, optimizer="adam", lr=1e-2)),
        ("fedprox", Budget(local_steps=4, batch_size=16, optimizer="sgd", lr=0.1, momentum=0.9)),
        ("scaffold", Budget(local_steps=4, batch_size=16, optimizer="sgd", lr=0.1, momentum=0.0)),
    ],
)
def test_vmap_path_gives_the_sequential_client_models(tiny_data, name, budget):
    params = registry.make_params("federated", name, {"clients": 4, "clients_per_round": 4})
    strategy = registry.get("federated", name).obj(params, 0)
    torch.manual_seed(0)
    model = MLP(8, 16, 1, 4)
    start = model_vector(model) + 0.0
    if name == "scaffold":  # nonzero control variates so the correction is exercised
        strategy.c = 0.1 * torch.randn_like(start)
        strategy.client_c = {i: 0.1 * torch.randn_like(start) for i in range(4)}
    clients = [0, 1, 2, 3]
    shards = [(tiny_data.x_train[i::4], tiny_data.y_train[i::4]) for i in clients]
    gens = [torch.Generator().manual_seed(10 + i) for i in clients]
    assert batched.batchable(model, [len(y) for _, y in shards], budget)
    together, losses = batched.train_clients(
        model,
        start,
        shards,
        budget,
        gens,
        lambda w: strategy.gradient_correction(clients, w, start),
    )
    for i, (x, y) in zip(clients, shards, strict=True):
        loss = train_one(
            model, strategy, i, start, x, y, budget, torch.Generator().manual_seed(10 + i)
        )
        assert torch.allclose(together[i], model_vector(model), atol=1e-5)
        assert loss == pytest.approx(losses[i], rel=1e-5)


def test_unequal_batch_sizes_fall_back_to_sequential():
    model = MLP(8, 16, 1, 4)
    assert not batched.batchable(model, [8, 40], Budget(batch_size=16))
    assert batched.batchable(model, [16, 40], Budget(batch_size=16))
    assert not batched.batchable(torch.nn.BatchNorm1d(3), [16, 16], Budget(batch_size=16))


@pytest.mark.parametrize("name", ["fedprox", "scaffold", "fedavg"])
def test_a_batched_round_gives_the_sequential_rounds_client_models(tiny_data, name):
    """Through the engine's round (one setup per run, the strategy's round correction), with
    nonzero control variates for SCAFFOLD."""
    budget = Budget(local_steps=3, batch_size=16, optimizer="sgd", lr=0.1, momentum=0.0)
    out = {}
    for simulation in ("vmap", "sequential"):
        opts = {"clients": 8, "clients_per_round": 4, "partition": "iid", "simulation": simulation}
        strategy = registry.get("federated", name).obj(
            registry.make_params("federated", name, opts), 0
        )
        torch.manual_seed(0)
        model = MLP(8, 16, 1, 4)
        start = model_vector(model)
        if name == "scaffold":
            gen = torch.Generator().manual_seed(5)
            strategy.c = 0.1 * torch.randn(start.shape, generator=gen)
            strategy.client_c = {i: 0.1 * torch.randn(start.shape, generator=gen) for i in (1, 6)}
        spec = RunSpec("federated", Component(name, opts), Component("tiny"), Component("mlp"))
        ctx = RunContext(spec, tiny_data, model, strategy, budget, all_seeds(0))
        parts = partition_clients(ctx)
        out[simulation] = [train_round(ctx, parts, [1, 3, 6, 7], rnd, start) for rnd in (1, 2)]
    for (a, la), (b, lb) in zip(out["vmap"], out["sequential"], strict=True):
        assert torch.allclose(a, b, atol=1e-5)
        assert la == pytest.approx(lb, rel=1e-5)


@pytest.mark.parametrize("decay", [0.0, 0.01])
def test_the_sequential_plain_sgd_step_is_torch_optim_sgd_exactly(tiny_data, decay):
    sgd = {"optimizer": "sgd", "lr": 0.1, "momentum": 0.0, "weight_decay": decay}
    budget = Budget(local_steps=4, batch_size=16, **sgd)
    torch.manual_seed(0)
    model = MLP(8, 16, 1, 4)
    start = model_vector(model)
    x, y = tiny_data.x_train[:64], tiny_data.y_train[:64]
    params = registry.make_params("federated", "fedavg", {})
    strategy = registry.get("federated", "fedavg").obj(params, 0)
    train_one(model, strategy, 0, start, x, y, budget, torch.Generator().manual_seed(3))
    got = model_vector(model)
    load_vector(model, start)
    optimizer = make_optimizer(model.parameters(), budget)
    stream = batches(64, 16, torch.Generator().manual_seed(3))
    for _ in range(4):
        idx = next(stream)
        optimizer.zero_grad()
        F.cross_entropy(model(x[idx]), y[idx]).backward()
        optimizer.step()
    assert torch.equal(got, model_vector(model))
