"""Simulated compute time: devices of different speed, and the asynchronous loops' clock in
measured seconds."""

import dataclasses
import itertools

import pytest
import torch

from sparsebench import registry
from sparsebench.config import load_hardware
from sparsebench.engines.context import RunContext, slowdowns
from sparsebench.engines.federated import clients, run
from sparsebench.engines.federated.clients import message_bytes, model_vector
from sparsebench.models.mlp import MLP
from sparsebench.runner import execute
from sparsebench.seeds import all_seeds
from sparsebench.spec import Budget, Component, RunSpec

BUDGET = Budget(rounds=4, local_steps=2, batch_size=16, optimizer="sgd", lr=0.1, momentum=0.0)


def _ctx(data, name: str, opts: dict, hardware: dict | None = None) -> RunContext:
    strategy = registry.get("federated", name).obj(registry.make_params("federated", name, opts), 0)
    spec = RunSpec("federated", Component(name), Component("tiny"), Component("mlp"))
    model = MLP(8, 16, 1, 4)
    return RunContext(spec, data, model, strategy, BUDGET, all_seeds(0), hardware=hardware or {})


def test_without_a_compute_spread_every_device_is_equally_fast(tiny_data):
    ctx = _ctx(tiny_data, "fedavg", {})
    assert torch.equal(slowdowns(ctx, 5), torch.ones(5, dtype=torch.float64))


def test_a_compute_spread_draws_lognormal_slowdowns_from_the_run_seed(tiny_data):
    ctx = _ctx(tiny_data, "fedavg", {}, {"compute_spread": 0.5})
    drawn = slowdowns(ctx, 20000)
    assert torch.equal(drawn, slowdowns(ctx, 20000))
    assert drawn.log().mean().abs() < 0.02 and drawn.log().std() == pytest.approx(0.5, rel=0.03)
    other = dataclasses.replace(ctx, seeds=all_seeds(1))
    assert not torch.equal(drawn[:5], slowdowns(other, 5))


def test_a_round_lasts_as_long_as_its_slowest_client_on_its_device(tiny_data, monkeypatch):
    ctx = _ctx(tiny_data, "fedavg", {"clients": 3, "clients_per_round": 2})
    ticks = iter([10.0, 14.0])  # the round's two clients take 4 s together, 2 s each
    monkeypatch.setattr(clients.time, "perf_counter", lambda: next(ticks))
    monkeypatch.setattr(clients, "train_round", lambda *a: (torch.zeros(2, 3), [0.0, 0.0]))
    slowdown = torch.tensor([1.0, 3.0, 0.5])
    _, _, seconds = clients.timed_round(ctx, [], [0, 2], 1, torch.zeros(3), slowdown)
    assert seconds == 2.0  # max(2 * 1.0, 2 * 0.5)
    ticks = iter([0.0, 4.0])
    _, _, seconds = clients.timed_round(ctx, [], [0, 1], 1, torch.zeros(3), slowdown)
    assert seconds == 6.0  # max(2 * 1.0, 2 * 3.0)


def test_fedbuff_reports_compute_on_its_clock_and_all_its_bytes_through_the_server(tiny_data):
    opts = {"clients": 8, "clients_per_round": 4, "buffer_size": 2, "speed_sigma": 1.0}
    ctx = _ctx(tiny_data, "fedbuff", opts)
    result = run(ctx)
    compute = result.costs["compute_s_at_eval"]
    assert len(compute) == len(result.curves["round"]) == len(result.traffic) == 4
    assert compute[0] > 0 and all(b > a for a, b in itertools.pairwise(compute))
    bytes_ = result.costs["bytes"]
    assert sum(t[2] for t in result.traffic) == bytes_["up"] + bytes_["down"]
    model_bytes = message_bytes({"model": model_vector(ctx.model)})
    assert all(t[:2] == (2 * model_bytes, 2) for t in result.traffic)


def test_fedfix_charges_every_interval_and_nothing_for_an_empty_one(tiny_data):
    opts = {"clients": 4, "clients_per_round": 4, "speed_spread": 0.6, "interval": 0.27}
    ctx = _ctx(tiny_data, "fedfix", opts)
    result = run(ctx)
    assert len(result.traffic) == BUDGET.rounds
    logged = set(result.curves["round"])
    empty = [t for r, t in enumerate(result.traffic, 1) if r not in logged]
    assert empty and all(t == (0, 0, 0) for t in empty)
    assert len(result.costs["compute_s_at_eval"]) == len(logged)


def test_an_asynchronous_run_reports_time_to_target_per_link(root):
    from test_runner import small_spec

    slow = {"bandwidth_gbps": 0.001, "latency_ms": 0.0}
    hardware = {**load_hardware("cpu", root), "links": {"slow": slow}}
    opts = {"clients": 8, "clients_per_round": 4, "buffer_size": 2}
    spec = small_spec("federated", "fedbuff", opts)
    spec = dataclasses.replace(spec, budget={**spec.budget, "target_acc": 0.01})
    costs = execute(spec, hardware)["costs"]
    reached = costs["time_to_target_s"]["slow"]
    assert reached is not None and reached > costs["compute_s_at_eval"][0] > 0
