import copy

import torch

from sparsebench import registry
from sparsebench.engines.context import RunContext
from sparsebench.engines.federated import run
from sparsebench.engines.federated.clients import model_vector
from sparsebench.models.mlp import MLP
from sparsebench.seeds import all_seeds
from sparsebench.spec import Budget, Component, RunSpec

BUDGET = Budget(rounds=3, local_steps=2, batch_size=16, optimizer="sgd", lr=0.1, momentum=0.0)


def _strategy(name: str, opts: dict):
    return registry.get("federated", name).obj(registry.make_params("federated", name, opts), 0)


def _run(data, name: str, opts: dict, model):
    spec = RunSpec("federated", Component(name), Component("tiny"), Component("mlp"))
    result = run(RunContext(spec, data, model, _strategy(name, opts), BUDGET, all_seeds(0)))
    return result, model_vector(model)


def test_fedbuff_with_equal_speeds_and_full_buffer_is_fedavg(tiny_data):
    torch.manual_seed(0)
    model = MLP(8, 16, 1, 4)
    common = {"clients": 8, "clients_per_round": 4, "partition": "iid"}
    sync = {**common, "buffer_size": 4, "speed_distribution": "constant"}
    result, buffered = _run(tiny_data, "fedbuff", sync, copy.deepcopy(model))
    _, averaged = _run(tiny_data, "fedavg", common, copy.deepcopy(model))
    assert torch.allclose(buffered, averaged, atol=1e-6)
    assert result.curves["sim_time"] == [2.0, 4.0, 6.0]


def test_fedbuff_server_step_weights_updates_by_staleness():
    server = _strategy(
        "fedbuff", {"clients": 4, "clients_per_round": 2, "buffer_size": 2, "server_lr": 0.5}
    )
    x, d1, d2 = torch.zeros(3), torch.tensor([1.0, 2.0, 3.0]), torch.tensor([-2.0, 0.0, 4.0])
    got = server.aggregate_buffer(x, [d1, d2], staleness=[0, 3])
    assert torch.allclose(got, 0.5 * (d1 + d2 / 2) / 2)


def test_fedbuff_with_heterogeneous_speeds_runs_the_requested_server_steps(tiny_data):
    opts = {"clients": 8, "clients_per_round": 4, "buffer_size": 2, "speed_sigma": 1.0}
    result, _ = _run(tiny_data, "fedbuff", opts, MLP(8, 16, 1, 4))
    times = result.curves["sim_time"]
    assert len(times) == 3 and times == sorted(times)
    assert result.costs["bytes"]["up"] > 0


def test_an_omniscient_attack_is_refused_at_load_time_for_fedbuff():
    import pytest

    from sparsebench import registry

    with pytest.raises(ValueError, match="FedBuff aggregates one client at a time"):
        registry.make_params("federated", "fedbuff", {"byzantine_fraction": 0.2, "attack": "alie"})
