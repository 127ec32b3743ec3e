"""The throughput benchmark compares equal work: the bare torch.func loop, the bare sequential
loop, the actor-per-client baseline and the engine's round train the same clients on the same
minibatches to the same global model; bad options are refused, naming the option, before any
work; and the document holds every mode, ratio and strategy (measured on a tiny workload: no
timing is asserted here)."""

import pytest
import torch

from sparsebench import registry
from sparsebench.cli import main
from sparsebench.engines.federated import throughput as ft
from sparsebench.engines.federated.clients import model_vector, partition_clients, train_round
from sparsebench.engines.federated.synchronous import new_server, population, server_round

WORK = ft.Workload(clients=8, samples_per_client=32, local_steps=3, batch=16, lr=0.1)


def _flat(tensors) -> torch.Tensor:
    return torch.cat([t.flatten() for t in tensors])


def test_the_bare_loops_reach_the_engines_global_model(tiny_data):
    registry.load_all()
    ctx = ft.context(tiny_data, WORK, 4, ft.FEDAVG, "vmap")
    pop, server = population(ctx), new_server(ctx)
    server_round(ctx, pop, server, 1)
    parts = torch.stack(partition_clients(ctx))
    x, y = tiny_data.x_train[parts], tiny_data.y_train[parts]
    fresh = ft.context(tiny_data, WORK, 4, ft.FEDAVG, "vmap")
    start = {n: p.detach().clone() for n, p in fresh.model.named_parameters()}
    gradient = ft.bare_vmap_gradient(fresh.model)
    bare = ft.bare_vmap_round(gradient, start, x, y, ft.RoundSampler(fresh), WORK.lr)
    assert torch.allclose(_flat(bare.values()), server.global_vec, atol=1e-5)
    seq = ft.context(tiny_data, WORK, 4, ft.FEDAVG, "sequential")
    params = [p.detach().clone() for p in seq.model.parameters()]
    bare = ft.bare_sequential_round(seq.model, params, x, y, ft.RoundSampler(seq), WORK.lr)
    assert torch.allclose(_flat(bare), server.global_vec, atol=1e-5)


def test_actor_trained_clients_match_the_sequential_engine(tiny_data):
    registry.load_all()
    ctx = ft.context(tiny_data, WORK, 3, ft.FEDAVG, "sequential")
    parts = partition_clients(ctx)
    start = model_vector(ctx.model)
    sampled = [1, 4, 6]
    expected, _ = train_round(ctx, parts, sampled, 2, start)
    with ft.actor_pool(tiny_data, WORK, 3) as pool:
        got = ft.actor_round(pool, ctx, parts, sampled, 2, start)
    assert torch.equal(got, expected)


@pytest.mark.parametrize(
    "args,option",
    [
        (["--model", "gpt"], "--model"),
        (["--widths", "64,32"], "--widths"),
        (["--strategy", "fedbuff"], "--strategy"),
        (["--per-round", "10,2000"], "--per-round"),
        (["--local-steps", "0"], "--local-steps"),
    ],
)
def test_a_bad_option_is_refused_by_name_before_any_work(args, option, capsys, monkeypatch):
    monkeypatch.setattr(ft, "measure", lambda *a, **k: pytest.fail("measured a bad workload"))
    assert main(["throughput", *args]) == 2
    assert option in capsys.readouterr().err


def test_measure_reports_every_mode_ratio_and_strategy(tiny_data):
    tiny = {"clients": 8, "samples_per_client": 32, "batch": 16, "per_round": (2, 4)}
    work = ft.Workload(**tiny, rounds=1, warmup=0, strategy="scaffold")
    doc = ft.measure(work, data=tiny_data, progress=lambda line: None)
    cells = {(row["clients_per_round"], row["mode"]) for row in doc["rows"]}
    assert cells == {(k, mode) for k in (2, 4) for mode in ft.MODES}
    assert all(row["clients_per_s"] > 0 and row["round_s"] > 0 for row in doc["rows"])
    assert [r["clients_per_round"] for r in doc["ratios"]] == [2, 4]
    for r in doc["ratios"]:
        assert r["vmap_over_bare_vmap"] > 0 and r["sequential_over_bare_sequential"] > 0
    strategies = {(s["clients_per_round"], s["strategy"]): s for s in doc["strategies"]}
    assert set(strategies) == {(k, name) for k in (2, 4) for name in ("fedavg", "scaffold")}
    assert all(strategies[(k, "fedavg")]["ratio_to_fedavg"] == 1.0 for k in (2, 4))
    assert doc["work"]["samples_per_client"] == 32 and doc["work"]["per_round"] == (2, 4)
