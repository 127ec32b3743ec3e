import torch

from sparsebench import registry
from sparsebench.comm.compressors import TopK
from sparsebench.engines.context import RunContext
from sparsebench.engines.federated import run
from sparsebench.models.mlp import MLP
from sparsebench.seeds import all_seeds
from sparsebench.spec import Budget, Component, RunSpec

SCHEDULE = [[0, 1], [2, 3], [1, 2], [3, 0]] * 5


def _strategy(name: str, opts: dict):
    params = registry.make_params("federated", name, {"clients": 4, "clients_per_round": 2, **opts})
    return registry.get("federated", name).obj(params, 0)


def _quadratic_rounds(strategy, a, b, steps: int = 3, lr: float = 0.1) -> torch.Tensor:
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
    g = torch.Generator().manual_seed(1)
    return torch.rand(4, 6, generator=g) * 2 + 0.2, torch.randn(4, 6, generator=g) * 3


def test_scafcom_without_momentum_or_compression_is_exactly_scaffold():
    a, b = _problem()
    plain = _quadratic_rounds(_strategy("scafcom", {"compressor": "identity", "beta": 1.0}), a, b)
    scaffold = _quadratic_rounds(_strategy("scaffold", {}), a, b)
    smoothed = _quadratic_rounds(
        _strategy("scafcom", {"compressor": "identity", "beta": 0.5}), a, b
    )
    assert torch.allclose(plain, scaffold, atol=1e-5)
    assert not torch.allclose(smoothed, scaffold, atol=1e-3)


def test_scafcom_uploads_topk_of_momentum_minus_control_and_keeps_c_the_mean():
    beta, steps, lr = 0.4, 2, 0.5
    strategy = _strategy("scafcom", {"compressor": "topk", "density": 0.5, "beta": beta})
    a, b = _problem()
    _quadratic_rounds(strategy, a, b, steps, lr)
    controls = torch.stack([strategy.client_c[i] for i in range(4)])
    assert torch.allclose(strategy.c, controls.mean(0), atol=1e-5)

    x, y = torch.randn(6), torch.randn(6)
    v_old, c_i, c = strategy.momentum[2].clone(), strategy.client_c[2].clone(), strategy.c.clone()
    message = strategy.client_message(2, x, y, steps, lr)
    v = (1 - beta) * v_old + beta * ((x - y) / (steps * lr) + c_i - c)
    want = TopK(0.5).decompress(TopK(0.5).compress(v - c_i))
    assert torch.allclose(strategy.momentum[2], v, atol=1e-6)
    assert torch.allclose(strategy.decode([message])[0], want, atol=1e-6)
    assert torch.allclose(strategy.client_c[2], c_i + want, atol=1e-6)
    assert message["values"].dtype == torch.float32 and message["indices"].numel() == 3


def test_scafcom_sign_uplink_is_one_bit_per_weight_plus_a_scale(tiny_data):
    budget = Budget(rounds=2, local_steps=2, batch_size=16, optimizer="sgd", lr=0.1, momentum=0.0)
    opts = {"clients": 4, "clients_per_round": 2, "compressor": "sign", "simulation": "sequential"}
    method = _strategy("scafcom", opts)
    spec = RunSpec("federated", Component("scafcom"), Component("tiny"), Component("mlp"))
    model = MLP(8, 16, 1, 4)
    d = sum(p.numel() for p in model.parameters())
    result = run(RunContext(spec, tiny_data, model, method, budget, all_seeds(0)))
    assert result.costs["bytes"]["up"] == 2 * 2 * (-(-d // 8) + 4)
    assert result.costs["bytes"]["down"] == 2 * 2 * 2 * d * 4
