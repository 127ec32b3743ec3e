import torch

from sparsebench import registry
from sparsebench.engines.trainer import train
from sparsebench.models.mlp import MLP
from sparsebench.spec import Budget


def build(**params):
    return registry.get("sparse_training", "set").obj(
        registry.make_params("sparse_training", "set", params), 0
    )


def test_set_regrows_k_positions_among_the_inactive_ones(tiny_data):
    model = MLP(8, 32, 1, 4)
    method = build(density=0.25, allocation="uniform", end_step=100)
    method.setup(model, tiny_data)
    name, weight = "net.2.weight", model.net[2].weight
    old = method.masked.masks[name].clone()
    k = int(int(old.sum()) * 0.3)
    smallest = torch.topk(
        weight.detach().abs().flatten().masked_fill(~old.flatten(), 1e9), k, largest=False
    ).indices
    method.update_masks(0.3)
    new = method.masked.masks[name]
    assert int(new.sum()) == int(old.sum())
    assert not new.flatten()[smallest].all()
    survivors = old.flatten().clone()
    survivors[smallest] = False
    assert (new.flatten() & survivors).sum() == survivors.sum()
    grown = new.flatten() & ~survivors
    assert int(grown.sum()) == k
    assert (weight.flatten()[grown & ~old.flatten()] == 0).all()


def test_set_keeps_density_and_reports_divergence(tiny_data):
    model = MLP(8, 32, 2, 4)
    method = build(density=0.2, update_interval=5, end_step=30)
    method.setup(model, tiny_data)
    counts = {n: int(m.sum()) for n, m in method.masked.masks.items()}
    train(model, tiny_data, Budget(steps=30, batch_size=32, eval_every=30), 0, hooks=method)
    for name, mask in method.masked.masks.items():
        assert int(mask.sum()) == counts[name]
    metrics = method.extra_metrics()
    assert metrics["mask_updates"] == 5
    assert 0 < metrics["sad_fraction"] < 1
