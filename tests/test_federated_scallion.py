"""SCALLION (Huang, Li, Li, ICLR 2024, arXiv 2308.08165) driven through the strategy API the
way the synchronous engine drives it (broadcast, corrected local steps, client_message,
aggregate) on heterogeneous quadratics f_i(x) = 1/2 ||A_i x - b_i||^2 with exact gradients."""

import pytest
import torch

from sparsebench import registry
from sparsebench.engines.context import RunContext
from sparsebench.engines.federated import run
from sparsebench.methods.federated.base import Strategy
from sparsebench.models.mlp import MLP
from sparsebench.seeds import all_seeds
from sparsebench.spec import Budget, Component, RunSpec

CLIENTS, DIM, ROWS = 4, 6, 8
PARTIAL = [[0, 1], [2, 3], [1, 2], [3, 0]] * 3  # 2 of 4 clients a round
FULL = [list(range(CLIENTS))]


def _strategy(name: str, opts: dict, per_round: int) -> Strategy:
    params = registry.make_params(
        "federated", name, {"clients": CLIENTS, "clients_per_round": per_round, **opts}
    )
    return registry.get("federated", name).obj(params, 0)


def _quadratics(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A_i [N, ROWS, DIM] with singular values in [0.5, 1.5], b_i [N, ROWS], and the global
    optimum x* = (sum_i A_i^T A_i)^-1 sum_i A_i^T b_i of sum_i f_i."""
    g = torch.Generator().manual_seed(seed)
    left = torch.linalg.qr(torch.randn(CLIENTS, ROWS, DIM, generator=g)).Q
    right = torch.linalg.qr(torch.randn(CLIENTS, DIM, DIM, generator=g)).Q
    a = left @ torch.diag_embed(torch.rand(CLIENTS, DIM, generator=g) + 0.5) @ right
    b = torch.randn(CLIENTS, ROWS, generator=g) * 3
    optimum = torch.linalg.solve(torch.einsum("nri,nrj->ij", a, a), torch.einsum("nri,nr->i", a, b))
    return a, b, optimum


def _rounds(
    strategy: Strategy,
    a: torch.Tensor,
    b: torch.Tensor,
    schedule: list[list[int]],
    steps: int = 5,
    lr: float = 0.1,
) -> torch.Tensor:
    """The global iterates [R, DIM] after each round of `schedule` (the clients sampled)."""
    x, iterates = torch.zeros(DIM), []
    for sampled in schedule:
        messages = []
        for i in sampled:
            y = x.clone()
            for _ in range(steps):
                extra = strategy.gradient_correction([i], y[None], x)
                y = y - lr * (a[i].T @ (a[i] @ y - b[i]) + (0 if extra is None else extra[0]))
            messages.append(strategy.client_message(i, x, y, steps, lr))
        x = strategy.aggregate(x, messages, [1] * len(sampled))
        iterates.append(x)
    return torch.stack(iterates)


def test_scallion_with_identity_compressor_and_alpha_one_follows_scaffold_iterates():
    a, b, _ = _quadratics()
    scaffold = _strategy("scaffold", {}, 2)
    scallion = _strategy("scallion", {"compressor": "identity", "control_alpha": 1.0}, 2)
    damped = _strategy("scallion", {"compressor": "identity", "control_alpha": 0.5}, 2)
    want = _rounds(scaffold, a, b, PARTIAL)
    assert torch.allclose(_rounds(scallion, a, b, PARTIAL), want, rtol=0, atol=1e-6)
    assert torch.allclose(scallion.c, scaffold.c, rtol=0, atol=1e-6)
    for i in range(CLIENTS):
        assert torch.allclose(scallion.client_c[i], scaffold.client_c[i], rtol=0, atol=1e-6)
    assert (_rounds(damped, a, b, PARTIAL) - want).abs().max() > 1e-2


@pytest.mark.parametrize(
    "opts",
    [
        {"compressor": "randk", "density": 0.5, "control_alpha": 0.5},
        {"compressor": "qsgd", "control_alpha": 0.5},
    ],
)
def test_scallion_reaches_the_global_optimum_where_fedavg_stalls(opts):
    a, b, optimum = _quadratics()
    scallion = _rounds(_strategy("scallion", opts, CLIENTS), a, b, FULL * 150)[-1]
    fedavg = _rounds(_strategy("fedavg", {}, CLIENTS), a, b, FULL * 150)
    gap = (scallion - optimum).norm()
    drift = (fedavg[-1] - optimum).norm()
    assert gap < 1e-5
    assert (fedavg[-1] - fedavg[-2]).norm() < 1e-6  # a fixed point, not slow progress
    assert drift > 1e-2 and drift >= 10 * gap


def test_scallion_client_control_moves_by_its_decoded_message_and_c_is_their_mean():
    a, b, _ = _quadratics()
    strategy = _strategy(
        "scallion", {"compressor": "randk", "density": 0.5, "control_alpha": 0.3}, 2
    )
    _rounds(strategy, a, b, PARTIAL)
    controls = torch.stack([strategy.client_c[i] for i in range(CLIENTS)])
    assert torch.allclose(strategy.c, controls.mean(0), atol=1e-5)
    x, y = torch.randn(DIM), torch.randn(DIM)
    before, c = strategy.client_c[1].clone(), strategy.c.clone()
    message = strategy.client_message(1, x, y, steps=3, lr=0.1)
    assert set(message) == {"values"} and message["values"].numel() == 3
    sent = strategy.decode([message])[0]
    kept = sent != 0
    innovation = 0.3 * ((x - y) / (3 * 0.1) - c)  # alpha (mean corrected gradient - c_i)
    assert kept.sum() == 3
    assert torch.allclose(sent[kept], 2 * innovation[kept], atol=1e-5)  # rand-k scales by d/k
    assert torch.allclose(strategy.client_c[1] - before, sent)


def _uplink_bytes(data, name: str, opts: dict) -> int:
    budget = Budget(rounds=2, local_steps=2, batch_size=16, optimizer="sgd", lr=0.1, momentum=0.0)
    method = _strategy(name, opts, 2)
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
