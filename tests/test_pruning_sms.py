import math

import pytest
import torch
import torch.nn as nn
from torch.optim.optimizer import register_optimizer_step_post_hook

from sparsebench import registry
from sparsebench.data.base import Dataset
from sparsebench.engines.context import RunContext
from sparsebench.engines.pruning import run as run_pruning
from sparsebench.methods.pruning.sms import llr_factor
from sparsebench.models.mlp import MLP
from sparsebench.seeds import all_seeds
from sparsebench.sparsity.masked import MaskedWeights, prunable_weights
from sparsebench.sparsity.masks import keep_count
from sparsebench.spec import Budget, Component, RunSpec


def sms(params: dict, seed: int = 0):
    entry = registry.get("pruning", "sms")
    return entry.obj(registry.make_params("pruning", "sms", params), seed)


class FakeRetrain:
    """Moves the weights as training would, under the mask; records every ingredient."""

    def __init__(self, noise: float = 1.0):
        self.noise = noise
        self.calls = []

    @torch.no_grad()
    def __call__(self, model, masks, steps, **kwargs):
        for p in model.parameters():
            p.add_(self.noise * torch.randn_like(p))
        MaskedWeights(model, masks)
        state = {n: v.clone() for n, v in model.state_dict().items()}
        self.calls.append((state, {n: m.clone() for n, m in masks.items()}, steps, kwargs))


class ScriptedRetrain:
    """Sets the single weight of ingredient i to `weights[i]`: a fixed classifier per call."""

    def __init__(self, weights: list[torch.Tensor]):
        self.weights = weights
        self.calls = 0

    @torch.no_grad()
    def __call__(self, model, masks, steps, **kwargs):
        model[0].weight.copy_(self.weights[self.calls])
        self.calls += 1


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
    weights = prunable_weights(model)
    for name, weight in weights.items():
        assert torch.equal(weight != 0, masks[name])
    total = sum(w.numel() for w in weights.values())
    assert sum(int(m.sum()) for m in masks.values()) == keep_count(total, 0.3)
    assert len({kwargs["seed_offset"] for *_, kwargs in last}) == 3
    assert {"soup_acc", "best_ingredient_acc", "soup_val_acc"} <= set(method.report["metrics"])


def test_default_pruning_is_one_global_threshold_across_layers_of_different_scales(tiny_data):
    torch.manual_seed(0)
    model = MLP(8, 32, 1, 4)
    with torch.no_grad():
        model.net[0].weight.mul_(10.0)
    masks = sms({"density": 0.3, "rounds": 1, "ingredients": 1}).prune_iteratively(
        model, tiny_data, FakeRetrain(noise=0.0), 10
    )
    total = sum(m.numel() for m in masks.values())
    assert sum(int(m.sum()) for m in masks.values()) == keep_count(total, 0.3)
    large, small = masks["net.0.weight"], masks["net.2.weight"]
    assert large.float().mean() > 0.4 and small.float().mean() < 0.2  # layer scope: both 0.3


def test_each_retraining_warms_up_for_a_tenth_then_decays_linearly_to_zero(tiny_data):
    torch.manual_seed(0)
    model = MLP(8, 16, 1, 4)
    retrain = FakeRetrain()
    sms({"rounds": 2, "ingredients": 2}).prune_iteratively(model, tiny_data, retrain, 101)
    assert [steps for *_, steps, _ in retrain.calls] == [51, 51, 50, 50]
    for *_, steps, kwargs in retrain.calls:
        factors = [kwargs["lr_factor"](step, steps) for step in range(1, steps + 1)]
        ramp = int(0.1 * steps)  # 5 steps of warmup, from 0 along a half cosine
        warmup = [0.5 * (1 - math.cos(math.pi * k / ramp)) for k in range(ramp)]
        assert factors[:ramp] == pytest.approx(warmup)
        decay = [(steps - k) / (steps - ramp) for k in range(ramp, steps)]
        assert factors[ramp:] == pytest.approx(decay)
        assert factors[ramp] == 1.0 and factors[-1] == pytest.approx(1 / (steps - ramp))


def test_the_budget_schedule_is_kept_when_asked(tiny_data):
    retrain = FakeRetrain()
    method = sms({"rounds": 1, "ingredients": 1, "retrain_schedule": "budget"})
    method.prune_iteratively(MLP(8, 16, 1, 4), tiny_data, retrain, 10)
    assert retrain.calls[0][3]["lr_factor"] is None


