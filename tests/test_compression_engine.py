"""Every registered compression method runs through the simulated-workers engine and reports
bytes that add up: the engine's bookkeeping, not any method's rule."""

import math

import pytest
import torch

from sparsebench import registry
from sparsebench.engines import workers
from sparsebench.engines.context import RunContext
from sparsebench.models import build_model
from sparsebench.seeds import all_seeds
from sparsebench.spec import Budget, Component, RunSpec

SMALL = {
    "diloco": {"inner_steps": 2},
    "sparseloco": {"inner_steps": 2, "chunk": 64, "density": 0.1},
    "onebit-adam": {"freeze_step": 2},
}


@pytest.mark.parametrize("name", registry.names("compression"))
def test_method_runs_and_its_bytes_add_up(tiny_data, name):
    params = {"workers": 2, **SMALL.get(name, {})}
    spec = RunSpec("compression", Component(name, params), Component("tiny"), Component("mlp"))
    torch.manual_seed(0)
    model = build_model(Component("mlp", {"hidden": 16}), tiny_data.input_shape, 4)
    method = registry.get("compression", name).obj(
        registry.make_params("compression", name, params), 1
    )
    budget = Budget(steps=4, batch_size=16, lr=0.01, eval_every=2)
    result = workers.run(RunContext(spec, tiny_data, model, method, budget, all_seeds(0)))
    bytes_ = result.costs["bytes"]
    assert result.status == "ok" and len(result.traffic) == 4
    assert result.curves["bytes_total"][-1] == bytes_["up"] + bytes_["down"] > 0
    assert bytes_["up_per_worker_step"] == bytes_["up"] / 8
    assert math.isfinite(result.metrics["test_acc"])
    assert len(result.costs["compute_s_at_eval"]) == 2


def _three_workers(slowdown: list[float]):
    """A pool of three workers with no steps yet, on devices of the given slowdowns."""
    from sparsebench.engines.workers import Pool

    pool = Pool.__new__(Pool)
    pool.workers, pool.compute_s, pool.serial_s = 3, 0.0, 0.0
    pool.slowdown = slowdown
    return pool


def test_workers_compute_in_parallel_so_a_step_costs_its_slowest_worker(root):
    pool = _three_workers([1.0, 1.0, 1.0])
    pool.step_s = [1.0, 3.0, 2.0]
    pool.end_step()
    pool.step_s = [0.5, 0.25, 0.5]
    pool.end_step()
    assert (pool.compute_s, pool.serial_s) == (3.5, 7.25)
    assert pool.step_s == [0.0, 0.0, 0.0]


def test_a_step_costs_the_worker_slowest_on_its_own_device(root):
    pool = _three_workers([1.0, 0.5, 4.0])
    pool.step_s = [1.0, 3.0, 2.0]
    pool.end_step()
    assert (pool.compute_s, pool.serial_s) == (8.0, 6.0)
