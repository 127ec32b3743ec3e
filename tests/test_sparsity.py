import pytest
import torch

from sparsebench.engines.trainer import train
from sparsebench.models.cnn import Conv1dNet
from sparsebench.models.mlp import MLP
from sparsebench.sparsity.allocation import erk_densities
from sparsebench.sparsity.masked import MaskedWeights, measured_density, prunable_weights
from sparsebench.sparsity.masks import NM, keep_count, magnitude_mask, nm_mask, random_mask
from sparsebench.spec import Budget


def test_random_mask_keeps_exactly_the_rounded_count():
    g = torch.Generator().manual_seed(0)
    for density in (0.5, 0.1, 0.013):
        mask = random_mask(torch.Size([37, 53]), density, g)
        assert int(mask.sum()) == keep_count(37 * 53, density)


def test_magnitude_mask_keeps_the_largest_weights():
    w = torch.tensor([[0.1, -3.0, 0.5, 2.0]])
    assert magnitude_mask(w, 0.5).tolist() == [[False, True, False, True]]


@pytest.mark.parametrize("pattern", [NM(2, 4), NM(1, 4), NM(1, 8)])
def test_nm_mask_has_exactly_n_nonzeros_in_every_group(pattern):
    w = torch.randn(16, 64)
    groups = nm_mask(w.abs(), pattern).reshape(16, -1, pattern.m)
    assert (groups.sum(-1) == pattern.n).all()


def test_nm_mask_refuses_an_input_dim_not_divisible_by_m():
    with pytest.raises(ValueError, match="divisible by 4"):
        nm_mask(torch.randn(3, 10), NM(2, 4))


def test_erk_hits_the_global_density_and_favours_small_layers():
    shapes = {"a": torch.Size([256, 40]), "b": torch.Size([256, 256]), "c": torch.Size([10, 256])}
    densities = erk_densities(shapes, 0.1)
    kept = sum(densities[n] * s.numel() for n, s in shapes.items())
    total = sum(s.numel() for s in shapes.values())
    assert kept / total == pytest.approx(0.1, rel=1e-9)
    assert densities["b"] < densities["a"] and densities["b"] < densities["c"]
    assert all(0 < d <= 1 for d in densities.values())


def test_erk_makes_a_layer_dense_rather_than_exceed_density_one():
    shapes = {"tiny": torch.Size([2, 2]), "big": torch.Size([512, 512])}
    densities = erk_densities(shapes, 0.5)
    assert densities["tiny"] == 1.0
    kept = sum(densities[n] * s.numel() for n, s in shapes.items())
    assert kept / sum(s.numel() for s in shapes.values()) == pytest.approx(0.5)


@pytest.mark.parametrize(("optimizer", "weight_decay"), [("sgd", 0.1), ("adam", 0.1)])
def test_masked_weights_stay_zero_through_momentum_and_weight_decay(
    tiny_data, optimizer, weight_decay
):
    torch.manual_seed(0)
    model = MLP(8, 32, 2, 4)
    g = torch.Generator().manual_seed(1)
    masks = {n: random_mask(w.shape, 0.3, g) for n, w in prunable_weights(model).items()}
    masked = MaskedWeights(model, masks)
    budget = Budget(
        steps=30,
        batch_size=32,
        optimizer=optimizer,
        momentum=0.9,
        weight_decay=weight_decay,
        eval_every=30,
    )
    train(model, tiny_data, budget, data_seed=0, hooks=masked)
    for name, weight in prunable_weights(model).items():
        assert (weight[~masks[name]] == 0).all(), name
        assert (weight[masks[name]] != 0).all(), name


def test_measured_density_counts_nonzeros_per_layer():
    model = Conv1dNet(40, 4, 10)
    with torch.no_grad():
        model.classifier.weight.zero_()
    density, per_layer = measured_density(model)
    assert per_layer["classifier.weight"] == 0.0
    assert per_layer["features.0.weight"] == 1.0
    total = sum(w.numel() for w in prunable_weights(model).values())
    assert density == pytest.approx(1 - model.classifier.weight.numel() / total)


def test_cosine_schedule_warms_up_then_decays_to_zero():
    budget = Budget(lr=1.0, schedule="cosine", warmup_steps=10)
    assert budget.lr_at(5, 110) == pytest.approx(0.5)
    assert budget.lr_at(10, 110) == pytest.approx(1.0)
    assert budget.lr_at(60, 110) == pytest.approx(0.5)
    assert budget.lr_at(110, 110) == pytest.approx(0.0, abs=1e-12)
    assert Budget(lr=0.3).lr_at(50, 100) == 0.3


def test_nm_mask_on_conv_weights_groups_input_channels_per_kernel_position():
    w = torch.randn(6, 8, 3)
    mask = nm_mask(w.abs(), NM(2, 4))
    assert mask.shape == w.shape
    assert (mask.reshape(6, 2, 4, 3).sum(2) == 2).all()
