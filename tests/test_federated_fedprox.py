import copy

import torch
import torch.nn.functional as F
from torch.func import functional_call, grad

from sparsebench import registry
from sparsebench.engines.context import RunContext
from sparsebench.engines.federated import run
from sparsebench.engines.federated.clients import model_vector, train_one
from sparsebench.models.mlp import MLP
from sparsebench.seeds import all_seeds
from sparsebench.spec import Budget, Component, RunSpec

BUDGET = Budget(rounds=2, local_steps=3, batch_size=16, optimizer="sgd", lr=0.1, momentum=0.0)


def _run(data, name: str, params: dict, model) -> torch.Tensor:
    method = registry.get("federated", name).obj(registry.make_params("federated", name, params), 0)
    spec = RunSpec("federated", Component(name), Component("tiny"), Component("mlp"))
    run(RunContext(spec, data, model, method, BUDGET, all_seeds(0)))
    return model_vector(model)


def test_fedprox_with_mu_zero_is_fedavg_exactly(tiny_data):
    torch.manual_seed(0)
    model = MLP(8, 16, 1, 4)
    for simulation in ("sequential", "vmap"):
        common = {"clients": 4, "clients_per_round": 2, "simulation": simulation}
        prox = _run(tiny_data, "fedprox", {**common, "mu": 0.0}, copy.deepcopy(model))
        avg = _run(tiny_data, "fedavg", common, copy.deepcopy(model))
        assert torch.equal(prox, avg)
    strong = _run(tiny_data, "fedprox", {**common, "mu": 1.0}, copy.deepcopy(model))
    assert not torch.allclose(strong, avg)


def test_fedprox_local_gradient_includes_mu_times_distance_to_global(tiny_data):
    """Two full-batch SGD steps: the second gradient gains mu (w1 - x)."""
    mu, lr = 0.5, 0.3
    torch.manual_seed(0)
    model = MLP(8, 16, 1, 4)
    names = [n for n, _ in model.named_parameters()]
    x0 = {n: p.detach().clone() for n, p in model.named_parameters()}
    strategy = registry.get("federated", "fedprox").obj(
        registry.make_params(
            "federated", "fedprox", {"clients": 1, "clients_per_round": 1, "mu": mu}
        ),
        0,
    )
    xs, ys = tiny_data.x_train, tiny_data.y_train
    budget = Budget(local_steps=2, batch_size=len(ys), optimizer="sgd", lr=lr, momentum=0.0)
    train_one(model, strategy, 0, model_vector(model), xs, ys, budget, torch.Generator())

    def loss(params):
        return F.cross_entropy(functional_call(model, params, (xs,)), ys)

    g0 = grad(loss)(x0)
    w1 = {n: x0[n] - lr * g0[n] for n in names}
    g1 = grad(loss)(w1)
    want = {n: w1[n] - lr * (g1[n] + mu * (w1[n] - x0[n])) for n in names}
    for n, p in model.named_parameters():
        assert torch.allclose(p, want[n], atol=1e-6)
