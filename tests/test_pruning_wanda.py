import pytest
import torch
import torch.nn as nn

from sparsebench import registry
from sparsebench.data.base import Dataset
from sparsebench.sparsity.calibration import InputStats, recon_error, wanda_scores
from sparsebench.sparsity.masks import keep_count


def correlated(n=1024, d_in=32, seed=0):
    """Inputs with mixed, unequally scaled features: the case Wanda's input norm is for."""
    g = torch.Generator().manual_seed(seed)
    mix = torch.randn(d_in, d_in, generator=g) / d_in**0.5
    scale = torch.exp(torch.randn(d_in, generator=g))
    return (torch.randn(n, d_in, generator=g) @ mix + 0.3 * torch.randn(n, d_in, generator=g)) * (
        scale
    )


def prune_linear(method: str, params: dict, x: torch.Tensor, out: int = 16):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(x.shape[1], out))
    dense = model[0].weight.detach().clone()
    data = Dataset(x, torch.zeros(len(x)), x[:4], torch.zeros(4), num_classes=out)
    entry = registry.get("pruning", method)
    pruner = entry.obj(registry.make_params("pruning", method, params), 0)
    masks = pruner.prune(model, data)
    return dense, model[0].weight.detach(), masks["0.weight"], pruner.report


def test_score_is_weight_magnitude_times_input_feature_norm():
    x, w = correlated(), torch.randn(16, 32)
    stats = InputStats.empty(32)
    stats.add(x)
    expected = torch.stack([w[i].abs() * x.norm(dim=0) for i in range(16)])
    assert torch.allclose(wanda_scores(w, stats), expected, rtol=1e-4)


def test_each_row_keeps_its_top_scores_at_exactly_the_density():
    x = correlated()
    dense, pruned, mask, _ = prune_linear("wanda", {"density": 0.3, "heldout": 0}, x)
    stats = InputStats.empty(32)
    stats.add(x[torch.randperm(len(x), generator=torch.Generator().manual_seed(0))[:128]])
    scores = wanda_scores(dense, stats)
    k = keep_count(32, 0.3)
    assert (mask.sum(1) == k).all()
    top = torch.topk(scores, k, dim=1).indices
    assert torch.equal(mask, torch.zeros_like(mask).scatter_(1, top, True))
    assert torch.equal(pruned, dense * mask)


@pytest.mark.parametrize("nm", ["2:4", "4:8"])
def test_nm_pattern_holds_in_every_group(nm):
    n, m = map(int, nm.split(":"))
    _, pruned, mask, _ = prune_linear("wanda", {"nm": nm}, correlated())
    assert (mask.reshape(16, -1, m).sum(-1) == n).all()
    assert torch.equal(pruned != 0, mask)


def test_wanda_reconstructs_better_than_magnitude_on_correlated_inputs():
    x = correlated()
    stats = InputStats.empty(32)
    stats.add(x)
    for nm in (None, "2:4"):
        errors = {}
        for method in ("wanda", "ptq-magnitude"):
            params = {"density": 0.5, "nm": nm} | ({"scope": "row"} if method != "wanda" else {})
            dense, pruned, _, _ = prune_linear(method, params, x)
            errors[method] = recon_error(dense, pruned, stats)
        assert errors["wanda"] < errors["ptq-magnitude"]
