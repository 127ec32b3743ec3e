import torch

from sparsebench import registry
from sparsebench.engines import workers
from sparsebench.engines.context import RunContext
from sparsebench.models import build_model
from sparsebench.seeds import all_seeds
from sparsebench.spec import Budget, Component, RunSpec


def run(tiny_data, name: str, params: dict, budget: Budget):
    spec = RunSpec("compression", Component(name, params), Component("tiny"), Component("mlp"))
    torch.manual_seed(0)
    model = build_model(Component("mlp", {"hidden": 16}), tiny_data.input_shape, 4)
    method = registry.get("compression", name).obj(
        registry.make_params("compression", name, params), 1
    )
    result = workers.run(RunContext(spec, tiny_data, model, method, budget, all_seeds(0)))
    return torch.cat([p.detach().flatten() for p in model.parameters()]), result


def test_diloco_with_one_sgd_inner_step_and_plain_outer_sgd_is_data_parallel_sgd(tiny_data):
    budget = Budget(steps=6, batch_size=16, lr=0.2, optimizer="sgd", momentum=0.0, eval_every=3)
    params = {
        "workers": 2,
        "inner_steps": 1,
        "inner_optimizer": "sgd",
        "inner_weight_decay": 0.0,
        "outer_lr": 1.0,
        "outer_momentum": 0.0,
    }
    diloco, result = run(tiny_data, "diloco", params, budget)
    plain, _ = run(tiny_data, "none", {"workers": 2}, budget)
    assert torch.allclose(diloco, plain, atol=1e-5)
    assert result.costs["bytes"]["up_per_worker_step"] == 4 * diloco.numel()


def test_diloco_sends_the_fp32_pseudo_gradient_once_per_round(tiny_data):
    budget = Budget(steps=8, batch_size=16, lr=0.01, eval_every=8)
    _, result = run(tiny_data, "diloco", {"workers": 2, "inner_steps": 4}, budget)
    traffic = result.traffic
    assert [t[0] == 0 for t in traffic] == [True, True, True, False] * 2
    numel = traffic[3][0] // 8
    assert result.costs["bytes"]["up"] == 2 * 2 * 4 * numel
