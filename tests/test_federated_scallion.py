"""SCALLION (Huang, Li, Li, ICLR 2024, arXiv 2308.08165) driven through the strategy API the
way the synchronous engine drives it (broadcast, corrected local steps, client_message,
aggregate) on heterogeneous quadratics f_i(x) = 1/2 ||A_i x - b_i||^2 with exact gradients."""

import pytest
import torch
from federated_quadratics import CLIENTS, DIM, FULL, PARTIAL, make_strategy, quadratics, rounds

from sparsebench.engines.context import RunContext
from sparsebench.engines.federated import run
from sparsebench.models.mlp import MLP
from sparsebench.seeds import all_seeds
from sparsebench.spec import Budget, Component, RunSpec


def test_scallion_with_identity_compressor_and_alpha_one_follows_scaffold_iterates():
    a, b, _ = quadratics()
    scaffold = make_strategy("scaffold", {}, 2)
    scallion = make_strategy("scallion", {"compressor": "identity", "control_alpha": 1.0}, 2)
    damped = make_strategy("scallion", {"compressor": "identity", "control_alpha": 0.5}, 2)
    want = rounds(scaffold, a, b, PARTIAL)
    assert torch.allclose(rounds(scallion, a, b, PARTIAL), want, rtol=0, atol=1e-6)
    assert torch.allclose(scallion.c, scaffold.c, rtol=0, atol=1e-6)
    for i in range(CLIENTS):
        assert torch.allclose(scallion.client_c[i], scaffold.client_c[i], rtol=0, atol=1e-6)
    assert (rounds(damped, a, b, PARTIAL) - want).abs().max() > 1e-2


@pytest.mark.parametrize(
    "opts",
    [
        {"compressor": "randk", "density": 0.5, "control_alpha": 0.5},
        {"compressor": "qsgd", "control_alpha": 0.5},
    ],
)
def test_scallion_reaches_the_global_optimum_where_fedavg_stalls(opts):
    a, b, optimum = quadratics()
    scallion = rounds(make_strategy("scallion", opts, CLIENTS), a, b, FULL * 150)[-1]
    fedavg = rounds(make_strategy("fedavg", {}, CLIENTS), a, b, FULL * 150)
    gap = (scallion - optimum).norm()
    drift = (fedavg[-1] - optimum).norm()
    assert gap < 1e-5
    assert (fedavg[-1] - fedavg[-2]).norm() < 1e-6  # a fixed point, not slow progress
    assert drift > 1e-2 and drift >= 10 * gap


def test_scallion_client_control_moves_by_its_decoded_message_and_c_is_their_mean():
    a, b, _ = quadratics()
    strategy = make_strategy(
        "scallion", {"compressor": "randk", "density": 0.5, "control_alpha": 0.3}, 2
    )
    rounds(strategy, a, b, PARTIAL)
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
    method = make_strategy(name, opts, 2)
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
