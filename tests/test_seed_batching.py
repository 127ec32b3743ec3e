"""Seeds of one cell trained as one batched computation give each seed's own run."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn as nn

from sparsebench import cli
from sparsebench.config import load_hardware
from sparsebench.engines.stacked import model_batchable
from sparsebench.engines.trainer import train, train_seeds
from sparsebench.hooks import TrainHooks
from sparsebench.runner import batches_seeds, execute, execute_seeds, seed_groups
from sparsebench.spec import Budget, Component, RunSpec


def spec(method: str, params: dict, seed: int, family: str = "sparse_training", **budget):
    return RunSpec(
        family,
        Component(method, params),
        Component("digits"),
        Component("mlp", {"hidden": 32}),
        "cpu",
        seed,
        {"steps": 40, "batch_size": 32, "eval_every": 20, "lr": 0.05, "momentum": 0.9, **budget},
    )


def assert_same_run(batched: dict, alone: dict) -> None:
    """Equal up to float reassociation: the batched matmuls sum in another order."""
    assert batched["key"] == alone["key"] and batched["status"] == alone["status"]
    assert batched["metrics"].keys() == alone["metrics"].keys()
    for name, value in alone["metrics"].items():
        assert batched["metrics"][name] == pytest.approx(value, rel=1e-4, abs=1e-5), name
    for name in ("test_loss", "train_loss"):
        assert batched["curves"][name] == pytest.approx(alone["curves"][name], rel=1e-4)
    assert batched["costs"]["density"] == alone["costs"]["density"]
    assert batched["costs"]["density_per_layer"] == alone["costs"]["density_per_layer"]
    flops = batched["costs"]["flops"]
    assert flops == pytest.approx(alone["costs"]["flops"], rel=1e-3)


@pytest.mark.parametrize(
    ("method", "params"),
    [
        ("static-random", {"density": 0.2, "allocation": "erk"}),
        ("rigl", {"density": 0.2, "update_interval": 10}),
        ("gmp", {"density": 0.2, "interval": 10}),
    ],
)
def test_batched_seeds_match_each_seed_run_alone(root, method, params):
    hardware = load_hardware("cpu", root)
    specs = [spec(method, params, seed) for seed in range(3)]
    batched = list(execute_seeds(specs, hardware))
    for document, one in zip(batched, specs, strict=True):
        assert document["costs"]["seed_batch"] == 3
        assert_same_run(document, execute(one, hardware))


@pytest.mark.parametrize(
    ("method", "params"),
    [
        ("magnitude", {"density": 0.2, "finetune_fraction": 0.5}),
        ("wanda", {"density": 0.5, "finetune_fraction": 0.25}),
    ],
)
def test_batched_pruning_seeds_match_each_seed_run_alone(root, method, params):
    hardware = load_hardware("cpu", root)
    specs = [spec(method, params, seed, family="pruning") for seed in range(2)]
    batched = list(execute_seeds(specs, hardware))
    for document, one in zip(batched, specs, strict=True):
        assert document["costs"]["seed_batch"] == 2
        assert_same_run(document, execute(one, hardware))


class Poisoned(TrainHooks):
    """Sets one weight to infinity before the first step, so the loss stops being finite."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model

    def bind_optimizer(self, optimizer: torch.optim.Optimizer) -> None:
        with torch.no_grad():
            next(self.model.parameters()).view(-1)[0] = math.inf


def test_a_diverging_seed_stops_alone_and_the_others_train_on(tiny_data):
    budget = Budget(steps=12, batch_size=16, eval_every=6, lr=0.1)

    def mlp(seed: int) -> nn.Module:
        torch.manual_seed(seed)
        return nn.Sequential(
            nn.Flatten(),
            nn.Linear(tiny_data.x_train[0].numel(), 16),
            nn.ReLU(),
            nn.Linear(16, tiny_data.num_classes),
        )

    models = [mlp(0), mlp(1)]
    logs = train_seeds(models, tiny_data, budget, [5, 6], [TrainHooks(), Poisoned(models[1])])
    alone = mlp(0)
    reference = train(alone, tiny_data, budget, 5)
    assert logs[1].diverged and logs[1].steps_done == 0 and logs[1].curves["step"] == []
    assert not logs[0].diverged and logs[0].curves["step"] == reference.curves["step"] == [6, 12]
    assert logs[0].curves["test_loss"] == pytest.approx(reference.curves["test_loss"], rel=1e-5)
    for batched, solo in zip(models[0].parameters(), alone.parameters(), strict=True):
        torch.testing.assert_close(batched, solo, rtol=1e-5, atol=1e-6)


def test_models_that_draw_dropout_or_keep_buffers_are_not_batchable():
    assert model_batchable(nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.0)))
    assert not model_batchable(nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.1)))
    assert not model_batchable(nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4)))


def test_the_seeds_of_a_cell_share_a_group_and_resumable_runs_stay_alone():
    dense = [spec("dense", {}, seed) for seed in (2, 0, 1)]
    srste = [spec("srste", {}, seed) for seed in (0, 1)]
    resumable = [spec("dense", {}, seed, checkpoint_every=10) for seed in (0, 1)]
    federated = [spec("fedavg", {}, seed, family="federated") for seed in (1, 0)]
    groups = seed_groups(dense + srste + resumable + federated)
    assert [[s.seed for s in g] for g in groups] == [[0], [1], [0, 1, 2], [0, 1], [0, 1]]
    assert [g[0].method.name for g in groups] == ["dense", "dense", "dense", "srste", "fedavg"]
    assert batches_seeds(dense[0])
    assert not batches_seeds(srste[0]) and not batches_seeds(federated[0])


def test_a_group_that_cannot_batch_runs_each_seed_as_its_own_run(root):
    hardware = load_hardware("cpu", root)
    specs = [
        spec(
            "fedavg",
            {"clients": 4, "clients_per_round": 2},
            s,
            "federated",
            rounds=2,
            local_steps=2,
        )
        for s in (0, 1)
    ]
    for document, one in zip(execute_seeds(specs, hardware), specs, strict=True):
        alone = execute(one, hardware)
        assert document["metrics"] == alone["metrics"] and document["curves"] == alone["curves"]
        assert "seed_batch" not in document["costs"]


def test_a_group_of_two_cells_is_refused_with_the_cells_named(root):
    hardware = load_hardware("cpu", root)
    mixed = [spec("dense", {}, 0), spec("static-random", {"density": 0.2}, 1)]
    with pytest.raises(ValueError, match="static-random"):
        list(execute_seeds(mixed, hardware))


def test_run_seeds_writes_one_result_per_seed_in_the_group_folder(tmp_path, root, monkeypatch):
    monkeypatch.chdir(root)
    specs = [spec("dense", {}, seed, steps=10, eval_every=10) for seed in (0, 1)]
    text = json.dumps([s.to_dict() for s in specs])
    assert cli.main(["run-seeds", text, "--out", str(tmp_path), "--no-track"]) == 0
    for one in specs:
        document = json.loads((tmp_path / one.run_id() / "result.json").read_text())
        assert document["key"] == one.key() and document["costs"]["seed_batch"] == 2


def test_run_seeds_refuses_two_cells_before_any_run(tmp_path, root, monkeypatch, capsys):
    monkeypatch.chdir(root)
    specs = [spec("dense", {}, 0), spec("static-random", {"density": 0.2}, 1)]
    text = json.dumps([s.to_dict() for s in specs])
    assert cli.main(["run-seeds", text, "--out", str(tmp_path), "--no-track"]) != 0
    assert "SPECS" in capsys.readouterr().err and not any(tmp_path.iterdir())
