import pytest
import torch

from sparsebench import registry
from sparsebench.engines.context import RunContext
from sparsebench.engines.pruning import run as run_pruning
from sparsebench.methods.pruning.base import round_densities
from sparsebench.models.mlp import MLP
from sparsebench.seeds import all_seeds
from sparsebench.sparsity.masked import prunable_weights
from sparsebench.sparsity.masks import keep_count
from sparsebench.spec import Budget, Component, RunSpec


def imp(params: dict):
    return registry.get("pruning", "imp").obj(registry.make_params("pruning", "imp", params), 0)


class FakeRetrain:
    """Records each round's starting weights and masks, then moves the weights (as training)."""

    def __init__(self):
        self.starts, self.masks = [], []

    @torch.no_grad()
    def __call__(self, model, masks, steps, seed_offset=0, weight_decay=None):
        self.masks.append({n: m.clone() for n, m in masks.items()})
        self.starts.append({n: p.clone() for n, p in model.state_dict().items()})
        for p in model.parameters():
            p.add_(torch.randn_like(p))


def test_density_after_each_round_is_one_minus_p_to_the_r():
    torch.manual_seed(0)
    model = MLP(8, 64, 2, 4)
    method = imp({"density": 0.2, "rounds": 4})
    method.dense_hooks(model)
    retrain = FakeRetrain()
    method.prune_iteratively(model, None, retrain, 40)
    p = method.params.round_fraction
    for r, masks in enumerate(retrain.masks, start=1):
        assert round_densities(0.2, 4)[r - 1] == pytest.approx((1 - p) ** r)
        for name, mask in masks.items():
            assert int(mask.sum()) == keep_count(mask.numel(), (1 - p) ** r)
            if r > 1:
                assert not (mask & ~retrain.masks[r - 2][name]).any()


def test_survivors_are_rewound_to_the_checkpoint_values():
    torch.manual_seed(0)
    model = MLP(8, 32, 1, 4)
    method = imp({"density": 0.3, "rounds": 2})
    checkpoint = method.dense_hooks(model)
    initial = {n: p.clone() for n, p in model.state_dict().items()}
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(3.0)
    retrain = FakeRetrain()
    method.prune_iteratively(model, None, retrain, 10)
    assert checkpoint.state is not None
    for start, masks in zip(retrain.starts, retrain.masks, strict=True):
        for name, value in start.items():
            if name in masks:
                assert torch.equal(value[masks[name]], initial[name][masks[name]])
            else:
                assert torch.equal(value, initial[name])


def test_engine_runs_imp_and_ends_at_the_density(tiny_data):
    torch.manual_seed(0)
    params = {"density": 0.25, "rounds": 2, "rewind_step": 5, "finetune_fraction": 0.5}
    spec = RunSpec("pruning", Component("imp", params), Component("tiny"), Component("mlp"))
    budget = Budget(steps=20, batch_size=32, eval_every=10)
    ctx = RunContext(spec, tiny_data, MLP(8, 16, 1, 4), imp(params), budget, all_seeds(0))
    result = run_pruning(ctx)
    for weight in prunable_weights(ctx.model).values():
        assert int(torch.count_nonzero(weight)) == keep_count(weight.numel(), 0.25)
    assert result.curves["step"][-1] == 20
    assert {"acc_before_prune", "acc_after_prune", "test_acc", "prune_s"} <= {
        *result.metrics,
        *result.costs,
    }
