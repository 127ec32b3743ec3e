import pytest
import torch

from sparsebench import registry
from sparsebench.engines import workers
from sparsebench.engines.context import RunContext
from sparsebench.models import build_model
from sparsebench.seeds import all_seeds
from sparsebench.spec import Budget, Component, RunSpec


def make(name: str, **params):
    entry = registry.get("compression", name)
    return entry.obj(registry.make_params("compression", name, params), 0)


def supports(method, d: int, round_: int) -> list[set[int]]:
    return [set(s.compressor.indices(d, round_).tolist()) for s in method.senders]


def test_randk_workers_draw_their_own_coordinates_each_step():
    method = make("randk", workers=3, density=0.05)
    grads = [torch.randn(1000) for _ in range(3)]
    first, second = supports(method, 1000, 0), supports(method, 1000, 1)
    assert all(len(s) == 50 for s in first)
    assert first[0] != first[1] != first[2] and first[0] != second[0]
    out = method.exchange(grads)
    expected = torch.zeros(1000)
    for grad, chosen in zip(grads, first, strict=True):
        idx = torch.tensor(sorted(chosen))
        expected[idx] += grad[idx] * 20 / 3
    assert torch.allclose(out.update, expected)


def one_worker_estimates(d: int, density: float, rounds: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A fixed gradient and `rounds` of worker 0's decoded estimates of it."""
    grad = torch.randn(d, generator=torch.Generator().manual_seed(1))
    codec = make("randk", workers=1, density=density).senders[0].compressor
    return grad, torch.stack([codec.decompress(codec.compress(grad)) for _ in range(rounds)])


def test_randk_estimate_is_unbiased_within_its_standard_error():
    d, density, rounds = 40, 0.25, 4000
    grad, estimates = one_worker_estimates(d, density, rounds)
    std_error = grad.abs() * (1 / density - 1) ** 0.5 / rounds**0.5
    assert ((estimates.mean(0) - grad).abs() <= 5 * std_error).all()


def test_randk_variance_is_d_over_k_minus_one_times_the_squared_gradient():
    d, density, rounds = 40, 0.25, 4000
    grad, estimates = one_worker_estimates(d, density, rounds)
    expected = (1 / density - 1) * grad.square()
    # X = g/p * Bernoulli(p): the sample variance is g^2 q(1-q)/p^2 with q the hit rate, whose
    # standard error sqrt(p(1-p)/N) moves it by |1-2p|/(p(1-p)) relative per unit of q.
    p = density
    relative_sd = abs(1 - 2 * p) / (p * (1 - p)) * (p * (1 - p) / rounds) ** 0.5
    assert ((estimates.var(0) / expected - 1).abs() <= 5 * relative_sd).all()


def union_values_nbytes(method, d: int, round_: int) -> int:
    return 4 * len(set().union(*supports(method, d, round_)))


@pytest.mark.parametrize(("density", "w", "cheaper"), [(0.01, 3, "gather"), (0.5, 4, "union")])
def test_randk_bytes_are_the_serialized_values_and_the_cheaper_downlink(density, w, cheaper):
    grads = [torch.randn(1000) for _ in range(w)]
    replica = make("randk", workers=w, density=density)
    payloads = [s.compressor.compress(g) for s, g in zip(replica.senders, grads, strict=True)]
    method = make("randk", workers=w, density=density)
    out = method.exchange(grads)
    k = round(density * 1000)
    assert out.bytes_up == [len(p.to_bytes()) for p in payloads] == [4 * k] * w
    gather, union = 4 * k * (w - 1), union_values_nbytes(method, 1000, 0)
    assert out.bytes_down == [min(gather, union)] * w
    assert (gather < union) == (cheaper == "gather")


def test_randk_runs_through_the_engine_and_counts_k_values_up(tiny_data):
    params = {"workers": 2, "density": 0.1}
    spec = RunSpec("compression", Component("randk", params), Component("tiny"), Component("mlp"))
    torch.manual_seed(0)
    model = build_model(Component("mlp", {"hidden": 16}), tiny_data.input_shape, 4)
    numel = sum(p.numel() for p in model.parameters())
    method = registry.get("compression", "randk").obj(
        registry.make_params("compression", "randk", params), 1
    )
    budget = Budget(steps=3, batch_size=16, lr=0.01, optimizer="sgd", eval_every=3)
    result = workers.run(RunContext(spec, tiny_data, model, method, budget, all_seeds(0)))
    assert result.status == "ok"
    assert result.costs["bytes"]["up"] == 3 * 2 * 4 * round(0.1 * numel)
    assert 0 < result.costs["bytes"]["down"] <= 3 * 2 * 4 * round(0.1 * numel)
