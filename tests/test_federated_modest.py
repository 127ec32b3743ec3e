import random

import torch

from sparsebench import registry
from sparsebench.engines.context import RunContext
from sparsebench.engines.federated import run
from sparsebench.engines.federated.clients import model_vector, partition_clients, train_round
from sparsebench.models.mlp import MLP
from sparsebench.seeds import all_seeds
from sparsebench.spec import Budget, Component, RunSpec

OPTS = {"clients": 8, "clients_per_round": 3, "aggregators": 2, "simulation": "sequential"}
BUDGET = Budget(rounds=2, local_steps=2, batch_size=16, optimizer="sgd", lr=0.1, momentum=0.0)


def _strategy(opts: dict, seed: int = 0):
    params = registry.make_params("federated", "modest", opts)
    return registry.get("federated", "modest").obj(params, seed)


def test_modest_every_node_derives_the_same_sample_from_the_shared_seed():
    nodes = list(range(20))
    opts = {**OPTS, "clients": 20, "clients_per_round": 5}
    for rnd in range(1, 6):
        views = [random.Random(node).sample(nodes, len(nodes)) for node in nodes]
        samples = {tuple(_strategy(opts).sample(rnd, view)) for view in views}
        assert len(samples) == 1
    rounds = [tuple(_strategy(opts).sample(r)) for r in range(1, 6)]
    assert len(set(rounds)) > 1
    assert rounds != [tuple(_strategy(opts, seed=1).sample(r)) for r in range(1, 6)]


def test_modest_model_is_the_uniform_average_of_the_sample_models(tiny_data):
    torch.manual_seed(0)
    model = MLP(8, 16, 1, 4)
    start = model_vector(model)
    spec = RunSpec("federated", Component("modest"), Component("tiny"), Component("mlp"))
    ctx = RunContext(spec, tiny_data, model, _strategy(OPTS), BUDGET, all_seeds(0))
    result = run(ctx)
    got = model_vector(model)

    strategy, parts, want = _strategy(OPTS), partition_clients(ctx), start
    for rnd in (1, 2):
        trained, _ = train_round(ctx, parts, strategy.sample(rnd), rnd, want)
        want = trained.mean(0)
    assert torch.allclose(got, want, atol=1e-6)

    model_bytes = 4 * start.numel()
    for rnd, up in zip((1, 2), result.curves["bytes_up"], strict=True):
        sample, aggs = strategy.sample(rnd), strategy.sample(rnd + 1)[:2]
        assert up == model_bytes * (3 * 2 - len(set(sample) & set(aggs)))
    assert result.curves["bytes_down"] == [model_bytes * (2 * 3 - 2), 0]
