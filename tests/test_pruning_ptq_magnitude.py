import torch
import torch.nn as nn

from sparsebench import registry
from sparsebench.data.base import Dataset
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


def test_layer_scope_keeps_the_largest_weights_of_the_whole_layer():
    dense, pruned, mask, _ = prune_linear("ptq-magnitude", {"density": 0.25}, correlated())
    k = keep_count(dense.numel(), 0.25)
    assert int(mask.sum()) == k
    threshold = dense.abs().flatten().kthvalue(dense.numel() - k + 1).values
    assert torch.equal(mask, dense.abs() >= threshold)
    assert torch.equal(pruned, dense * mask)


def test_row_scope_keeps_the_density_in_every_row():
    _, _, mask, _ = prune_linear("ptq-magnitude", {"density": 0.25, "scope": "row"}, correlated())
    assert (mask.sum(1) == keep_count(32, 0.25)).all()


def test_report_has_a_reconstruction_error_per_layer_and_the_time():
    _, _, _, report = prune_linear("ptq-magnitude", {"density": 0.5}, correlated())
    assert set(report["recon_error_per_layer"]) == {"0.weight"}
    assert 0.0 < report["metrics"]["recon_error_mean"] < 1.0
    assert report["prune_rule_s"] >= 0.0 and report["calibration_s"] >= report["prune_rule_s"]


def test_engine_on_a_tiny_gpt_reports_perplexities_and_layer_errors():
    from sparsebench.data.shakespeare import ShakespeareParams, from_texts
    from sparsebench.engines.context import RunContext
    from sparsebench.engines.pruning import run as run_pruning
    from sparsebench.models.gpt import GptParams
    from sparsebench.models.gpt import build as build_gpt
    from sparsebench.seeds import all_seeds
    from sparsebench.spec import Budget, Component, RunSpec

    text = {"A": "to be or not to be, that is the question. " * 20}
    data = from_texts(text, ShakespeareParams(block_size=16, num_train_windows=64))
    torch.manual_seed(0)
    model = build_gpt(GptParams(n_layer=1, n_head=2, n_embd=16), (16,), data.num_classes)
    params = {"nm": "2:4", "calibration": 16, "heldout": 8}
    method = registry.get("pruning", "ptq-magnitude").obj(
        registry.make_params("pruning", "ptq-magnitude", params), 0
    )
    spec = RunSpec("pruning", Component("ptq-magnitude", params), Component("t"), Component("gpt"))
    budget = Budget(steps=5, batch_size=16, eval_every=5)
    result = run_pruning(RunContext(spec, data, model, method, budget, all_seeds(0)))
    assert {"ppl_before_prune", "ppl_after_prune", "test_ppl"} <= set(result.metrics)
    assert result.metrics["test_ppl"] == result.metrics["ppl_after_prune"]
    assert len(result.costs["recon_error_per_layer"]) == 4
    assert 0.0 < result.metrics["recon_error_mean"] < 1.0
    assert result.costs["density"] == 0.5 and result.costs["prune_s"] > 0
    assert bool((model.wte.weight != 0).all())
