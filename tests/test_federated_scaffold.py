import torch

from sparsebench import registry
from sparsebench.engines.context import RunContext
from sparsebench.engines.federated import run
from sparsebench.models.mlp import MLP
from sparsebench.seeds import all_seeds
from sparsebench.spec import Budget, Component, RunSpec


def _strategy(name: str, clients: int):
    params = registry.make_params(
        "federated", name, {"clients": clients, "clients_per_round": clients}
    )
    return registry.get("federated", name).obj(params, 0)


def _quadratic_rounds(strategy, a, b, rounds: int, steps: int, lr: float) -> torch.Tensor:
    """Full participation on f_i(w) = 1/2 sum_j a_ij (w_j - b_ij)^2, exact local gradients."""
    x = torch.zeros(a.shape[1])
    clients = list(range(a.shape[0]))
    for _ in range(rounds):
        messages = []
        for i in clients:
            y = x.clone()
            for _ in range(steps):
                extra = strategy.gradient_correction([i], y[None], x)
                g = a[i] * (y - b[i]) + (0 if extra is None else extra[0])
                y = y - lr * g
            messages.append(strategy.client_message(i, x, y, steps, lr))
        x = strategy.aggregate(x, messages, [1] * len(clients))
    return x


def test_scaffold_reaches_the_global_optimum_where_fedavg_stays_biased():
    g = torch.Generator().manual_seed(0)
    a = torch.rand(4, 5, generator=g) * 2 + 0.2
    b = torch.randn(4, 5, generator=g) * 3
    optimum = (a * b).sum(0) / a.sum(0)
    scaffold = _quadratic_rounds(_strategy("scaffold", 4), a, b, rounds=60, steps=5, lr=0.1)
    fedavg = _quadratic_rounds(_strategy("fedavg", 4), a, b, rounds=60, steps=5, lr=0.1)
    assert torch.allclose(scaffold, optimum, atol=1e-4)
    assert (fedavg - optimum).abs().max() > 1e-2


def test_scaffold_sends_twice_fedavg_bytes_each_way(tiny_data):
    budget = Budget(rounds=2, local_steps=2, batch_size=16, optimizer="sgd", lr=0.1)
    bytes_ = {}
    for name in ("fedavg", "scaffold"):
        params = registry.make_params("federated", name, {"clients": 4, "clients_per_round": 2})
        method = registry.get("federated", name).obj(params, 0)
        spec = RunSpec("federated", Component(name), Component("tiny"), Component("mlp"))
        ctx = RunContext(spec, tiny_data, MLP(8, 16, 1, 4), method, budget, all_seeds(0))
        bytes_[name] = run(ctx).costs["bytes"]
    assert bytes_["scaffold"]["up"] == 2 * bytes_["fedavg"]["up"]
    assert bytes_["scaffold"]["down"] == 2 * bytes_["fedavg"]["down"]
