import pytest
import torch

from sparsebench import registry
from sparsebench.engines.trainer import train
from sparsebench.metrics import flop_costs
from sparsebench.models.cnn import Conv1dNet
from sparsebench.models.mlp import MLP
from sparsebench.sparsity.masked import measured_density
from sparsebench.spec import Budget


def build(**params):
    return registry.get("sparse_training", "sparse-ift").obj(
        registry.make_params("sparse_training", "sparse-ift", params), 0
    )


@pytest.mark.parametrize("density", [0.5, 0.1])
def test_sparse_wide_training_flops_match_the_dense_model(tiny_data, density):
    model = MLP(8, 32, 2, 4)
    dense = flop_costs(model, tiny_data.x_train, {}, 1)["train_dense"]
    method = build(density=density, end_step=20, update_interval=5)
    method.setup(model, tiny_data)
    assert method.width > 32
    train(model, tiny_data, Budget(steps=20, batch_size=32, eval_every=20), 0, hooks=method)
    measured = measured_density(model)[1]
    sparse = flop_costs(model, tiny_data.x_train, measured, 1)["train_sparse"]
    assert sparse == pytest.approx(dense, rel=0.05)
    assert model.net[2].weight.shape == (method.width, method.width)
    assert method.extra_metrics()["mask_updates"] == 3


def test_static_variant_never_changes_its_mask(tiny_data):
    model = MLP(8, 32, 2, 4)
    method = build(density=0.25, sparse_training="static")
    method.setup(model, tiny_data)
    before = {n: m.clone() for n, m in method.masked.masks.items()}
    train(model, tiny_data, Budget(steps=10, batch_size=32, eval_every=10), 0, hooks=method)
    assert all(torch.equal(before[n], m) for n, m in method.masked.masks.items())


def test_models_without_an_mlp_net_are_refused(tiny_data):
    with pytest.raises(ValueError, match="mlp"):
        build(density=0.25, end_step=10).setup(Conv1dNet(8, 4, 4), tiny_data)


def test_the_first_and_last_layers_stay_dense_as_the_reference_leaves_stem_and_head(tiny_data):
    model = MLP(8, 32, 3, 4)
    method = build(density=0.25, end_step=20)
    method.setup(model, tiny_data)
    assert sorted(method.masked.masks) == ["net.2.weight", "net.4.weight"]
    for layer in (model.net[0], model.net[6]):
        assert torch.count_nonzero(layer.weight) == layer.weight.numel()
    head_sparse = build(density=0.25, end_step=20, dense_last_layer=False)
    head_sparse.setup(MLP(8, 32, 3, 4), tiny_data)
    assert sorted(head_sparse.masked.masks) == ["net.2.weight", "net.4.weight", "net.6.weight"]
