import copy

import torch

from sparsebench import registry
from sparsebench.engines.context import RunContext
from sparsebench.engines.federated import run
from sparsebench.engines.federated.clients import model_vector
from sparsebench.models.mlp import MLP
from sparsebench.seeds import all_seeds
from sparsebench.spec import Budget, Component, RunSpec


def _strategy(name: str, opts: dict):
    return registry.get("federated", name).obj(registry.make_params("federated", name, opts), 0)


def _run(data, name: str, opts: dict, model, rounds: int):
    budget = Budget(
        rounds=rounds, local_steps=2, batch_size=16, optimizer="sgd", lr=0.1, momentum=0.0
    )
    spec = RunSpec("federated", Component(name), Component("tiny"), Component("mlp"))
    strategy = _strategy(name, opts)
    result = run(RunContext(spec, data, model, strategy, budget, all_seeds(0)))
    return result, model_vector(model), strategy


def test_fedfix_with_equal_speeds_and_one_work_per_interval_is_fedavg(tiny_data):
    torch.manual_seed(0)
    model = MLP(8, 16, 1, 4)
    common = {"clients": 4, "clients_per_round": 4, "simulation": "sequential"}
    fixed = {**common, "speed_distribution": "constant", "interval": 1.0}
    result, fedfix, _ = _run(tiny_data, "fedfix", fixed, copy.deepcopy(model), rounds=3)
    _, fedavg, _ = _run(tiny_data, "fedavg", common, copy.deepcopy(model), rounds=3)
    assert torch.allclose(fedfix, fedavg, atol=1e-5)
    assert result.curves["sim_time"] == [2.0, 4.0, 6.0]


def test_fedfix_merges_whoever_arrived_at_each_fixed_time(tiny_data):
    opts = {"clients": 4, "clients_per_round": 4, "speed_spread": 0.6, "interval": 0.27}
    result, _, strategy = _run(tiny_data, "fedfix", opts, MLP(8, 16, 1, 4), rounds=12)
    periods = {c: strategy.period(c, 2) for c in range(4)}
    assert sorted(periods.values()) == [2, 3, 3, 4]
    model_bytes = 4 * sum(p.numel() for p in MLP(8, 16, 1, 4).parameters())
    arrivals = {r: sum(r % p == 0 for p in periods.values()) for r in range(1, 13)}
    logged = [r for r in range(1, 13) if arrivals[r]]
    assert result.curves["round"] == logged
    assert result.curves["bytes_up"] == [arrivals[r] * model_bytes for r in logged]
    assert result.curves["sim_time"] == [r * 0.27 * 2 for r in logged]


def test_fedfix_step_weights_each_arrival_by_its_period_times_its_importance():
    strategy = _strategy(
        "fedfix", {"clients": 3, "clients_per_round": 3, "interval": 0.4, "server_lr": 0.5}
    )
    strategy.speeds = torch.tensor([1.0, 0.7, 0.3], dtype=torch.float64)
    strategy.set_population([0, 1, 2], [10, 30, 60])
    assert [strategy.period(c, 5) for c in range(3)] == [3, 2, 1]
    x, d0, d2 = torch.zeros(2), torch.tensor([1.0, -1.0]), torch.tensor([2.0, 4.0])
    got = strategy.aggregate_interval(x, [d0, d2], [0, 2], local_steps=5)
    assert torch.allclose(got, 0.5 * (3 * 0.1 * d0 + 1 * 0.6 * d2))
