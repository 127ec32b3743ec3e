import math

import pytest
import torch
import torch.nn as nn

from sparsebench import registry
from sparsebench.engines.trainer import train
from sparsebench.models.mlp import MLP
from sparsebench.sparsity.masked import measured_density
from sparsebench.sparsity.masks import NM
from sparsebench.spec import Budget


def build(**params):
    return registry.get("sparse_training", "pgf").obj(
        registry.make_params("sparse_training", "pgf", params), 0
    )


def setup(model, **params):
    method = build(**params)
    method.setup(model, None)
    return method


def test_mdgf_factor_follows_the_decay_then_turns_binary():
    common = dict(nm="1:8", sparse_start_step=10, finetune_start_step=60, decay_coef=0.01)
    linear = setup(nn.Linear(8, 2), decay="linear", **common)
    assert linear.phase_at(10).nm is None
    assert linear.phase_at(11).factor == pytest.approx(0.99)
    assert linear.phase_at(60).factor == pytest.approx(0.5)
    assert linear.phase_at(61) == linear.phase_at(100)
    assert linear.phase_at(61).factor == 0.0 and linear.phase_at(61).nm == NM(1, 8)
    exp = setup(nn.Linear(8, 2), decay="exp", **common)
    assert exp.phase_at(40).factor == pytest.approx(math.exp(-0.3))


def test_sdgf_steps_the_pattern_towards_the_target():
    method = setup(
        nn.Linear(16, 2), nm="1:16", mode="sdgf", sparse_start_step=0, finetune_start_step=400
    )
    patterns = [method.phase_at(t).nm.n for t in (1, 100, 200, 300, 400, 401)]
    assert patterns == [15, 8, 4, 2, 1, 1]
    assert all(method.phase_at(t).factor == 0.0 for t in (1, 401))


def pgf_grads(backward: str, weight: torch.Tensor, x: torch.Tensor):
    layer = nn.Linear(8, 3, bias=False)
    with torch.no_grad():
        layer.weight.copy_(weight)
    method = setup(
        layer,
        nm="2:8",
        backward=backward,
        sparse_start_step=0,
        finetune_start_step=1000,
        decay="linear",
        decay_coef=0.1,
    )
    method.enter(5)
    effective = layer.weight
    (layer(x) ** 2).sum().backward()
    return method.phase.factor, effective.detach(), layer.parametrizations.weight.original.grad


def test_pruned_weights_are_scaled_forward_and_gradient_follows_the_backward_rule():
    torch.manual_seed(0)
    weight, x = torch.randn(3, 8), torch.randn(5, 8)
    groups = weight.abs().reshape(3, 1, 8)
    mask = torch.zeros_like(groups, dtype=torch.bool)
    mask.scatter_(-1, groups.topk(2, dim=-1).indices, True)
    mask = mask.reshape(3, 8)
    factor, effective, ste = pgf_grads("ste", weight, x)
    assert factor == pytest.approx(0.5)
    assert torch.allclose(effective[mask], weight[mask])
    assert torch.allclose(effective[~mask], factor * weight[~mask])
    _, _, exact = pgf_grads("autograd", weight, x)
    assert torch.allclose(exact[mask], ste[mask])
    assert torch.allclose(exact[~mask], factor * ste[~mask])
    assert not torch.allclose(exact[~mask], ste[~mask])


def test_run_ends_with_valid_binary_nm(tiny_data):
    model = MLP(8, 32, 1, 4)
    method = setup(model, nm="1:8", sparse_start_step=2, finetune_start_step=10)
    train(model, tiny_data, Budget(steps=12, batch_size=32, eval_every=12), 0, hooks=method)
    assert method.extra_metrics()["final_mask_factor"] == 0.0
    assert measured_density(model)[0] == pytest.approx(1 / 8)
