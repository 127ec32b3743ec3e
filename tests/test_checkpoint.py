"""A run killed between checkpoints and resumed ends bit-identical to an uninterrupted run; a
corrupt checkpoint is reported and ignored, never used; loading refuses arbitrary pickles."""

from __future__ import annotations

import dataclasses
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from sparsebench import atomic, registry
from sparsebench import checkpoint as checkpoints
from sparsebench.engines.trainer import train
from sparsebench.models.mlp import MLP
from sparsebench.spec import Budget

BUDGET = Budget(steps=30, batch_size=32, eval_every=7, schedule="cosine", checkpoint_every=10)
METHODS = [
    ("dense", {}),
    ("static-random", {"density": 0.3}),
    ("rigl", {"density": 0.3, "update_interval": 4, "end_step": 28}),
    ("set", {"density": 0.3, "update_interval": 4, "end_step": 28}),
    ("gmp", {"density": 0.3, "interval": 4, "start_step": 2, "end_step": 26}),
    ("pgf", {"nm": "1:4", "sparse_start_step": 5, "finetune_start_step": 24}),
]


class Killed(Exception):
    pass


class KillAt:
    """Hooks that behave like `inner`, record the steps trained, and abort training after step
    `step` (a crash; None: never)."""

    def __init__(self, inner, step: int | None = None) -> None:
        self.inner, self.step, self.seen = inner, step, []

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def after_step(self, step: int) -> None:
        self.inner.after_step(step)
        self.seen.append(step)
        if step == self.step:
            raise Killed


def fresh(name: str, params: dict, data):
    """A new model and method, built as the runner builds them (seeded init, then setup)."""
    torch.manual_seed(0)
    model = MLP(8, 32, 2, 4)
    method = registry.get("sparse_training", name).obj(
        registry.make_params("sparse_training", name, params), 0
    )
    method.total_steps = BUDGET.steps
    method.setup(model, data)
    return model, method


@pytest.mark.parametrize(("name", "params"), METHODS)
def test_a_killed_run_resumes_bit_identically(tiny_data, tmp_path, name, params):
    model, method = fresh(name, params, tiny_data)
    reference = train(model, tiny_data, dataclasses.replace(BUDGET, checkpoint_every=0), 3, method)

    path = tmp_path / "checkpoint.pt"
    model_a, method_a = fresh(name, params, tiny_data)
    with pytest.raises(Killed):
        train(model_a, tiny_data, BUDGET, 3, KillAt(method_a, 25), checkpoint=path)
    assert torch.load(path, weights_only=True)["step"] == 20
    torch.manual_seed(123)  # a new process: the global RNG is wherever it is

    model_b, method_b = fresh(name, params, tiny_data)
    watch = KillAt(method_b)
    resumed = train(model_b, tiny_data, BUDGET, 3, watch, checkpoint=path)
    assert watch.seen == list(range(21, 31))  # resumed after the step-20 checkpoint
    assert resumed.curves == reference.curves
    assert resumed.steps_done == reference.steps_done == BUDGET.steps
    for (key, want), got in zip(
        model.state_dict().items(), model_b.state_dict().values(), strict=True
    ):
        assert torch.equal(want, got), key
    assert not path.exists() and not atomic.sidecar(path).exists()


def test_sparse_method_state_round_trips_its_masks(tiny_data):
    _, method = fresh("static-random", {"density": 0.3}, tiny_data)
    state = method.state_dict()
    _, other = fresh("static-random", {"density": 0.3}, tiny_data)
    for mask in other.masked.masks.values():
        mask.zero_()
    other.load_state_dict(state)
    for key, mask in method.masked.masks.items():
        assert torch.equal(other.masked.masks[key], mask)
        assert torch.equal(other.masked.params[key] != 0, mask)


def killed_checkpoint(tiny_data, tmp_path):
    path = tmp_path / "checkpoint.pt"
    model, method = fresh("dense", {}, tiny_data)
    with pytest.raises(Killed):
        train(model, tiny_data, BUDGET, 3, KillAt(method, 15), checkpoint=path)
    return path


