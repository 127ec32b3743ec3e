import pytest
import torch
import torch.nn as nn

from sparsebench import registry
from sparsebench.data.base import Dataset
from sparsebench.methods.pruning.dsnot import dsnot_refine, residual
from sparsebench.sparsity.calibration import InputStats, recon_error, wanda_scores
from sparsebench.sparsity.masks import keep_count, parse_nm, row_mask


def shifted_inputs(n=1024, d_in=64, seed=0):
    """Correlated inputs with nonzero feature means (the regime DSnoT's residual targets)."""
    g = torch.Generator().manual_seed(seed)
    mix = torch.randn(d_in, d_in, generator=g) / d_in**0.5
    x = torch.randn(n, d_in, generator=g) @ mix + 0.3 * torch.randn(n, d_in, generator=g)
    return x + torch.randn(d_in, generator=g)


def setup(initial: str, nm: str | None):
    x = shifted_inputs()
    w = torch.randn(32, 64, generator=torch.Generator().manual_seed(1))
    stats = InputStats.empty(64)
    stats.add(x)
    pattern = parse_nm(nm) if nm else None
    scores = wanda_scores(w, stats) if initial == "wanda" else w.abs()
    return w, stats, pattern, row_mask(scores, 0.5, pattern)


@pytest.mark.parametrize("initial", ["wanda", "magnitude"])
def test_refinement_lowers_the_reconstruction_error_at_the_same_row_density(initial):
    w, stats, _, start = setup(initial, None)
    keep = dsnot_refine(w, stats, start, None)
    assert (keep != start).any()
    assert (keep.sum(1) == keep_count(64, 0.5)).all()
    assert recon_error(w, w * keep, stats) < recon_error(w, w * start, stats)
    before = residual(w, start, stats.mean).abs().sum()
    assert residual(w, keep, stats.mean).abs().sum() < 0.6 * before


@pytest.mark.parametrize("initial", ["wanda", "magnitude"])
def test_nm_refinement_keeps_the_pattern_and_lowers_the_mean_residual(initial):
    w, stats, pattern, start = setup(initial, "2:4")
    keep = dsnot_refine(w, stats, start, pattern)
    assert (keep != start).any()
    assert (keep.reshape(32, -1, 4).sum(-1) == 2).all()
    before = residual(w, start, stats.mean).abs()
    after = residual(w, keep, stats.mean).abs()
    assert after.sum() < before.sum()


def test_a_row_whose_residual_is_under_the_threshold_is_left_alone():
    w, stats, _, start = setup("wanda", None)
    keep = dsnot_refine(w, stats, start, None, update_threshold=1e9)
    assert torch.equal(keep, start)


def test_method_prunes_a_layer_without_changing_the_surviving_weights():
    x = shifted_inputs()
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 16))
    dense = model[0].weight.detach().clone()
    data = Dataset(x, torch.zeros(len(x)), x[:4], torch.zeros(4), num_classes=16)
    params = registry.make_params("pruning", "dsnot", {"density": 0.4})
    masks = registry.get("pruning", "dsnot").obj(params, 0).prune(model, data)
    assert (masks["0.weight"].sum(1) == keep_count(64, 0.4)).all()
    assert torch.equal(model[0].weight.detach(), dense * masks["0.weight"])
