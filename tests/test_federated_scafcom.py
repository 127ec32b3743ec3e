"""SCAFCOM (Huang, Li, Li, ICLR 2024, arXiv 2308.08165) driven through the strategy API the
way the synchronous engine drives it (broadcast, corrected local steps, client_message,
aggregate) on heterogeneous quadratics f_i(x) = 1/2 ||A_i x - b_i||^2 with exact gradients."""

import pytest
import torch
from federated_quadratics import CLIENTS, DIM, FULL, PARTIAL, make_strategy, quadratics, rounds

from sparsebench.comm.compressors import TopK
from sparsebench.engines.context import RunContext
from sparsebench.engines.federated import run
from sparsebench.models.mlp import MLP
from sparsebench.seeds import all_seeds
from sparsebench.spec import Budget, Component, RunSpec


def test_scafcom_with_beta_one_and_no_compression_follows_scaffold_iterates():
    a, b, _ = quadratics(1)
    scaffold = make_strategy("scaffold", {}, 2)
    scafcom = make_strategy("scafcom", {"compressor": "identity", "beta": 1.0}, 2)
    smoothed = make_strategy("scafcom", {"compressor": "identity", "beta": 0.5}, 2)
    want = rounds(scaffold, a, b, PARTIAL)
    assert torch.allclose(rounds(scafcom, a, b, PARTIAL), want, rtol=0, atol=1e-6)
    assert torch.allclose(scafcom.c, scaffold.c, rtol=0, atol=1e-6)
    for i in range(CLIENTS):
        assert torch.allclose(scafcom.client_c[i], scaffold.client_c[i], rtol=0, atol=1e-6)
    assert (rounds(smoothed, a, b, PARTIAL) - want).abs().max() > 1e-2


@pytest.mark.parametrize(
    "opts",
    [
        {"compressor": "topk", "density": 0.5, "beta": 0.5},
        {"compressor": "sign", "beta": 0.5},
    ],
)
def test_scafcom_reaches_the_global_optimum_where_fedavg_stalls(opts):
    a, b, optimum = quadratics(1)
    scafcom = rounds(make_strategy("scafcom", opts, CLIENTS), a, b, FULL * 150)[-1]
    fedavg = rounds(make_strategy("fedavg", {}, CLIENTS), a, b, FULL * 150)
    gap = (scafcom - optimum).norm()
    drift = (fedavg[-1] - optimum).norm()
    assert gap < 1e-5
    assert (fedavg[-1] - fedavg[-2]).norm() < 1e-6  # a fixed point, not slow progress
    assert drift > 1e-2 and drift >= 10 * gap


def test_scafcom_uploads_topk_of_momentum_minus_control_and_keeps_c_the_mean():
    beta, steps, lr = 0.4, 2, 0.2
    strategy = make_strategy("scafcom", {"compressor": "topk", "density": 0.5, "beta": beta}, 2)
    a, b, _ = quadratics(1)
    rounds(strategy, a, b, PARTIAL, steps, lr)
    controls = torch.stack([strategy.client_c[i] for i in range(CLIENTS)])
    assert torch.allclose(strategy.c, controls.mean(0), atol=1e-5)

    x, y = torch.randn(DIM), torch.randn(DIM)
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
    method = make_strategy("scafcom", {"compressor": "sign", "simulation": "sequential"}, 2)
    spec = RunSpec("federated", Component("scafcom"), Component("tiny"), Component("mlp"))
    model = MLP(8, 16, 1, 4)
    d = sum(p.numel() for p in model.parameters())
    result = run(RunContext(spec, tiny_data, model, method, budget, all_seeds(0)))
    assert result.costs["bytes"]["up"] == 2 * 2 * (-(-d // 8) + 4)
    assert result.costs["bytes"]["down"] == 2 * 2 * 2 * d * 4