@pytest.mark.parametrize("damage", ["truncate", "flip", "no-sidecar"])
def test_a_corrupt_checkpoint_is_reported_and_ignored(tiny_data, tmp_path, damage):
    path = killed_checkpoint(tiny_data, tmp_path)
    data = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "flip":
        path.write_bytes(data[:-100] + bytes([data[-100] ^ 1]) + data[-99:])
    else:
        atomic.sidecar(path).unlink()
    model, method = fresh("dense", {}, tiny_data)
    watch = KillAt(method)
    with pytest.warns(checkpoints.CorruptCheckpointWarning, match="restarts from step 0"):
        log = train(model, tiny_data, BUDGET, 3, watch, checkpoint=path)
    assert watch.seen == list(range(1, 31))
    model_ref, method_ref = fresh("dense", {}, tiny_data)
    reference = train(
        model_ref, tiny_data, dataclasses.replace(BUDGET, checkpoint_every=0), 3, method_ref
    )
    assert log.curves == reference.curves


def test_a_checkpoint_for_another_step_budget_is_ignored(tiny_data, tmp_path):
    path = killed_checkpoint(tiny_data, tmp_path)
    model, method = fresh("dense", {}, tiny_data)
    longer = dataclasses.replace(BUDGET, steps=40)
    with pytest.warns(checkpoints.CorruptCheckpointWarning, match="written for total_steps=30"):
        log = train(model, tiny_data, longer, 3, method, checkpoint=path)
    assert log.curves["step"][0] == 7


def test_another_data_order_is_refused_loudly(tiny_data, tmp_path):
    path = killed_checkpoint(tiny_data, tmp_path)
    model, method = fresh("dense", {}, tiny_data)
    with pytest.raises(checkpoints.CheckpointMismatch, match="another data order"):
        train(model, tiny_data, BUDGET, 4, method, checkpoint=path)


class Payload:
    """Unpickling this calls a function of the file's choosing; weights_only must refuse it."""

    def __reduce__(self):
        return (dict, ([("ran", True)],))


def test_loading_uses_weights_only(tmp_path):
    path = tmp_path / "checkpoint.pt"
    checkpoints.save({"step": 1, "evil": Payload()}, path)  # the checksum is valid
    assert torch.load(path, weights_only=False)["evil"] == {"ran": True}
    with pytest.warns(checkpoints.CorruptCheckpointWarning, match="unreadable"):
        assert checkpoints.load(path) is None
    checkpoints.save({"step": 1, "w": torch.ones(2), "g": torch.Generator().get_state()}, path)
    assert checkpoints.load(path)["step"] == 1


def test_the_sparse_training_engine_resumes_from_the_context_checkpoint(tiny_data, tmp_path):
    from sparsebench.engines.context import RunContext
    from sparsebench.engines.sparse_training import run
    from sparsebench.seeds import all_seeds
    from sparsebench.spec import Component, RunSpec

    seeds = all_seeds(0)
    path = tmp_path / "checkpoint.pt"
    spec = RunSpec("sparse_training", Component("dense"), Component("tiny"), Component("mlp"))
    model, method = fresh("dense", {}, tiny_data)
    with pytest.raises(Killed):
        hooks = KillAt(method, 15)
        train(model, tiny_data, BUDGET, seeds["data"], hooks, checkpoint=path, run=spec.key())

    def result(extra: dict):
        model, method = fresh("dense", {}, tiny_data)
        watch = KillAt(method)
        ctx = RunContext(spec, tiny_data, model, watch, BUDGET, seeds, extra)
        return run(ctx), watch.seen

    resumed, seen = result({"checkpoint": path})
    reference, _ = result({})
    assert seen == list(range(11, 31)) and resumed.curves == reference.curves


def test_a_training_checkpoint_of_another_run_is_refused(tiny_data, tmp_path):
    path = tmp_path / "checkpoint.pt"
    model, method = fresh("dense", {}, tiny_data)
    with pytest.raises(Killed):
        train(model, tiny_data, BUDGET, 0, KillAt(method, 15), checkpoint=path, run="run-a")
    model, method = fresh("dense", {}, tiny_data)
    watch = KillAt(method)
    with pytest.warns(checkpoints.CorruptCheckpointWarning, match="written for run='run-a'"):
        train(model, tiny_data, BUDGET, 0, watch, checkpoint=path, run="run-b")
    assert watch.seen == list(range(1, 31))


