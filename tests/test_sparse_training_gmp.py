import pytest
import torch

from sparsebench import registry
from sparsebench.engines.trainer import train
from sparsebench.hooks import TrainHooks
from sparsebench.models.mlp import MLP
from sparsebench.sparsity.masks import keep_count
from sparsebench.sparsity.schedules import cubic_density
from sparsebench.spec import Budget


def build(**params):
    return registry.get("sparse_training", "gmp").obj(
        registry.make_params("sparse_training", "gmp", params), 0
    )


class Check(TrainHooks):
    def __init__(self, method):
        self.method, self.seen = method, []

    def after_backward(self, step):
        self.method.after_backward(step)

    def after_step(self, step):
        self.method.after_step(step)
        for name, weight in self.method.masked.params.items():
            count = int(torch.count_nonzero(weight))
            if step in (5, 10, 15, 20, 25, 30):
                target = cubic_density(step, 0.1, 5, 30)
                assert count == keep_count(weight.numel(), target), (step, name)
            self.seen.append((step, name, count))


def test_density_after_each_pruning_step_equals_the_cubic_schedule(tiny_data):
    model = MLP(8, 32, 2, 4)
    method = build(density=0.1, start_step=5, end_step=30, interval=5)
    method.setup(model, tiny_data)
    hooks = Check(method)
    train(model, tiny_data, Budget(steps=40, batch_size=32, eval_every=40), 0, hooks)
    assert method.extra_metrics()["prune_steps"] == 6
    final = {name: c for step, name, c in hooks.seen if step == 40}
    for name, weight in method.masked.params.items():
        assert final[name] == keep_count(weight.numel(), 0.1)


def test_pruned_weights_never_come_back(tiny_data):
    model = MLP(8, 32, 1, 4)
    method = build(density=0.2, start_step=1, end_step=20, interval=2)
    method.setup(model, tiny_data)
    previous = {n: m.clone() for n, m in method.masked.masks.items()}
    for step in range(1, 21):
        with torch.no_grad():
            for w in method.masked.params.values():
                w.add_(torch.randn(w.shape) * 0.1)
        method.after_step(step)
        for name, mask in method.masked.masks.items():
            assert not (mask & ~previous[name]).any()
            previous[name] = mask.clone()


def test_end_before_start_is_refused(tiny_data):
    with pytest.raises(ValueError, match="end_step"):
        build(start_step=10, end_step=5).setup(MLP(8, 16, 1, 4), tiny_data)
