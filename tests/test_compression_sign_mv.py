import math

import torch

from sparsebench import registry
from sparsebench.comm.majority import decode_signs, encode_signs, majority
from sparsebench.engines import workers
from sparsebench.engines.context import RunContext
from sparsebench.models import build_model
from sparsebench.seeds import all_seeds
from sparsebench.spec import Budget, Component, RunSpec

LR = 0.01


class FixedPool:
    """Worker w's gradient is whatever the test put in `grads[w]`."""

    lr = LR

    def __init__(self, x: torch.Tensor, grads: list[torch.Tensor]) -> None:
        self.x, self.grads, self.workers = x.clone(), grads, len(grads)

    def flat(self) -> torch.Tensor:
        return self.x.clone()

    def assign(self, flat: torch.Tensor) -> None:
        self.x = flat.clone()

    def grad(self, worker: int, at=None, batch=None) -> tuple[torch.Tensor, float]:
        return self.grads[worker], 1.0


def make(**params):
    """sign-mv stepping at the pool's (budget's) learning rate unless told otherwise."""
    entry = registry.get("compression", "sign-mv")
    return entry.obj(registry.make_params("compression", "sign-mv", {"lr": None, **params}), 0)


def test_majority_is_the_elementwise_vote_and_a_tie_goes_to_plus_one():
    signs = torch.tensor([[1, 1, -1, -1, 1], [1, -1, -1, 1, -1], [-1, 1, -1, 1, -1]]).float()
    vote = decode_signs(majority([encode_signs(s) for s in signs]))
    assert torch.equal(vote, torch.tensor([1, 1, -1, 1, -1]).float())
    tied = decode_signs(majority([encode_signs(signs[0]), encode_signs(-signs[0])]))
    assert torch.equal(tied, torch.ones(5))


def test_sign_mv_moves_every_coordinate_by_lr_along_the_majority_sign():
    grads = [torch.randn(1001) for _ in range(3)]
    pool = FixedPool(torch.randn(1001), grads)
    x = pool.x.clone()
    out = make(workers=3, momentum=0.0).step(pool, 1)
    majority_sign = torch.where(torch.stack(grads).sign().sum(0) >= 0, 1.0, -1.0)
    assert torch.allclose(pool.x, x - LR * majority_sign)
    assert torch.allclose((pool.x - x).abs(), torch.full((1001,), LR))
    assert out.bytes_up == out.bytes_down == [math.ceil(1001 / 8)] * 3
    assert out.bytes_up[0] == len(encode_signs(grads[0]).to_bytes())


def test_sign_mv_votes_on_the_workers_momentum_and_applies_weight_decay():
    first, second = torch.tensor([1.0, -1.0]), torch.tensor([-0.5, 0.5])
    pool = FixedPool(torch.tensor([2.0, 2.0]), [first])
    method = make(workers=1, momentum=0.9, weight_decay=0.1)
    method.step(pool, 1)
    pool.grads = [second]
    x = pool.x.clone()
    method.step(pool, 2)
    momentum = 0.9 * 0.1 * first + 0.1 * second
    assert torch.allclose(method.workers[0].momentum, momentum)
    assert torch.allclose(pool.x, x - LR * (momentum.sign() + 0.1 * x))


def test_sign_mv_runs_through_the_engine_at_one_bit_each_way(tiny_data):
    params = {"workers": 2}
    spec = RunSpec("compression", Component("sign-mv", params), Component("tiny"), Component("mlp"))
    torch.manual_seed(0)
    model = build_model(Component("mlp", {"hidden": 16}), tiny_data.input_shape, 4)
    numel = sum(p.numel() for p in model.parameters())
    method = registry.get("compression", "sign-mv").obj(
        registry.make_params("compression", "sign-mv", params), 1
    )
    budget = Budget(steps=3, batch_size=16, lr=0.01, optimizer="sgd", eval_every=3)
    result = workers.run(RunContext(spec, tiny_data, model, method, budget, all_seeds(0)))
    assert result.status == "ok"
    bytes_ = result.costs["bytes"]
    assert bytes_["up"] == bytes_["down"] == 3 * 2 * math.ceil(numel / 8)


def test_sign_mv_steps_at_its_own_learning_rate_the_papers_by_default():
    grads = [torch.randn(64) for _ in range(3)]
    pool = FixedPool(torch.zeros(64), grads)
    make(workers=3, momentum=0.0, lr=1e-4).step(pool, 1)
    assert torch.allclose(pool.x.abs(), torch.full((64,), 1e-4))
    assert registry.make_params("compression", "sign-mv", {}).lr == 1e-4
