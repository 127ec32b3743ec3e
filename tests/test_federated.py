import copy

import pytest
import torch
import torch.nn.functional as F

from sparsebench import registry
from sparsebench.data.partition import dirichlet, iid, manifest_hash
from sparsebench.engines.context import RunContext
from sparsebench.engines.federated import run as run_federated
from sparsebench.models.mlp import MLP
from sparsebench.seeds import all_seeds
from sparsebench.spec import Budget, Component, RunSpec


@pytest.mark.parametrize(
    "make",
    [
        lambda y: iid(len(y), 7, seed=3),
        lambda y: dirichlet(y, 7, alpha=0.3, seed=3),
    ],
)
def test_partition_covers_every_sample_once_and_is_reproducible(make):
    y = torch.arange(500) % 10
    parts = make(y)
    assert sorted(torch.cat(parts).tolist()) == list(range(500))
    assert manifest_hash(parts) == manifest_hash(make(y))


def test_dirichlet_small_alpha_skews_labels_more_than_large_alpha():
    y = torch.arange(2000) % 10

    def skew(alpha: float) -> float:
        parts = dirichlet(y, 10, alpha, seed=0)
        return sum(torch.bincount(y[p], minlength=10).float().std().item() / len(p) for p in parts)

    assert skew(0.1) > skew(100.0)


def test_fedavg_with_one_full_batch_step_equals_centralized_gd(tiny_data):
    """Full participation, IID equal shards, one local full-batch SGD step per round."""
    clients, lr = 4, 0.5
    params = registry.make_params(
        "federated",
        "fedavg",
        {"clients": clients, "clients_per_round": clients, "partition": "iid"},
    )
    torch.manual_seed(0)
    model = MLP(8, 16, 1, 4)
    reference = copy.deepcopy(model)
    budget = Budget(
        rounds=1,
        local_steps=1,
        batch_size=len(tiny_data.y_train) // clients,
        optimizer="sgd",
        lr=lr,
        momentum=0.0,
    )
    spec = RunSpec("federated", Component("fedavg"), Component("tiny"), Component("mlp"))
    ctx = RunContext(
        spec,
        tiny_data,
        model,
        registry.get("federated", "fedavg").obj(params, 0),
        budget,
        all_seeds(0),
    )
    run_federated(ctx)
    loss = F.cross_entropy(reference(tiny_data.x_train), tiny_data.y_train)
    loss.backward()
    with torch.no_grad():
        for p in reference.parameters():
            p -= lr * p.grad
    for got, want in zip(model.parameters(), reference.parameters(), strict=True):
        assert torch.allclose(got, want, atol=1e-5)


def test_fedavg_counts_fp32_model_bytes_each_way(tiny_data):
    params = registry.make_params("federated", "fedavg", {"clients": 4, "clients_per_round": 2})
    model = MLP(8, 16, 1, 4)
    numel = sum(p.numel() for p in model.parameters())
    spec = RunSpec("federated", Component("fedavg"), Component("tiny"), Component("mlp"))
    ctx = RunContext(
        spec,
        tiny_data,
        model,
        registry.get("federated", "fedavg").obj(params, 0),
        Budget(rounds=3, local_steps=2, batch_size=16, optimizer="sgd", lr=0.1),
        all_seeds(0),
    )
    result = run_federated(ctx)
    assert result.costs["bytes"] == {"up": 3 * 2 * 4 * numel, "down": 3 * 2 * 4 * numel}
