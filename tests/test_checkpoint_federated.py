"""The federated engine resumes a killed run from its checkpoint, in every execution model, and
ends with the same result.json (every metric, curve and byte; seconds aside) as an
uninterrupted run; a checkpoint of another run is refused, and none is left once a run ends."""

from __future__ import annotations

import pytest
import torch

from sparsebench import checkpoint as checkpoints
from sparsebench import registry, runner
from sparsebench.config import load_hardware
from sparsebench.engines.federated import asynchronous, decentralized, synchronous
from sparsebench.spec import Component, RunSpec

BUDGET = {"rounds": 6, "local_steps": 2, "batch_size": 16, "optimizer": "sgd", "lr": 0.2}
POPULATION = {"clients": 8, "clients_per_round": 4, "partition": "iid"}
PARAMS = {
    "fedavg": {"byzantine_fraction": 0.25, "attack": "gaussian", "aggregator": "median"},
    "fedadam": {"server_lr": 0.05},
    # 5 clients finish at each instant and 3 fill the buffer: at the checkpoint after server
    # step 4, three of them still wait to be buffered and two to be restarted.
    "fedbuff": {"clients_per_round": 5, "buffer_size": 3, "speed_distribution": "constant"},
    "fedfix": {"interval": 0.4},  # some intervals merge nobody
    "dpsgd": {"degree": 2},
    "single-merge": {"neighbors": 1.5},
    "modest": {"aggregators": 2},
    "scallion": {"compressor": "randk"},
    "scafcom": {"compressor": "topk"},
}
LOOPS = {  # the module whose tqdm each execution model's loop uses
    "synchronous": synchronous,
    "buffered": asynchronous,
    "fixed-interval": asynchronous,
    "gossip": decentralized,
    "sampled-gossip": decentralized,
}


def loop_module(name: str):
    return LOOPS[registry.get("federated", name).obj.execution]


class Killed(Exception):
    """Stands for the process dying."""


class Progress:
    """Stands in for tqdm: records the rounds each loop runs and dies before round `kill`
    (None: never)."""

    def __init__(self, kill: int | None = None) -> None:
        self.kill = kill
        self.loops: list[list[int]] = []

    def __call__(self, rounds, **_):
        self.loops.append([])
        return self._run(rounds, self.loops[-1])

    def _run(self, rounds, seen: list[int]):
        for rnd in rounds:
            if rnd == self.kill:
                raise Killed
            seen.append(rnd)
            yield rnd


def spec(name: str, checkpoint_every: int = 2, **params) -> RunSpec:
    params = {**POPULATION, **PARAMS.get(name, {}), **params}
    return RunSpec(
        "federated",
        Component(name, params),
        Component("digits"),
        Component("mlp", {"hidden": 16}),
        budget={**BUDGET, "momentum": 0.0, "checkpoint_every": checkpoint_every},
    )


def execute(run: RunSpec, root, checkpoint=None) -> dict:
    torch.manual_seed(1234)  # a new process: the global RNG is wherever it is
    return runner.execute(run, load_hardware("cpu", root), checkpoint=checkpoint)


def measured(key: str) -> bool:
    """Costs measured with a clock or from memory, which differ between any two runs."""
    return key in ("peak_mem_bytes", "compute_s_at_eval") or (
        key.endswith("_s") and key != "comm_time_s"
    )


def outcome(document: dict) -> dict:
    """What a resumed run must reproduce exactly."""
    costs = {k: v for k, v in document["costs"].items() if not measured(k)}
    keys = ("key", "status", "metrics", "curves")
    return {**{k: document[k] for k in keys}, "costs": costs}


def kill_at_round_5(run: RunSpec, root, path, monkeypatch) -> None:
    """Run until round 5 starts (the last checkpoint is the one after round 4), then die."""
    monkeypatch.setattr(loop_module(run.method.name), "tqdm", Progress(kill=5))
    with pytest.raises(Killed):
        execute(run, root, path)


@pytest.mark.parametrize("name", registry.names("federated"))
def test_a_killed_federated_run_resumes_to_the_same_result(name, root, tmp_path, monkeypatch):
    run = spec(name)
    reference = execute(run, root)
    path = tmp_path / "checkpoint.pt"
    kill_at_round_5(run, root, path, monkeypatch)
    assert torch.load(path, weights_only=True)["total_rounds"] == 6
    watch = Progress()
    monkeypatch.setattr(loop_module(name), "tqdm", watch)
    resumed = execute(run, root, path)
    assert watch.loops == [[5, 6]]
    assert outcome(resumed) == outcome(reference)
    assert list(tmp_path.iterdir()) == []


def test_a_federated_checkpoint_of_another_run_is_refused(root, tmp_path, monkeypatch):
    path = tmp_path / "checkpoint.pt"
    kill_at_round_5(spec("scaffold", server_lr=0.5), root, path, monkeypatch)
    watch = Progress()
    monkeypatch.setattr(synchronous, "tqdm", watch)
    run = spec("scaffold")
    with pytest.warns(checkpoints.CorruptCheckpointWarning, match="written for run="):
        resumed = execute(run, root, path)
    assert watch.loops == [list(range(1, 7))]
    assert outcome(resumed) == outcome(execute(run, root))
    assert list(tmp_path.iterdir()) == []
