import pytest
import torch
import torch.nn as nn

from sparsebench import registry
from sparsebench.engines.trainer import train
from sparsebench.hooks import TrainHooks
from sparsebench.models.mlp import MLP
from sparsebench.sparsity.masked import measured_density, prunable_weights
from sparsebench.spec import Budget


def build(**params):
    return registry.get("sparse_training", "srste").obj(
        registry.make_params("sparse_training", "srste", params), 0
    )


class EveryStep(TrainHooks):
    def __init__(self, model, n, m):
        self.model, self.n, self.m, self.steps = model, n, m, 0

    def after_step(self, step):
        for weight in prunable_weights(self.model).values():
            groups = (weight.detach() != 0).reshape(weight.shape[0], -1, self.m)
            assert (groups.sum(-1) == self.n).all(), step
        self.steps += 1


@pytest.mark.parametrize("pattern", ["2:4", "1:8"])
def test_every_group_is_valid_after_every_step(tiny_data, pattern):
    n, m = map(int, pattern.split(":"))
    model = MLP(8, 32, 2, 4)
    build(nm=pattern).setup(model, tiny_data)
    hooks = EveryStep(model, n, m)
    train(model, tiny_data, Budget(steps=15, batch_size=32, eval_every=15), 0, hooks)
    assert hooks.steps == 15
    assert measured_density(model)[0] == pytest.approx(n / m)


def dense_grad(decay: float, weight: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    layer = nn.Linear(8, 3, bias=False)
    with torch.no_grad():
        layer.weight.copy_(weight)
    build(nm="2:4", decay=decay).setup(nn.Sequential(layer), None)
    (layer(x) ** 2).sum().backward()
    return layer.parametrizations.weight.original.grad


def test_decay_on_pruned_weights_is_lambda_w_and_zero_decay_is_plain_ste():
    torch.manual_seed(0)
    weight, x = torch.randn(3, 8), torch.randn(5, 8)
    groups = weight.abs().reshape(3, 2, 4)
    mask = torch.zeros_like(groups, dtype=torch.bool)
    mask.scatter_(-1, groups.topk(2, dim=-1).indices, True)
    mask = mask.reshape(3, 8)
    effective = (weight * mask).requires_grad_()
    ((x @ effective.T) ** 2).sum().backward()
    ste = dense_grad(0.0, weight, x)
    assert torch.equal(ste, effective.grad)
    refined = dense_grad(0.5, weight, x)
    assert torch.equal(refined[mask], ste[mask])
    assert torch.allclose(refined[~mask] - ste[~mask], 0.5 * weight[~mask], rtol=0, atol=1e-6)


def test_layers_that_cannot_hold_the_pattern_stay_dense_and_are_listed(tiny_data):
    model = MLP(6, 8, 1, 4)
    method = build(nm="2:4")
    method.setup(model, tiny_data)
    assert method.extra_metrics() == {"dense_layer/net.0.weight": 1.0}
    assert torch.count_nonzero(model.net[0].weight) == model.net[0].weight.numel()
    assert measured_density(model)[1]["net.2.weight"] == 0.5
