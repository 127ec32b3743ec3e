import torch

from sparsebench import registry
from sparsebench.engines.context import RunContext
from sparsebench.engines.federated import run
from sparsebench.models.mlp import MLP
from sparsebench.seeds import all_seeds
from sparsebench.spec import Budget, Component, RunSpec

SCHEDULE = [[0, 1], [2, 3], [1, 2], [3, 0]] * 5  # partial participation, 2 of 4 per round


def _strategy(name: str, opts: dict):
    params = registry.make_params("federated", name, {"clients": 4, "clients_per_round": 2, **opts})
    return registry.get("federated", name).obj(params, 0)


def _quadratic_rounds(strategy, a, b, steps: int = 3, lr: float = 0.1) -> torch.Tensor:
    """f_i(w) = 1/2 sum_j a_ij (w_j - b_ij)^2 with exact gradients, clients from SCHEDULE."""
    x = torch.zeros(a.shape[1])
    for sampled in SCHEDULE:
        messages = []
        for i in sampled:
            y = x.clone()
            for _ in range(steps):
                y = y - lr * (a[i] * (y - b[i]) + strategy.gradient_correction([i], y[None], x)[0])
            messages.append(strategy.client_message(i, x, y, steps, lr))
        x = strategy.aggregate(x, messages, [1] * len(sampled))
    return x


def _problem():
    g = torch.Generator().manual_seed(0)
    return torch.rand(4, 6, generator=g) * 2 + 0.2, torch.randn(4, 6, generator=g) * 3


def test_scallion_uncompressed_with_alpha_one_is_exactly_scaffold():
    a, b = _problem()
    scallion = _quadratic_rounds(
        _strategy("scallion", {"compressor": "identity", "control_alpha": 1.0}), a, b
    )
    scaffold = _quadratic_rounds(_strategy("scaffold", {}), a, b)
    damped = _quadratic_rounds(
        _strategy("scallion", {"compressor": "identity", "control_alpha": 0.5}), a, b
    )
    assert torch.allclose(scallion, scaffold, atol=1e-5)
    assert not torch.allclose(damped, scaffold, atol=1e-3)


def test_scallion_client_control_moves_by_its_decoded_message_and_c_is_their_mean():
    a, b = _problem()
    strategy = _strategy("scallion", {"compressor": "randk", "density": 0.5, "control_alpha": 0.3})
    _quadratic_rounds(strategy, a, b)
    controls = torch.stack([strategy.client_c[i] for i in range(4)])
    assert torch.allclose(strategy.c, controls.mean(0), atol=1e-5)
    x = torch.zeros(6)
    before = strategy.client_c[1].clone()
    message = strategy.client_message(1, x, x - 0.3, steps=3, lr=0.1)
    assert set(message) == {"values"} and message["values"].numel() == 3
    sent = strategy.decode([message])[0]
    assert torch.allclose(strategy.client_c[1] - before, sent)
    assert (sent != 0).sum() == 3


def _uplink_bytes(data, name: str, opts: dict) -> int:
    budget = Budget(rounds=2, local_steps=2, batch_size=16, optimizer="sgd", lr=0.1, momentum=0.0)
    params = registry.make_params("federated", name, {"clients": 4, "clients_per_round": 2, **opts})
    method = registry.get("federated", name).obj(params, 0)
    spec = RunSpec("federated", Component(name), Component("tiny"), Component("mlp"))
    ctx = RunContext(spec, data, MLP(8, 16, 1, 4), method, budget, all_seeds(0))
    return run(ctx).costs["bytes"]["up"]


def test_scallion_uploads_one_vector_half_of_scaffold_and_randk_sends_k_values(tiny_data):
    d = sum(p.numel() for p in MLP(8, 16, 1, 4).parameters())
    full = _uplink_bytes(tiny_data, "scallion", {"compressor": "identity"})
    assert full == 2 * 2 * d * 4  # 2 rounds x 2 clients x one fp32 vector
    assert _uplink_bytes(tiny_data, "scaffold", {}) == 2 * full
    sparse = _uplink_bytes(tiny_data, "scallion", {"compressor": "randk", "density": 0.25})
    assert sparse == 2 * 2 * round(0.25 * d) * 4
