"""The compression and pruning engines resume a killed run from its checkpoints and end with
the same result.json (every metric, curve and byte; seconds aside) as an uninterrupted run;
checkpoints of another run are refused, and none are left once a run finishes."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from sparsebench import checkpoint as checkpoints
from sparsebench import registry, runner
from sparsebench.config import load_hardware
from sparsebench.data.base import Dataset, load_dataset
from sparsebench.engines import trainer, workers
from sparsebench.engines.context import RunContext
from sparsebench.models import build_model
from sparsebench.seeds import all_seeds
from sparsebench.spec import Budget, Component, RunResult, RunSpec

COMPRESSION_PARAMS = {
    "diloco": {"inner_steps": 3},
    "sparseloco": {"inner_steps": 3, "chunk": 64, "density": 0.1},
    "onebit-adam": {"freeze_step": 5, "bias_correction": True, "eps": 1e-3},
    "topk": {"density": 0.1},
    "topk-ef": {"density": 0.1},
    "topk-ef21": {"density": 0.1},
    "randk": {"density": 0.1},
    "randk-ef": {"density": 0.1},
    "qsgd": {"bucket": 64},
}
COMPRESSION_BUDGET = {"steps": 24, "batch_size": 16, "lr": 0.01, "eval_every": 5}


class Killed(Exception):
    """Stands for the process dying."""


class Progress:
    """Stands in for tqdm: records the steps each loop runs and dies before step `kill`
    of loop number `loop` (counted from 0 over the run's loops; None: never)."""

    def __init__(self, loop: int | None = None, kill: int | None = None) -> None:
        self.loop, self.kill = loop, kill
        self.loops: list[list[int]] = []

    def __call__(self, steps, **_):
        self.loops.append([])
        self.steps, self.seen = iter(steps), self.loops[-1]
        return self

    def __iter__(self):
        for step in self.steps:
            if len(self.loops) - 1 == self.loop and step == self.kill:
                raise Killed
            self.seen.append(step)
            yield step

    def set_postfix(self, **_) -> None:
        pass

    def close(self) -> None:
        pass


def timed(key: str) -> bool:
    """Costs measured in seconds or by the process, which no two runs share."""
    return key in ("peak_mem_bytes", "compute_s_at_eval") or (
        key.endswith("_s") and key != "comm_time_s"
    )


def outcome(document: dict) -> dict:
    """What a resumed run must reproduce exactly."""
    costs = {k: v for k, v in document["costs"].items() if not timed(k)}
    keys = ("key", "status", "metrics", "curves")
    return {**{k: document[k] for k in keys}, "costs": costs}


def compression_spec(name: str, checkpoint_every: int = 8, **params) -> RunSpec:
    params = {"workers": 2, **COMPRESSION_PARAMS.get(name, {}), **params}
    budget = {**COMPRESSION_BUDGET, "checkpoint_every": checkpoint_every}
    return RunSpec(
        "compression",
        Component(name, params),
        Component("digits"),
        Component("mlp", {"hidden": 16}),
        budget=budget,
    )


def execute(spec: RunSpec, root, checkpoint=None) -> dict:
    torch.manual_seed(1234)  # a new process: the global RNG is wherever it is
    return runner.execute(spec, load_hardware("cpu", root), checkpoint=checkpoint)


@pytest.mark.parametrize("name", registry.names("compression"))
def test_a_killed_compression_run_resumes_to_the_same_result(name, root, tmp_path, monkeypatch):
    spec = compression_spec(name)
    reference = execute(spec, root)
    path = tmp_path / "checkpoint.pt"
    monkeypatch.setattr(workers, "tqdm", Progress(loop=0, kill=21))
    with pytest.raises(Killed):
        execute(spec, root, path)
    assert torch.load(path, weights_only=True)["tally"]["steps_done"] == 16
    watch = Progress()
    monkeypatch.setattr(workers, "tqdm", watch)
    resumed = execute(spec, root, path)
    assert watch.loops == [list(range(17, 25))]
    assert outcome(resumed) == outcome(reference)
    assert not path.exists() and not path.with_name("checkpoint.pt.sha256").exists()


def test_a_compression_checkpoint_of_another_run_is_refused(root, tmp_path, monkeypatch):
    path = tmp_path / "checkpoint.pt"
    monkeypatch.setattr(workers, "tqdm", Progress(loop=0, kill=21))
    with pytest.raises(Killed):
        execute(compression_spec("topk-ef", density=0.2), root, path)
    monkeypatch.setattr(workers, "tqdm", Progress())
    spec = compression_spec("topk-ef")
    with pytest.warns(checkpoints.CorruptCheckpointWarning, match="written for run="):
        resumed = execute(spec, root, path)
    assert outcome(resumed) == outcome(execute(spec, root))


def test_checkpoint_every_is_bookkeeping_so_a_resume_may_change_it(root, tmp_path, monkeypatch):
    path = tmp_path / "checkpoint.pt"
    monkeypatch.setattr(workers, "tqdm", Progress(loop=0, kill=21))
    with pytest.raises(Killed):
        execute(compression_spec("diloco"), root, path)
    watch = Progress()
    monkeypatch.setattr(workers, "tqdm", watch)
    resumed = execute(compression_spec("diloco", checkpoint_every=5), root, path)
    assert watch.loops == [list(range(17, 25))]
    assert outcome(resumed) == outcome(
        execute(compression_spec("diloco", checkpoint_every=0), root)
    )


PRUNING = {  # params, and the steps of each train() call: dense phase, then each retraining
    "magnitude": ({"density": 0.3}, [21, 9]),
    "imp": ({"density": 0.3, "rounds": 2, "rewind_step": 3}, [30, 27, 27]),
    "sms": (
        {"density": 0.3, "rounds": 2, "ingredients": 2, "finetune_fraction": 0.5},
        [15, 8, 8, 7, 7],
    ),
}
PRUNING_BUDGET = Budget(steps=30, batch_size=32, eval_every=5, checkpoint_every=4)


@pytest.fixture(scope="module")
def digits() -> Dataset:
    return load_dataset(Component("digits"))


@pytest.fixture(scope="module")
def chars() -> Dataset:
    from sparsebench.data.shakespeare import ShakespeareParams, from_texts

    text = {"A": "to be or not to be, that is the question. " * 20}
    return from_texts(text, ShakespeareParams(block_size=16, num_train_windows=64))


def engine_run(
    family: str,
    name: str,
    params: dict,
    data: Dataset,
    model: Component,
    budget: Budget,
    checkpoint=None,
) -> RunResult:
    """One run through the family's engine, built as the runner builds it."""
    spec = RunSpec(family, Component(name, params), Component("data"), model)
    seeds = all_seeds(0)
    torch.manual_seed(seeds["init"])
    net = build_model(model, data.input_shape, data.num_classes)
    method = registry.get(family, name).obj(
        registry.make_params(family, name, params), seeds["method"]
    )
    extra = {} if checkpoint is None else {"checkpoint": checkpoint}
    return runner.ENGINES[family](RunContext(spec, data, net, method, budget, seeds, extra))


def prune_run(name: str, params: dict, data: Dataset, model: Component, budget: Budget, path=None):
    return engine_run("pruning", name, params, data, model, budget, path)


def result_outcome(result: RunResult) -> dict:
    costs = {k: v for k, v in result.costs.items() if not timed(k)}
    return {
        "status": result.status,
        "metrics": result.metrics,
        "curves": result.curves,
        "costs": costs,
    }


def kill_and_resume(
    monkeypatch, tmp_path, loop: int, kill: int, run, engine=trainer
) -> tuple[RunResult, list]:
    """Kill `run(checkpoint)` before step `kill` of its loop number `loop` (the engine
    module's progress bars), run it again on the same checkpoint, and return the result with
    the steps each loop ran."""
    path = tmp_path / "checkpoint.pt"
    monkeypatch.setattr(engine, "tqdm", Progress(loop, kill))
    with pytest.raises(Killed):
        run(path)
    watch = Progress()
    monkeypatch.setattr(engine, "tqdm", watch)
    result = run(path)
    assert list(tmp_path.iterdir()) == []  # every checkpoint file removed at the end
    return result, watch.loops


@pytest.mark.parametrize("name", PRUNING)
@pytest.mark.parametrize("phase", ["dense", "last retraining"])
def test_a_killed_pruning_run_resumes_to_the_same_result(
    name, phase, digits, tmp_path, monkeypatch
):
    params, calls = PRUNING[name]
    model = Component("mlp", {"hidden": 16})
    reference = prune_run(name, params, digits, model, PRUNING_BUDGET)
    loop = 0 if phase == "dense" else len(calls) - 1
    resumed, loops = kill_and_resume(
        monkeypatch,
        tmp_path,
        loop,
        kill=6,
        run=lambda path: prune_run(name, params, digits, model, PRUNING_BUDGET, path),
    )
    # resumed after the step-4 checkpoint; finished calls before it are not trained again
    rest = [list(range(1, n + 1)) for n in calls[loop + 1 :]]
    assert loops == [list(range(5, calls[loop] + 1)), *rest]
    assert result_outcome(resumed) == result_outcome(reference)


GPT = Component("gpt", {"n_layer": 1, "n_head": 2, "n_embd": 16, "dropout": 0.1})
"""Dropout draws from the global RNG, so a resume must restore it."""


@pytest.mark.parametrize(
    ("loop", "kill", "first"),
    [(0, 6, 5), (1, 6, 5), (1, 3, 1)],  # dense; retraining after, and before, its checkpoint
)
def test_a_killed_wanda_run_on_a_char_gpt_resumes_to_the_same_result(
    loop, kill, first, chars, tmp_path, monkeypatch
):
    params = {"density": 0.5, "calibration": 16, "heldout": 8, "finetune_fraction": 0.4}
    budget = dataclasses.replace(PRUNING_BUDGET, steps=20, batch_size=16)
    reference = prune_run("wanda", params, chars, GPT, budget)
    resumed, loops = kill_and_resume(
        monkeypatch,
        tmp_path,
        loop,
        kill,
        run=lambda path: prune_run("wanda", params, chars, GPT, budget, path),
    )
    assert loops[0][0] == first and len(loops) == 2 - loop
    assert result_outcome(resumed) == result_outcome(reference)


def test_a_killed_compression_run_with_dropout_resumes_to_the_same_result(
    chars, tmp_path, monkeypatch
):
    params = {"workers": 2, "density": 0.1}
    budget = Budget(**COMPRESSION_BUDGET, checkpoint_every=8)
    reference = engine_run("compression", "topk-ef", params, chars, GPT, budget)
    resumed, loops = kill_and_resume(
        monkeypatch,
        tmp_path,
        0,
        21,
        lambda path: engine_run("compression", "topk-ef", params, chars, GPT, budget, path),
        engine=workers,
    )
    assert loops == [list(range(17, 25))]
    assert result_outcome(resumed) == result_outcome(reference)


def test_a_pruning_checkpoint_of_another_run_is_refused(digits, tmp_path, monkeypatch):
    params, _ = PRUNING["imp"]
    model = Component("mlp", {"hidden": 16})
    path = tmp_path / "checkpoint.pt"
    monkeypatch.setattr(trainer, "tqdm", Progress(2, 6))
    with pytest.raises(Killed):
        prune_run("imp", {**params, "density": 0.5}, digits, model, PRUNING_BUDGET, path)
    watch = Progress()
    monkeypatch.setattr(trainer, "tqdm", watch)
    with pytest.warns(checkpoints.CorruptCheckpointWarning, match="written for run="):
        resumed = prune_run("imp", params, digits, model, PRUNING_BUDGET, path)
    assert [len(steps) for steps in watch.loops] == [30, 27, 27]  # nothing reused
    reference = prune_run("imp", params, digits, model, PRUNING_BUDGET)
    assert result_outcome(resumed) == result_outcome(reference)


def saved_and_loaded(state, tmp_path):
    """`state` after a trip through a checkpoint file (weights_only loading)."""
    checkpoints.save({"state": state}, tmp_path / "walk.pt")
    return checkpoints.load(tmp_path / "walk.pt")["state"]


def test_state_made_during_training_is_rebuilt_and_stays_shared(tmp_path):
    from sparsebench.methods.compression.base import LocalWorkers

    def trained():
        method = registry.get("compression", "diloco").obj(
            registry.make_params("compression", "diloco", {"workers": 2}), 0
        )
        method.local = LocalWorkers(torch.ones(3), 2, "adamw", 0.1, 0.0)
        method.shared = [method.local.params[0]]
        for param, optimizer in zip(method.local.params, method.local.optimizers, strict=True):
            param.grad = torch.randn(3)
            optimizer.step()
        return method

    method = trained()
    fresh = registry.get("compression", "diloco").obj(method.params, 0)
    fresh.load_state_dict(saved_and_loaded(method.state_dict(), tmp_path))
    assert fresh.shared[0] is fresh.local.params[0]
    assert fresh.local.optimizers[0].param_groups[0]["params"][0] is fresh.local.params[0]
    for param, optimizer in zip(fresh.local.params, fresh.local.optimizers, strict=True):
        param.grad = torch.ones(3)
        optimizer.step()
    for param, optimizer in zip(method.local.params, method.local.optimizers, strict=True):
        param.grad = torch.ones(3)
        optimizer.step()
    for got, want in zip(fresh.local.params, method.local.params, strict=True):
        assert torch.equal(got, want)


def test_what_the_walker_cannot_save_is_named_not_dropped():
    method = registry.get("compression", "none").obj(
        registry.make_params("compression", "none", {}), 0
    )
    method.callback = print
    with pytest.raises(TypeError, match=r"NoCompression\.callback: cannot checkpoint"):
        method.state_dict()


def test_a_checkpoint_cannot_name_a_class_outside_sparsebench():
    method = registry.get("compression", "none").obj(
        registry.make_params("compression", "none", {}), 0
    )
    evil = {"x": ("object", 0, "subprocess:Popen", {})}
    with pytest.raises(checkpoints.CheckpointMismatch, match="outside sparsebench"):
        method.load_state_dict(evil)
