import pytest
import torch

from sparsebench import registry
from sparsebench.engines.context import RunContext
from sparsebench.engines.pruning import run as run_pruning
from sparsebench.models.mlp import MLP
from sparsebench.seeds import all_seeds
from sparsebench.sparsity.allocation import erk_densities
from sparsebench.sparsity.masked import prunable_weights
from sparsebench.sparsity.masks import keep_count
from sparsebench.spec import Budget, Component, RunSpec


def build(family: str, name: str, params: dict):
    entry = registry.get(family, name)
    return entry.obj(registry.make_params(family, name, params), 0)


@pytest.mark.parametrize("allocation", ["uniform", "erk"])
def test_static_random_hits_each_layer_density_exactly(tiny_data, allocation):
    model = MLP(8, 64, 2, 4)
    method = build("sparse_training", "static-random", {"density": 0.2, "allocation": allocation})
    method.setup(model, tiny_data)
    weights = prunable_weights(model)
    expected = (
        erk_densities({n: w.shape for n, w in weights.items()}, 0.2)
        if allocation == "erk"
        else dict.fromkeys(weights, 0.2)
    )
    for name, weight in weights.items():
        assert int(torch.count_nonzero(weight)) == keep_count(weight.numel(), expected[name])


def test_static_random_with_a_dense_first_layer_matches_rigls_masks_in_count(tiny_data):
    params = {"density": 0.2, "dense_first_layer": True}
    static, rigl = MLP(8, 64, 2, 4), MLP(8, 64, 2, 4)
    build("sparse_training", "static-random", params).setup(static, tiny_data)
    method = build("sparse_training", "rigl", {**params, "end_step": 10})
    method.setup(rigl, tiny_data)
    assert torch.count_nonzero(static.net[0].weight) == static.net[0].weight.numel()
    for name in method.masked.masks:
        counted = int(torch.count_nonzero(prunable_weights(static)[name]))
        assert counted == int(method.masked.masks[name].sum())


def test_static_random_mask_never_changes_during_training(tiny_data):
    model = MLP(8, 64, 2, 4)
    method = build("sparse_training", "static-random", {"density": 0.2})
    method.setup(model, tiny_data)
    before = {n: m.clone() for n, m in method.masked.masks.items()}
    from sparsebench.engines.trainer import train

    train(model, tiny_data, Budget(steps=20, batch_size=32, eval_every=20), 0, hooks=method)
    for name, weight in prunable_weights(model).items():
        assert torch.equal(weight != 0, before[name])


def pruning_ctx(data, params: dict) -> RunContext:
    torch.manual_seed(0)
    spec = RunSpec("pruning", Component("magnitude", params), Component("tiny"), Component("mlp"))
    budget = Budget(steps=40, batch_size=32, eval_every=20)
    return RunContext(
        spec, data, MLP(8, 64, 2, 4), build("pruning", "magnitude", params), budget, all_seeds(0)
    )


@pytest.mark.parametrize("scope", ["layer", "global"])
def test_magnitude_pruning_reaches_the_density_after_finetuning(tiny_data, scope):
    ctx = pruning_ctx(tiny_data, {"density": 0.25, "scope": scope, "finetune_fraction": 0.5})
    result = run_pruning(ctx)
    weights = prunable_weights(ctx.model)
    total = sum(w.numel() for w in weights.values())
    kept = sum(int(torch.count_nonzero(w)) for w in weights.values())
    if scope == "layer":
        for w in weights.values():
            assert int(torch.count_nonzero(w)) == keep_count(w.numel(), 0.25)
    else:
        assert kept == keep_count(total, 0.25)
    assert result.costs["density"] == pytest.approx(kept / total)
    assert {"acc_before_prune", "acc_after_prune", "test_acc"} <= set(result.metrics)


def test_global_magnitude_keeps_the_largest_weights_across_layers(tiny_data):
    model = MLP(8, 16, 1, 4)
    with torch.no_grad():
        model.net[0].weight.fill_(0.01)
        model.net[2].weight.fill_(5.0)
    masks = build("pruning", "magnitude", {"density": 0.5, "scope": "global"}).prune(
        model, tiny_data
    )
    assert masks["net.2.weight"].all()
    assert int(masks["net.0.weight"].sum()) == keep_count(16 * 8 + 4 * 16, 0.5) - 4 * 16


def test_magnitude_nm_pattern_is_valid_in_every_group(tiny_data):
    ctx = pruning_ctx(tiny_data, {"nm": "2:4", "finetune_fraction": 0.5})
    run_pruning(ctx)
    for weight in prunable_weights(ctx.model).values():
        groups = (weight != 0).reshape(weight.shape[0], -1, 4)
        assert (groups.sum(-1) == 2).all()


def test_bad_nm_string_is_refused():
    with pytest.raises(registry.RegistryError, match="N:M pattern"):
        registry.make_params("pruning", "magnitude", {"nm": "2/4"})
