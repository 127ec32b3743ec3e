import pytest
import torch

from sparsebench import registry
from sparsebench.engines.context import RunContext
from sparsebench.engines.federated import run
from sparsebench.engines.federated.clients import model_vector
from sparsebench.engines.federated.decentralized import consensus_distance, node_models
from sparsebench.models.mlp import MLP
from sparsebench.seeds import all_seeds
from sparsebench.spec import Budget, Component, RunSpec


def _dpsgd(**opts):
    params = registry.make_params("federated", "dpsgd", {"clients_per_round": 1, **opts})
    return registry.get("federated", "dpsgd").obj(params, 3)


@pytest.mark.parametrize("topology", ["ring", "torus", "random-regular"])
@pytest.mark.parametrize("weights", ["metropolis", "uniform"])
def test_mixing_matrix_is_symmetric_doubly_stochastic_on_the_graph(topology, weights):
    strategy = _dpsgd(clients=12, topology=topology, weights=weights, degree=4)
    w = strategy.w
    assert torch.allclose(w.sum(0), torch.ones(12, dtype=torch.float64), atol=1e-12)
    assert torch.allclose(w.sum(1), torch.ones(12, dtype=torch.float64), atol=1e-12)
    assert torch.equal(w, w.T) and (w >= 0).all()
    off_graph = torch.ones(12, 12, dtype=torch.bool)
    for i, j in strategy.graph.edges():
        off_graph[i, j] = off_graph[j, i] = False
    off_graph.fill_diagonal_(False)
    assert (w[off_graph] == 0).all()


def test_gossip_keeps_the_average_and_shrinks_consensus_distance():
    strategy = _dpsgd(clients=10, topology="ring", gossip_steps=3)
    models = torch.randn(10, 50, generator=torch.Generator().manual_seed(0))
    mixed = strategy.gossip(models, [50])
    assert torch.allclose(mixed.mean(0), models.mean(0), atol=1e-6)
    assert consensus_distance(mixed) < 0.8 * consensus_distance(models)


def test_dpsgd_run_reports_consensus_distance_and_neighbour_bytes(tiny_data):
    method = _dpsgd(clients=4, topology="ring", degree=2, gossip_steps=2)
    spec = RunSpec("federated", Component("dpsgd"), Component("tiny"), Component("mlp"))
    model = MLP(8, 16, 1, 4)
    numel = sum(p.numel() for p in model.parameters())
    budget = Budget(rounds=2, local_steps=2, batch_size=16, optimizer="sgd", lr=0.1)
    result = run(RunContext(spec, tiny_data, model, method, budget, all_seeds(0)))
    assert len(result.curves["consensus_distance"]) == 2
    assert result.costs["bytes"]["up"] == 2 * 4 * 2 * 2 * 4 * numel  # rounds*nodes*deg*steps*fp32


def test_independent_init_gives_each_node_its_own_fresh_initialisation():
    model = MLP(8, 16, 1, 4)
    before = model_vector(model)
    shared = node_models(model, 3, "shared", seed=1)
    independent = node_models(model, 3, "independent", seed=1)
    assert torch.equal(shared, before.expand(3, -1))
    assert not torch.allclose(independent[0], independent[1])
    assert torch.equal(independent, node_models(model, 3, "independent", seed=1))
    assert torch.equal(model_vector(model), before)
    first_layer = slice(0, 8 * 16)
    assert independent[:, first_layer].std(1).sub(before[first_layer].std()).abs().max() < 0.05
