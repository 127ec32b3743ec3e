import pytest
import torch

from sparsebench import registry
from sparsebench.comm.aggregation import combine
from sparsebench.comm.attacks import attack
from sparsebench.engines.context import RunContext
from sparsebench.engines.federated import run
from sparsebench.engines.federated.clients import byzantine_clients, model_vector
from sparsebench.models.mlp import MLP
from sparsebench.seeds import all_seeds
from sparsebench.spec import Budget, Component, RunSpec


def _updates(honest: int, byzantine: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    center = torch.randn(6, generator=g)
    good = center + 0.01 * torch.randn(honest, 6, generator=g)
    bad = 1e6 * torch.randn(byzantine, 6, generator=g)
    return torch.cat([bad, good]), center


@pytest.mark.parametrize("rule", ["median", "trimmed-mean", "krum"])
def test_robust_rules_ignore_a_minority_of_arbitrary_updates(rule):
    updates, center = _updates(honest=7, byzantine=3)
    weights = torch.full((10,), 0.1)
    options = {"trim_fraction": 0.3, "byzantine": 3}
    assert (combine(updates, weights, rule, options) - center).abs().max() < 0.05
    assert (combine(updates, weights, "mean", options) - center).abs().max() > 1e3


def test_attacks_replace_the_honest_update():
    delta, g = torch.ones(4), torch.Generator().manual_seed(0)
    assert torch.equal(attack(delta, "sign-flip", 2.0, g), -2 * delta)
    assert torch.equal(attack(delta, "scaled", 3.0, g), 3 * delta)
    assert not torch.equal(attack(delta, "gaussian", 1.0, g), delta)


def test_byzantine_clients_change_the_run_only_when_present(tiny_data):
    def final(extra: dict) -> torch.Tensor:
        opts = {"clients": 8, "clients_per_round": 8, "partition": "iid", **extra}
        method = registry.get("federated", "fedavg").obj(
            registry.make_params("federated", "fedavg", opts), 0
        )
        spec = RunSpec("federated", Component("fedavg"), Component("tiny"), Component("mlp"))
        budget = Budget(rounds=2, local_steps=2, batch_size=16, optimizer="sgd", lr=0.1)
        torch.manual_seed(0)
        model = MLP(8, 16, 1, 4)
        run(RunContext(spec, tiny_data, model, method, budget, all_seeds(0)))
        return model_vector(model)

    honest = final({})
    assert torch.equal(
        final({"byzantine_fraction": 0.25, "attack": "scaled", "attack_scale": 1}), honest
    )
    assert not torch.allclose(final({"byzantine_fraction": 0.25}), honest)
    assert len(byzantine_clients(8, 0.25, seed=5)) == 2
