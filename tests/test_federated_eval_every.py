"""`budget.eval_every_rounds`: a federated run evaluates every that many rounds and after the last,
trains exactly as a run evaluating every round, logs the bytes and compute of the rounds between
two evaluations at the later one (so the curves still sum to all bytes sent), keeps one traffic
entry per budget round, and resumes from a checkpoint taken between evaluations."""

import dataclasses

import pytest
import torch
from test_checkpoint_federated import (
    Progress,
    execute,
    kill_at_round_5,
    loop_module,
    outcome,
    spec,
)

from sparsebench import registry
from sparsebench.engines.context import RunContext
from sparsebench.engines.federated import run
from sparsebench.engines.federated.clients import model_vector
from sparsebench.models.mlp import MLP
from sparsebench.seeds import all_seeds
from sparsebench.spec import Budget, Component, RunSpec

OPTS = {
    "fedavg": {},
    "scaffold": {},
    "fedbuff": {"buffer_size": 2},
    "fedfix": {"interval": 0.4},
    "dpsgd": {"degree": 2},
    "modest": {"aggregators": 2},
}


def _run(data, name: str, every: int, rounds: int = 7, lr: float = 0.1):
    opts = {"clients": 8, "clients_per_round": 4, "partition": "iid", **OPTS[name]}
    strategy = registry.get("federated", name).obj(registry.make_params("federated", name, opts), 0)
    steps = {"rounds": rounds, "local_steps": 2, "batch_size": 16, "eval_every_rounds": every}
    budget = Budget(**steps, optimizer="sgd", lr=lr, momentum=0.0)
    spec_ = RunSpec("federated", Component(name, opts), Component("tiny"), Component("mlp"))
    torch.manual_seed(0)
    model = MLP(8, 16, 1, 4)
    result = run(RunContext(spec_, data, model, strategy, budget, all_seeds(0)))
    return result, model_vector(model)


def test_a_synchronous_run_logs_every_third_round_and_the_last(tiny_data):
    every, every_vec = _run(tiny_data, "fedavg", 1)
    sparse, sparse_vec = _run(tiny_data, "fedavg", 3)
    assert sparse.curves["round"] == [3, 6, 7]
    assert torch.equal(sparse_vec, every_vec)  # evaluating never changes the training
    assert len(sparse.traffic) == len(every.traffic) == 7
    assert len(sparse.costs["compute_s_at_eval"]) == 3
    for key in ("bytes_up", "bytes_down"):
        assert sum(sparse.curves[key]) == sum(every.curves[key])
        assert sparse.curves[key][0] == sum(every.curves[key][:3])
    assert sparse.curves["bytes_total"][-1] == every.curves["bytes_total"][-1]
    assert sparse.curves["test_acc"][-1] == every.curves["test_acc"][-1]
    # train_loss at a logged round: the mean client loss of the rounds since the last one
    assert sparse.curves["train_loss"][0] == pytest.approx(sum(every.curves["train_loss"][:3]) / 3)


@pytest.mark.parametrize("name", sorted(OPTS))
def test_every_loop_keeps_its_bytes_and_aligns_compute_with_the_curve(tiny_data, name):
    every, every_vec = _run(tiny_data, name, 1)
    sparse, sparse_vec = _run(tiny_data, name, 2)
    assert torch.equal(sparse_vec, every_vec)
    assert set(sparse.curves["round"]) <= {2, 4, 6, 7}
    # the last round is always evaluated (FedFix: the last interval that merged anybody, or
    # the last round when merges since the previous evaluation are still unlogged)
    assert sparse.curves["round"][-1] in (every.curves["round"][-1], 7)
    assert len(sparse.traffic) == len(every.traffic)
    assert len(sparse.costs.get("compute_s_at_eval", [])) in (0, len(sparse.curves["round"]))
    assert sparse.costs["bytes"] == every.costs["bytes"]
    for key in ("bytes_up", "bytes_down"):
        assert sum(sparse.curves[key]) == sum(every.curves[key])
    for extra in ("sim_time", "consensus_distance"):
        if extra in every.curves:
            assert len(sparse.curves[extra]) == len(sparse.curves["round"])


def test_a_run_that_diverges_between_evaluations_logs_its_last_round_done(tiny_data):
    result, _ = _run(tiny_data, "fedavg", 5, rounds=8, lr=1e9)
    assert result.status == "diverged"
    done = len(result.traffic)  # one entry per round completed
    assert 0 < done < 5 and result.curves["round"] == [done]
    assert result.curves["bytes_up"][0] > 0


def test_a_run_killed_between_evaluations_resumes_to_the_same_result(root, tmp_path, monkeypatch):
    base = spec("fedavg")
    killed = dataclasses.replace(base, budget={**base.budget, "eval_every_rounds": 3})
    reference = execute(killed, root)
    assert reference["curves"]["round"] == [3, 6]
    path = tmp_path / "checkpoint.pt"
    kill_at_round_5(killed, root, path, monkeypatch)  # checkpoint after round 4: one unlogged
    monkeypatch.setattr(loop_module("fedavg"), "tqdm", Progress())
    assert outcome(execute(killed, root, path)) == outcome(reference)
