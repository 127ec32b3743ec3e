import pytest
import torch

from sparsebench import registry
from sparsebench.engines.context import RunContext
from sparsebench.engines.pruning import run as run_pruning
from sparsebench.models.mlp import MLP
from sparsebench.seeds import all_seeds
from sparsebench.sparsity.masked import MaskedWeights, prunable_weights
from sparsebench.sparsity.masks import keep_count
from sparsebench.spec import Budget, Component, RunSpec


def sms(params: dict):
    return registry.get("pruning", "sms").obj(registry.make_params("pruning", "sms", params), 0)


class FakeRetrain:
    """Moves the weights as training would, under the mask; records every ingredient."""

    def __init__(self):
        self.calls = []

    @torch.no_grad()
    def __call__(self, model, masks, steps, seed_offset=0, weight_decay=None):
        for p in model.parameters():
            p.add_(torch.randn_like(p))
        MaskedWeights(model, masks)
        state = {n: v.clone() for n, v in model.state_dict().items()}
        self.calls.append(
            (state, {n: m.clone() for n, m in masks.items()}, seed_offset, weight_decay)
        )


def test_soup_is_the_mean_of_the_ingredients_and_keeps_their_shared_mask(tiny_data):
    torch.manual_seed(0)
    model = MLP(8, 32, 1, 4)
    method = sms({"density": 0.3, "rounds": 2, "ingredients": 3})
    retrain = FakeRetrain()
    masks = method.prune_iteratively(model, tiny_data, retrain, 20)
    last = retrain.calls[-3:]
    for _, ingredient_masks, _, _ in last:
        for name in masks:
            assert torch.equal(ingredient_masks[name], masks[name])
    for name, value in model.state_dict().items():
        mean = torch.stack([state[name] for state, *_ in last]).mean(0)
        assert torch.allclose(value, mean, atol=1e-6)
    for name, weight in prunable_weights(model).items():
        assert torch.equal(weight != 0, masks[name])
        assert int(masks[name].sum()) == keep_count(weight.numel(), 0.3)
    assert len({offset for *_, offset, _ in last}) == 3
    assert {"soup_acc", "best_ingredient_acc"} <= set(method.report["metrics"])


def test_weight_decay_ingredients_share_the_batch_order():
    method = sms(
        {"ingredients": 2, "rounds": 1, "ensemble_by": "weight_decay", "weight_decays": [0, 1e-3]}
    )
    kwargs = [method._ingredient_kwargs(0, i) for i in range(2)]
    assert kwargs[0]["seed_offset"] == kwargs[1]["seed_offset"]
    assert [k["weight_decay"] for k in kwargs] == [0, 1e-3]


def test_weight_decay_list_must_match_the_ingredients():
    with pytest.raises(registry.RegistryError, match="one value per ingredient"):
        sms({"ingredients": 3, "ensemble_by": "weight_decay", "weight_decays": [0.0]})


def test_engine_reports_soup_against_best_ingredient(tiny_data):
    torch.manual_seed(0)
    params = {"density": 0.5, "rounds": 1, "ingredients": 2, "finetune_fraction": 0.5}
    spec = RunSpec("pruning", Component("sms", params), Component("tiny"), Component("mlp"))
    budget = Budget(steps=20, batch_size=32, eval_every=10)
    ctx = RunContext(spec, tiny_data, MLP(8, 16, 1, 4), sms(params), budget, all_seeds(0))
    result = run_pruning(ctx)
    assert {"soup_acc", "best_ingredient_acc", "acc_after_prune"} <= set(result.metrics)
    assert result.metrics["soup_acc"] == result.metrics["test_acc"]
