import torch

from sparsebench import registry
from sparsebench.engines.context import RunContext
from sparsebench.engines.federated import run
from sparsebench.engines.federated.clients import model_vector, partition_clients, train_round
from sparsebench.engines.federated.decentralized import consensus_distance, node_models
from sparsebench.models.mlp import MLP
from sparsebench.seeds import all_seeds
from sparsebench.spec import Budget, Component, RunSpec

BUDGET = Budget(rounds=3, local_steps=2, batch_size=16, optimizer="sgd", lr=0.1, momentum=0.0)


def _strategy(opts: dict):
    params = registry.make_params("federated", "single-merge", opts)
    return registry.get("federated", "single-merge").obj(params, 0)


def test_single_merge_gossip_draws_floor_r_or_one_more_peers_per_row():
    strategy = _strategy({"clients": 10, "clients_per_round": 1, "neighbors": 1.5})
    for _ in range(5):
        w = strategy.mixing()
        assert torch.allclose(w.sum(1), torch.ones(10, dtype=torch.float64))
        assert (w.diagonal() > 0).all()
        peers = (w > 0).sum(1) - 1
        assert set(peers.tolist()) <= {1, 2}


def test_final_model_is_the_uniform_average_of_the_last_round_models(tiny_data):
    opts = {"clients": 4, "clients_per_round": 1, "neighbors": 1.0, "simulation": "sequential"}
    torch.manual_seed(0)
    model = MLP(8, 16, 1, 4)
    spec = RunSpec("federated", Component("single-merge"), Component("tiny"), Component("mlp"))
    ctx = RunContext(spec, tiny_data, model, _strategy(opts), BUDGET, all_seeds(0))
    models = node_models(model, 4, "shared", ctx.seeds["init"])
    result = run(ctx)
    got = model_vector(model)

    replay, parts, layout = (
        _strategy(opts),
        partition_clients(ctx),
        [p.numel() for p in model.parameters()],
    )
    for rnd in (1, 2, 3):
        models, _ = train_round(ctx, parts, [0, 1, 2, 3], rnd, models)
        if rnd < 3:
            models = replay.gossip(models, layout)
    assert consensus_distance(models) > 0
    assert torch.allclose(got, models.mean(0), atol=1e-6)
    assert result.metrics["consensus_distance"] < 1e-6

    model_bytes = 4 * models.shape[1]
    assert result.curves["bytes_up"][:2] == [4 * model_bytes, 4 * model_bytes]
    assert result.curves["bytes_up"][2] == 4 * 3 * model_bytes


def test_without_gossip_only_the_merge_communicates(tiny_data):
    opts = {"clients": 4, "clients_per_round": 1, "neighbors": 0.0, "simulation": "sequential"}
    spec = RunSpec("federated", Component("single-merge"), Component("tiny"), Component("mlp"))
    model = MLP(8, 16, 1, 4)
    result = run(RunContext(spec, tiny_data, model, _strategy(opts), BUDGET, all_seeds(0)))
    model_bytes = 4 * model_vector(model).numel()
    assert result.curves["bytes_up"] == [0, 0, 12 * model_bytes]
    assert (
        result.curves["consensus_distance"][1] > 0 and result.curves["consensus_distance"][2] < 1e-6
    )
