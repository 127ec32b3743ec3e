"""Training FLOPs are charged as executed: each step at the density its weights had then, with
a dense weight gradient where the method needs one (RigL appendix H's rule)."""

from __future__ import annotations

import pytest
import torch

from sparsebench.engines.trainer import train
from sparsebench.hooks import TrainHooks
from sparsebench.metrics import flop_profile
from sparsebench.models.mlp import MLP
from sparsebench.spec import Budget

BUDGET = Budget(steps=20, batch_size=16, eval_every=10, lr=1e-2)


class PruneAt(TrainHooks):
    """Keeps every weight until `step`, then zeroes the first layer but a tenth of its rows."""

    def __init__(self, model: MLP, step: int, dense_grad: bool = False) -> None:
        self.weight, self.step, self.dense_grad = model.net[0].weight, step, dense_grad

    def after_step(self, step: int) -> None:
        if step >= self.step:
            with torch.no_grad():
                self.weight[self.weight.shape[0] // 10 :] = 0.0

    def dense_weight_grad(self, step: int) -> bool:
        return self.dense_grad


def model() -> MLP:
    torch.manual_seed(0)
    return MLP(8, 40, 1, 4)


def test_dense_steps_are_charged_dense_and_pruned_steps_at_their_density(tiny_data):
    net = model()
    profile = flop_profile(net, tiny_data.x_train)
    log = train(net, tiny_data, BUDGET, data_seed=0, hooks=PruneAt(net, step=5))
    sparse = profile.train({"net.0.weight": 0.1})
    # Steps 1-5 run dense (the mask is applied after step 5), steps 6-20 at 10% in layer 0.
    expected = 16 * (5 * profile.dense_train() + 15 * sparse)
    assert log.train_flops == pytest.approx(expected)
    assert sparse < profile.dense_train()


def test_a_dense_weight_gradient_is_charged_dense(tiny_data):
    net = model()
    profile = flop_profile(net, tiny_data.x_train)
    log = train(net, tiny_data, BUDGET, data_seed=0, hooks=PruneAt(net, 0, dense_grad=True))
    per_sample = profile.train({"net.0.weight": 0.1}, dense_weight_grad=True)
    # Step 1 runs dense; the 19 after it sparse, with the weight gradient dense.
    assert log.train_flops == pytest.approx(16 * (profile.dense_train() + 19 * per_sample))
    assert per_sample > profile.train({"net.0.weight": 0.1})


def test_profile_splits_a_linear_layer_into_forward_input_and_weight_gradients(tiny_data):
    profile = flop_profile(model(), tiny_data.x_train)
    first, last = "net.0.weight", "net.2.weight"
    assert profile.forward[first] == 2 * 8 * 40 and profile.weight_grad[first] == 2 * 8 * 40
    assert profile.input_grad[first] == 0  # the input needs no gradient
    assert profile.input_grad[last] == profile.forward[last] == 2 * 40 * 4


def test_magnitude_pruning_pays_for_its_dense_phase(root):
    from sparsebench.config import load_hardware
    from sparsebench.runner import execute
    from sparsebench.spec import Component, RunSpec

    spec = RunSpec(
        "pruning",
        Component("magnitude", {"density": 0.1, "finetune_fraction": 0.3}),
        Component("digits"),
        Component("mlp", {"hidden": 32}),
        "cpu",
        0,
        {"steps": 20, "batch_size": 32, "eval_every": 10},
    )
    flops = execute(spec, load_hardware("cpu", root))["costs"]["flops"]
    ratio = flops["train_sparse"] / flops["train_dense"]
    # 14 dense steps, then 6 with 10% of the prunable weights (biases and the rest stay dense).
    assert 0.7 < ratio < 0.75
