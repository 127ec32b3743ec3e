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
    """Records each round's starting weights, masks, length and schedule start, then moves the
    weights (as training)."""

    def __init__(self):
        self.starts, self.masks, self.steps, self.schedule_from = [], [], [], []

    @torch.no_grad()
    def __call__(self, model, masks, steps, seed_offset=0, schedule_from=0):
        self.steps.append(steps)
        self.schedule_from.append(schedule_from)
        self.masks.append({n: m.clone() for n, m in masks.items()})
        self.starts.append({n: p.clone() for n, p in model.state_dict().items()})
        for p in model.parameters():
            p.add_(torch.randn_like(p))


def dense_phase(method, model, steps: int):
    """What the engine's dense phase does to IMP's hook: `steps` optimizer steps seen."""
    hook = method.dense_hooks(model)
    for step in range(1, steps + 1):
        hook.after_step(step)
    return hook


def test_density_after_each_round_is_one_minus_p_to_the_r():
    torch.manual_seed(0)
    model = MLP(8, 64, 2, 4)
    method = imp({"density": 0.2, "rounds": 4, "scope": "layer"})
    dense_phase(method, model, 40)
    retrain = FakeRetrain()
    method.prune_iteratively(model, None, retrain, 0)
    p = 1.0 - 0.2 ** (1 / 4)
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
    initial = {n: p.clone() for n, p in model.state_dict().items()}
    checkpoint = dense_phase(method, model, 10)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(3.0)
    retrain = FakeRetrain()
    method.prune_iteratively(model, None, retrain, 0)
    assert checkpoint.state is not None
    for start, masks in zip(retrain.starts, retrain.masks, strict=True):
        for name, value in start.items():
            if name in masks:
                assert torch.equal(value[masks[name]], initial[name][masks[name]])
            else:
                assert torch.equal(value, initial[name])


def test_engine_runs_imp_and_ends_at_the_density(tiny_data):
    torch.manual_seed(0)
    params = {"density": 0.25, "rounds": 2, "rewind_step": 5, "scope": "layer"}
    spec = RunSpec("pruning", Component("imp", params), Component("tiny"), Component("mlp"))
    budget = Budget(steps=20, batch_size=32, eval_every=10)
    ctx = RunContext(spec, tiny_data, MLP(8, 16, 1, 4), imp(params), budget, all_seeds(0))
    result = run_pruning(ctx)
    for weight in prunable_weights(ctx.model).values():
        assert int(torch.count_nonzero(weight)) == keep_count(weight.numel(), 0.25)
    assert result.curves["step"][-1] == 20 + 2 * 15  # dense T, then two levels of T - k
    assert {"acc_before_prune", "acc_after_prune", "test_acc", "prune_s"} <= {
        *result.metrics,
        *result.costs,
    }


def test_levels_remove_a_fifth_of_the_survivors_globally_until_the_density():
    torch.manual_seed(0)
    model = MLP(8, 64, 2, 4)
    with torch.no_grad():
        model.net[2].weight.mul_(10.0)  # a layer of larger weights keeps more of them
    method = imp({"density": 0.1})
    assert method.params.level_densities() == pytest.approx([0.8**t for t in range(1, 11)] + [0.1])
    dense_phase(method, model, 30)
    retrain = FakeRetrain()
    method.prune_iteratively(model, None, retrain, 0)
    assert len(retrain.masks) == 11
    last = retrain.masks[-1]
    kept = sum(int(m.sum()) for m in last.values())
    assert kept == keep_count(sum(m.numel() for m in last.values()), 0.1)
    per_layer = {n: m.float().mean().item() for n, m in last.items()}
    assert per_layer["net.2.weight"] > 3 * per_layer["net.0.weight"]


def test_every_level_retrains_the_schedule_from_the_rewind_step_to_its_end():
    model = MLP(8, 16, 1, 4)
    method = imp({"density": 0.5, "rounds": 2, "rewind_step": 7})
    dense_phase(method, model, 30)
    retrain = FakeRetrain()
    method.prune_iteratively(model, None, retrain, 0)
    assert retrain.steps == [23, 23] and retrain.schedule_from == [7, 7]
    split = imp({"density": 0.5, "rounds": 2, "retrain": "split", "finetune_fraction": 0.4})
    dense_phase(split, model, 30)
    retrain = FakeRetrain()
    split.prune_iteratively(model, None, retrain, 21)
    assert retrain.steps == [11, 10] and retrain.schedule_from == [0, 0]


def test_a_rewound_level_resumes_the_learning_rate_schedule_at_the_rewind_step():
    from sparsebench.engines.pruning import _resumed_schedule

    budget = Budget(steps=20, lr=0.5, schedule="cosine")
    factors = [_resumed_schedule(budget, 5, s, 15) for s in (1, 8, 15)]
    assert factors == pytest.approx([budget.lr_at(s, 20) / 0.5 for s in (6, 13, 20)])
    assert factors[0] < 1.0  # not restarted at the peak


def test_full_retraining_with_a_finetune_fraction_is_refused():
    with pytest.raises(ValueError, match="finetune_fraction"):
        imp({"density": 0.5, "finetune_fraction": 0.3})
    with pytest.raises(ValueError, match="finetune_fraction"):
        imp({"density": 0.5, "retrain": "split"})