def test_ingredients_retrain_without_a_seeded_tenth_of_the_training_samples(tiny_data):
    def fits(seed: int) -> list[Dataset]:
        retrain = FakeRetrain()
        sms({"rounds": 2, "ingredients": 2}, seed).prune_iteratively(
            MLP(8, 16, 1, 4), tiny_data, retrain, 20
        )
        return [kwargs["data"] for *_, kwargs in retrain.calls]

    first, again, other = fits(0), fits(0), fits(1)
    n = len(tiny_data.y_train)
    for fit in first:
        assert torch.equal(fit.x_train, first[0].x_train)
        assert len(fit.y_train) == int(0.9 * n)
        assert fit.x_test is tiny_data.x_test
    rows = {tuple(row.tolist()) for row in tiny_data.x_train}
    kept = {tuple(row.tolist()) for row in first[0].x_train}
    assert kept < rows and len(rows - kept) == n - int(0.9 * n)
    assert torch.equal(again[0].x_train, first[0].x_train)
    assert not torch.equal(other[0].x_train, first[0].x_train)


def test_the_best_ingredient_is_chosen_on_validation_never_on_test():
    # train and validation label one-hot inputs by their class, test by the next class:
    # the identity ingredient wins on validation, the shifted one would win on test
    x = torch.eye(4).repeat(20, 1)
    y = torch.arange(4).repeat(20)
    data = Dataset(x, y, x.clone(), (y + 1) % 4, num_classes=4)
    model = nn.Sequential(nn.Linear(4, 4, bias=False))
    shift = torch.roll(torch.eye(4), 1, dims=0)
    method = sms({"density": 1.0, "rounds": 1, "ingredients": 2})
    method.prune_iteratively(model, data, ScriptedRetrain([torch.eye(4), shift]), 10)
    metrics = method.report["metrics"]
    assert metrics["best_ingredient_val_acc"] == 1.0
    assert metrics["best_ingredient_acc"] == 0.0  # the validation choice's test accuracy
    assert metrics["mean_ingredient_acc"] == 0.5


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"retrain_warmup": 1.0}, "retrain_warmup must be in"),
        ({"validation_fraction": 0.0}, "validation_fraction must be in"),
        ({"validation_fraction": 1.0}, "validation_fraction must be in"),
    ],
)
def test_schedule_and_validation_params_are_checked(params, message):
    with pytest.raises(registry.RegistryError, match=message):
        sms(params)


def test_llr_without_warmup_starts_at_the_peak():
    assert [llr_factor(step, 4, 0.0) for step in range(1, 5)] == [1.0, 0.75, 0.5, 0.25]


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


def engine_run(tiny_data, params: dict, budget: Budget):
    spec = RunSpec("pruning", Component("sms", params), Component("tiny"), Component("mlp"))
    ctx = RunContext(spec, tiny_data, MLP(8, 16, 1, 4), sms(params), budget, all_seeds(0))
    return run_pruning(ctx)


def test_engine_reports_soup_against_best_ingredient(tiny_data):
    torch.manual_seed(0)
    params = {"density": 0.5, "rounds": 1, "ingredients": 2, "finetune_fraction": 0.5}
    result = engine_run(tiny_data, params, Budget(steps=20, batch_size=32, eval_every=10))
    assert {"soup_acc", "best_ingredient_acc", "acc_after_prune"} <= set(result.metrics)
    assert result.metrics["soup_acc"] == result.metrics["test_acc"]


def test_the_engine_steps_each_ingredient_at_the_scheduled_lr(tiny_data):
    torch.manual_seed(0)
    lrs = []
    handle = register_optimizer_step_post_hook(
        lambda opt, args, kwargs: lrs.append(opt.param_groups[0]["lr"])
    )
    params = {"density": 0.5, "rounds": 1, "ingredients": 2, "finetune_fraction": 0.5}
    budget = Budget(steps=40, batch_size=32, lr=0.05, eval_every=10)
    try:
        engine_run(tiny_data, params, budget)
    finally:
        handle.remove()
    scheduled = [0.05 * llr_factor(step, 20, 0.1) for step in range(1, 21)]
    assert lrs[:20] == [0.05] * 20  # the dense phase keeps the budget's constant lr
    assert lrs[20:] == pytest.approx(scheduled * 2)
