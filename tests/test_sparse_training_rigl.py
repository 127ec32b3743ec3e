import pytest
import torch

from sparsebench import registry
from sparsebench.engines.trainer import train
from sparsebench.hooks import TrainHooks
from sparsebench.models.mlp import MLP
from sparsebench.sparsity.masked import prunable_weights
from sparsebench.spec import Budget


def build(name: str, **params):
    return registry.get("sparse_training", name).obj(
        registry.make_params("sparse_training", name, params), 0
    )


class Recorder(TrainHooks):
    """Runs the method's hooks and checks, after every optimizer step, what the weights hold."""

    def __init__(self, method, check):
        self.method, self.check = method, check

    def after_backward(self, step):
        self.method.after_backward(step)

    def after_step(self, step):
        self.method.after_step(step)
        self.check(self.method)


def test_every_layer_keeps_its_exact_count_through_many_updates(tiny_data):
    model = MLP(8, 32, 2, 4)
    method = build("rigl", density=0.2, update_interval=2, end_step=40, drop_fraction=0.5)
    method.setup(model, tiny_data)
    counts = {n: int(m.sum()) for n, m in method.masked.masks.items()}

    def check(m):
        for name, weight in m.masked.params.items():
            assert int(m.masked.masks[name].sum()) == counts[name]
            assert int(torch.count_nonzero(weight)) <= counts[name]

    train(
        model, tiny_data, Budget(steps=40, batch_size=32, eval_every=40), 0, Recorder(method, check)
    )
    assert method.extra_metrics()["mask_updates"] == 19
    assert method.extra_metrics()["sad"] > 0


def test_rigl_grows_exactly_the_top_gradient_inactive_positions(tiny_data):
    model = MLP(8, 16, 1, 4)
    method = build("rigl", density=0.25, allocation="uniform", end_step=100)
    method.setup(model, tiny_data)
    name, weight = "net.0.weight", model.net[0].weight
    old = method.masked.masks[name].clone()
    with torch.no_grad():
        weight.copy_(torch.randn(weight.shape) * old)
    for w in prunable_weights(model).values():
        w.grad = torch.randn(w.shape)
    k = int(int(old.sum()) * 0.3)
    dropped = torch.topk(
        weight.detach().abs().flatten().masked_fill(~old.flatten(), 1e9), k, largest=False
    ).indices
    kept = old.flatten().clone()
    kept[dropped] = False
    expected = torch.topk(weight.grad.abs().flatten().masked_fill(kept, -1.0), k).indices
    method.update_masks(0.3)
    new = method.masked.masks[name].flatten()
    assert set(torch.nonzero(new & ~kept).flatten().tolist()) == set(expected.tolist())
    assert int(new.sum()) == int(old.sum())


def test_grown_weights_start_at_zero(tiny_data):
    model = MLP(8, 16, 1, 4)
    method = build("rigl", density=0.25, end_step=100)
    method.setup(model, tiny_data)
    old = {n: m.clone() for n, m in method.masked.masks.items()}
    for w in prunable_weights(model).values():
        w.grad = torch.randn(w.shape)
    method.update_masks(0.3)
    for name, weight in method.masked.params.items():
        grown = method.masked.masks[name] & ~old[name]
        assert grown.any()
        assert (weight[grown] == 0).all()


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_pruned_weights_stay_zero_under_momentum_decay_and_adam(tiny_data, optimizer):
    model = MLP(8, 32, 2, 4)
    method = build("rigl", density=0.2, update_interval=3, end_step=30)
    method.setup(model, tiny_data)

    def check(m):
        for name, weight in m.masked.params.items():
            assert (weight[~m.masked.masks[name]] == 0).all()

    budget = Budget(
        steps=30, batch_size=32, eval_every=30, optimizer=optimizer, weight_decay=0.1, momentum=0.9
    )
    train(model, tiny_data, budget, 0, Recorder(method, check))
    assert method.extra_metrics()["mask_updates"] == 9


def test_missing_end_step_without_total_steps_is_refused(tiny_data):
    with pytest.raises(ValueError, match="end_step"):
        build("rigl", density=0.2).setup(MLP(8, 16, 1, 4), tiny_data)


def test_cosine_is_the_default_drop_schedule_of_rigl():
    method = build("rigl", end_step=100)
    method.end_step = 100
    assert method.drop_fraction(0) == pytest.approx(0.3)
    assert method.drop_fraction(50) == pytest.approx(0.15)
    assert method.drop_fraction(100) == 0.0


def test_grown_positions_get_a_clean_optimizer_state_once_bound(tiny_data):
    model = MLP(8, 16, 1, 4)
    method = build("rigl", density=0.25, end_step=100)
    method.setup(model, tiny_data)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    method.bind_optimizer(optimizer)
    for w in prunable_weights(model).values():
        w.grad = torch.randn(w.shape)
    optimizer.step()
    old = {n: m.clone() for n, m in method.masked.masks.items()}
    method.update_masks(0.3)
    for name, weight in method.masked.params.items():
        grown = method.masked.masks[name] & ~old[name]
        buffer = optimizer.state[weight]["momentum_buffer"]
        assert (buffer[grown] == 0).all() and (buffer[old[name]] != 0).any()
