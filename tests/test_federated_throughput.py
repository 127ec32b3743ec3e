"""The throughput benchmark's actor-per-client baseline does the engine's work: a client trained
in a worker process from the shipped parameters ends exactly where the in-process engine ends;
and the measurement covers every mode and clients-per-round."""

import torch

from sparsebench import registry
from sparsebench.engines.federated import throughput as ft
from sparsebench.engines.federated.clients import model_vector, partition_clients, train_round


def test_actor_trained_clients_match_the_sequential_engine(tiny_data):
    registry.load_all()
    ctx = ft._context(tiny_data, clients=8, per_round=3, simulation="sequential")
    parts = partition_clients(ctx)
    start = model_vector(ctx.model)
    sampled = [1, 4, 6]
    expected, _ = train_round(ctx, parts, sampled, 2, start)
    with ft.actor_pool(tiny_data, threads=1, clients=8, per_round=3) as pool:
        got = ft.actor_round(pool, ctx, parts, sampled, 2, start)
    assert torch.equal(got, expected)


def test_measure_reports_every_mode_at_every_clients_per_round(tiny_data):
    doc = ft.measure(rounds=1, clients=8, per_round=(2, 4), data=tiny_data)
    cells = {(row["clients_per_round"], row["mode"]) for row in doc["rows"]}
    assert cells == {(k, mode) for k in (2, 4) for mode in ft.MODES}
    assert all(row["clients_per_s"] > 0 for row in doc["rows"])