KILLED_SPECS = {  # a spec, the checkpoint whose appearance means mid-run, and what a run
    # that starts over (instead of resuming) prints on its progress bar
    "compression": (
        {
            "method": {"name": "topk-ef", "params": {"workers": 2, "density": 0.1}},
            "budget": {"steps": 600, "batch_size": 16, "lr": 0.01, "eval_every": 100},
        },
        "checkpoint.pt",
        " 0/600 [",
    ),
    "pruning": (
        {
            "method": {"name": "imp", "params": {"density": 0.3, "rounds": 2}},
            "budget": {"steps": 1000, "batch_size": 32, "eval_every": 100},
        },
        "checkpoint.phase1.pt",  # in the first retraining, the dense phase done
        "dense:",
    ),
}


def killed_spec(family: str) -> dict:
    spec = KILLED_SPECS[family][0]
    budget = {**spec["budget"], "checkpoint_every": 50}
    model = {"name": "mlp", "params": {"hidden": 16}}
    spec = {**spec, "family": family, "dataset": {"name": "digits"}, "model": model}
    return {**spec, "budget": budget}


def sparsebench_run(spec: dict, out: Path, root: Path, stderr=subprocess.DEVNULL):
    exe = str(Path(sys.executable).with_name("sparsebench"))
    command = [exe, "--root", str(root), "run", json.dumps(spec), "--out", str(out), "--no-track"]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=stderr, text=True)


def kill_when(proc: subprocess.Popen, path: Path, timeout: float = 120) -> None:
    """SIGKILL `proc` as soon as the checkpoint at `path` is whole (the file and its digest
    sidecar written, the run not done): a kill between the two writes leaves a checkpoint
    that is rightly refused, and the run restarts rather than resumes."""
    deadline = time.monotonic() + timeout
    while not atomic.digest_ok(path):
        assert proc.poll() is None, "the run ended before its first checkpoint"
        assert time.monotonic() < deadline, f"no {path.name} after {timeout} s"
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)


def reproducible(document: dict) -> dict:
    """result.json without what differs between any two runs (seconds, memory, provenance)."""

    def timed(key: str) -> bool:
        return key in ("peak_mem_bytes", "compute_s_at_eval") or (
            key.endswith("_s") and key != "comm_time_s"
        )

    costs = {k: v for k, v in document["costs"].items() if not timed(k)}
    kept = ("key", "spec", "status", "metrics", "curves")
    return {**{k: document[k] for k in kept}, "costs": costs}


@pytest.mark.slow
@pytest.mark.parametrize("family", sorted(KILLED_SPECS))
def test_a_sigkilled_sparsebench_run_resumes_to_the_same_result(family, root, tmp_path):
    from sparsebench import runner
    from sparsebench.config import load_hardware
    from sparsebench.spec import RunSpec

    spec, (_, marker, fresh_start) = killed_spec(family), KILLED_SPECS[family]
    out = tmp_path / "run"
    kill_when(sparsebench_run(spec, out, root), out / marker)
    assert (out / marker).exists() and not (out / "result.json").exists()
    done = sparsebench_run(spec, out, root, stderr=subprocess.PIPE)
    progress = done.communicate(timeout=300)[1]
    assert done.returncode == 0 and fresh_start not in progress
    resumed = json.loads((out / "result.json").read_text())
    assert sorted(p.name for p in out.iterdir()) == ["result.json"]  # checkpoints removed
    reference = runner.execute(RunSpec.from_dict(spec), load_hardware("cpu", root))
    assert reproducible(resumed) == reproducible(json.loads(json.dumps(atomic.finite(reference))))


def test_removing_a_checkpoint_also_removes_writes_a_kill_left_half_done(tmp_path):
    path = tmp_path / "checkpoint.pt"
    checkpoints.save({"step": 1}, path)
    stray = [tmp_path / ".checkpoint.pt.k1l3d.tmp", tmp_path / ".checkpoint.pt.sha256.x9.tmp"]
    for leftover in stray:
        leftover.write_bytes(b"half")
    other = tmp_path / ".other.pt.k1l3d.tmp"
    other.write_bytes(b"not ours")
    checkpoints.remove(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [other.name]
