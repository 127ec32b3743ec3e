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
    name, weight = "net.2.weight", model.net[2].weight
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


def test_a_mask_update_step_makes_no_optimizer_step(tiny_data):
    model = MLP(8, 16, 1, 4)
    method = build("rigl", density=0.25, update_interval=5, end_step=20)
    method.setup(model, tiny_data)
    name = "net.2.weight"
    seen = {}

    class Watch(Recorder):
        def after_backward(self, step):
            self.before = model.net[2].weight.detach().clone()
            super().after_backward(step)

        def after_step(self, step):
            super().after_step(step)
            kept = method.masked.masks[name] & (self.before != 0)
            seen[step] = torch.equal(model.net[2].weight[kept], self.before[kept])

        def skips_optimizer_step(self, step):
            return method.skips_optimizer_step(step)

    budget = Budget(steps=12, batch_size=32, eval_every=12, optimizer="sgd", lr=0.1)
    train(model, tiny_data, budget, 0, Watch(method, lambda m: None))
    assert [s for s, unchanged in seen.items() if unchanged] == [5, 10]
    assert not build("rigl", step_on_update=True, end_step=20).skips_optimizer_step(5)


def test_a_weight_dropped_and_regrown_in_one_update_keeps_its_value_and_state(tiny_data):
    model = MLP(8, 16, 1, 4)
    method = build("rigl", density=0.25, allocation="uniform", end_step=100)
    method.setup(model, tiny_data)
    weight, mask = model.net[2].weight, method.masked.masks["net.2.weight"]
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    method.bind_optimizer(optimizer)
    with torch.no_grad():
        weight.copy_(torch.where(mask, 1.0 + torch.rand(weight.shape), 0.0))
        smallest = torch.where(mask.flatten())[0][0]
        weight.view(-1)[smallest] = 0.01  # dropped first ...
    for w in prunable_weights(model).values():
        w.grad = torch.zeros(w.shape)
    weight.grad.view(-1)[smallest] = 100.0  # ... and regrown first
    optimizer.step()
    momentum = optimizer.state[weight]["momentum_buffer"].view(-1)[smallest].item()
    weight.grad.view(-1)[smallest] = 100.0
    method.update_masks(0.3)
    assert method.masked.masks["net.2.weight"].view(-1)[smallest]
    assert weight.view(-1)[smallest].item() != 0.0
    assert optimizer.state[weight]["momentum_buffer"].view(-1)[smallest].item() == momentum


def test_the_first_layer_is_dense_and_outside_the_density_budget_by_default(tiny_data):
    from sparsebench.sparsity.masked import measured_density

    for name in ("rigl", "set"):
        model = MLP(8, 32, 2, 4)
        method = build(name, density=0.2, allocation="uniform", end_step=100)
        method.setup(model, tiny_data)
        assert sorted(method.masked.masks) == ["net.2.weight", "net.4.weight"]
        assert torch.count_nonzero(model.net[0].weight) == model.net[0].weight.numel()
        kept = sum(int(m.sum()) for m in method.masked.masks.values())
        total = sum(m.numel() for m in method.masked.masks.values())
        assert abs(kept / total - 0.2) < 0.01
        assert measured_density(model)[0] > 0.25
        sparse_everywhere = build(name, density=0.2, end_step=100, dense_first_layer=False)
        sparse_everywhere.setup(MLP(8, 32, 2, 4), tiny_data)
        assert "net.0.weight" in sparse_everywhere.masked.masks


def test_set_and_rigl_share_the_cosine_drop_schedule_by_default():
    rigl, set_ = build("rigl", end_step=100), build("set", end_step=100)
    assert rigl.params.drop_schedule == set_.params.drop_schedule == "cosine"
