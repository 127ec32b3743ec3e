import pytest
import torch
import torch.nn as nn

from sparsebench import registry
from sparsebench.data.base import Dataset
from sparsebench.methods.pruning.dsnot import DsnotParams, dsnot_refine, residual
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


def wide_setup(initial: str):
    """8 rows of 512 inputs: wide enough that 50 cycles never use up a side of either ordered
    list, the regime where the reference loop is well defined (on 64 inputs it runs off its
    lists: an index error unstructured, broken groups N:M)."""
    x = shifted_inputs(d_in=512)
    w = torch.randn(8, 512, generator=torch.Generator().manual_seed(1))
    stats = InputStats.empty(512)
    stats.add(x)
    scores = wanda_scores(w, stats) if initial == "wanda" else w.abs()
    return w, stats, row_mask(scores, 0.5, None)


def reference_row(w, mean, var, wanda, keep, threshold, cycles, same_sign):
    """One row of the reference's unstructured loop (`prune_DSnoT`, zyxxmu/DSnoT lib/prune.py),
    rewritten one swap at a time from its description. Contributions c_j = w_j mean_j. Grow
    list: pruned j by c_j / var_j, read from the top while r > 0, else from the bottom. Prune
    list: kept j by Wanda score, negative c_j first (ascending), then positive ones (descending),
    read from the end (lowest-Wanda positive) while r < 0, else from the start (lowest-Wanda
    negative). A swap needs |r| > threshold and, with `same_sign`, the sign of r kept; the
    first refused swap ends the row."""
    c = w * mean
    pruned, kept = (~keep).nonzero().squeeze(1), keep.nonzero().squeeze(1)
    grow = pruned[torch.argsort(c[pruned] / var[pruned], stable=True)].tolist()
    by_wanda = kept[torch.argsort(wanda[kept], stable=True)]
    prune = by_wanda[c[by_wanda] < 0].tolist() + by_wanda[c[by_wanda] > 0].flip(0).tolist()
    r = (c * ~keep).sum()
    sign0, mask = torch.sign(r), keep.clone()
    for _ in range(cycles):
        g = grow.pop() if r > 0 else grow.pop(0)
        p = prune.pop() if r < 0 else prune.pop(0)
        assert torch.sign(c[g]) == (1 if r > 0 else -1), "grow list used up: out of regime"
        after = r + c[p] - c[g]
        if r.abs() <= threshold or (same_sign and torch.sign(after) != sign0):
            break
        mask[p], mask[g], r = False, True, after
    return mask


def trajectory(w, stats, start, without_same_sign, threshold, cycles=50):
    """Residuals per row after 0, 1, ..., `cycles` cycles: the loop is deterministic, so the
    mask after k cycles is the refinement capped at k."""
    masks = [
        dsnot_refine(w, stats, start, None, k, threshold, without_same_sign=without_same_sign)
        for k in range(cycles + 1)
    ]
    return torch.stack([residual(w, m, stats.mean) for m in masks])


def test_params_default_to_the_reference_without_the_sign_stop():
    assert DsnotParams().without_same_sign is True
    params = registry.make_params("pruning", "dsnot", {"without_same_sign": False})
    assert params.without_same_sign is False


@pytest.mark.parametrize("without_same_sign", [True, False])
@pytest.mark.parametrize("initial", ["wanda", "magnitude"])
def test_unstructured_mask_equals_the_reference_loop_row_by_row(initial, without_same_sign):
    w, stats, start = wide_setup(initial)
    keep = dsnot_refine(w, stats, start, None, 50, 0.02, without_same_sign=without_same_sign)
    wanda = wanda_scores(w, stats)
    for i in range(w.shape[0]):
        expected = reference_row(
            w[i], stats.mean, stats.var, wanda[i], start[i], 0.02, 50, not without_same_sign
        )
        assert torch.equal(keep[i], expected), f"row {i}"
    assert torch.equal(keep.sum(1), start.sum(1))


def test_the_setting_changes_the_unstructured_mask_at_the_same_row_density():
    w, stats, start = wide_setup("wanda")
    free = dsnot_refine(w, stats, start, None, 50, 0.02)
    stopped = dsnot_refine(w, stats, start, None, 50, 0.02, without_same_sign=False)
    assert (free != stopped).any()
    assert torch.equal(free.sum(1), start.sum(1))
    assert torch.equal(stopped.sum(1), start.sum(1))


@pytest.mark.parametrize("initial", ["wanda", "magnitude"])
def test_with_the_sign_stop_every_accepted_swap_keeps_the_initial_residual_sign(initial):
    w, stats, start = wide_setup(initial)
    r = trajectory(w, stats, start, without_same_sign=False, threshold=0.02)
    assert (r[1:] != r[:-1]).any()
    assert (torch.sign(r) == torch.sign(r[0])).all()


def test_without_the_sign_stop_residuals_cross_zero_and_rows_run_to_threshold_or_cap():
    w, stats, start = wide_setup("wanda")
    r = trajectory(w, stats, start, without_same_sign=True, threshold=0.02)
    assert (torch.sign(r) != torch.sign(r[0])).any()
    keep = dsnot_refine(w, stats, start, None, 50, 0.02)
    swaps = (keep & ~start).sum(1)
    capped, settled = swaps == 50, r[-1].abs() <= 0.02
    assert (capped | settled).all()
    assert capped.any() and (settled & ~capped).any()


def test_with_the_sign_stop_rows_stop_early_with_the_residual_over_the_threshold():
    w, stats, start = wide_setup("wanda")
    keep = dsnot_refine(w, stats, start, None, 50, 0.02, without_same_sign=False)
    swaps = (keep & ~start).sum(1)
    stuck = (swaps < 50) & (residual(w, keep, stats.mean).abs() > 0.02)
    assert stuck.any()


@pytest.mark.parametrize("initial", ["wanda", "magnitude"])
def test_nm_swaps_keep_the_sign_stop_whatever_the_setting(initial):
    w, stats, pattern, start = setup(initial, "2:4")
    free = dsnot_refine(w, stats, start, pattern, without_same_sign=True)
    stopped = dsnot_refine(w, stats, start, pattern, without_same_sign=False)
    assert torch.equal(free, stopped)
    r0 = residual(w, start, stats.mean)
    assert (torch.sign(residual(w, free, stats.mean)) == torch.sign(r0)).all()


@pytest.mark.parametrize("without_same_sign", [True, False])
@pytest.mark.parametrize("initial", ["wanda", "magnitude"])
def test_refinement_lowers_the_reconstruction_error_at_the_same_row_density(
    initial, without_same_sign
):
    w, stats, start = wide_setup(initial)
    keep = dsnot_refine(w, stats, start, None, without_same_sign=without_same_sign)
    assert (keep != start).any()
    assert (keep.sum(1) == keep_count(512, 0.5)).all()
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
