import pytest
import torch

from sparsebench import registry
from sparsebench.engines.federated import batched
from sparsebench.engines.federated.clients import model_vector, train_one
from sparsebench.models.mlp import MLP
from sparsebench.spec import Budget


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
