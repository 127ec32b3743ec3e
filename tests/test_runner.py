import json

import pytest

from sparsebench.atomic import write_json
from sparsebench.config import load_hardware
from sparsebench.runner import execute
from sparsebench.spec import Component, RunSpec


def test_atomic_write_leaves_the_old_file_when_serialization_fails(tmp_path):
    path = tmp_path / "result.json"
    write_json(path, {"a": 1})
    with pytest.raises(TypeError):
        write_json(path, {"a": object()})
    assert json.loads(path.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"]


def test_non_finite_numbers_are_written_as_null(tmp_path):
    path = tmp_path / "r.json"
    write_json(path, {"x": float("nan"), "y": [float("inf"), 1.0]})
    assert json.loads(path.read_text()) == {"x": None, "y": [None, 1.0]}


def small_spec(family: str, method: str, params: dict, seed: int = 0) -> RunSpec:
    budget = {"steps": 20, "batch_size": 32, "eval_every": 10, "rounds": 2, "local_steps": 2}
    return RunSpec(
        family,
        Component(method, params),
        Component("digits"),
        Component("mlp", {"hidden": 32}),
        "cpu",
        seed,
        budget,
    )


@pytest.mark.parametrize(
    ("family", "method", "params"),
    [
        ("sparse_training", "static-random", {"density": 0.2}),
        ("pruning", "magnitude", {"density": 0.2}),
        ("compression", "topk-ef", {"workers": 2, "density": 0.1}),
        ("federated", "fedavg", {"clients": 4, "clients_per_round": 2}),
    ],
)
def test_same_spec_gives_bit_identical_metrics(root, family, method, params):
    hardware = load_hardware("cpu", root)
    spec = small_spec(family, method, params)
    first = execute(spec, hardware)
    second = execute(spec, hardware)
    assert first["metrics"] == second["metrics"]
    assert first["curves"] == second["curves"]
    assert first["costs"]["bytes"] == second["costs"]["bytes"]
    assert first["key"] == spec.key() and first["status"] == "ok"
    assert set(first["costs"]) >= {
        "density",
        "flops",
        "bytes",
        "comm_time_s",
        "wall_s",
        "peak_mem_bytes",
    }
    assert set(first["provenance"]) >= {
        "git_commit",
        "git_dirty",
        "versions",
        "hardware",
        "seeds",
        "started",
        "finished",
    }


def test_threads_setting_is_recorded(root):
    doc = execute(small_spec("sparse_training", "dense", {}), load_hardware("cpu", root), threads=1)
    assert doc["provenance"]["hardware"]["threads"] == 1


def test_a_run_records_how_its_budget_departs_from_the_papers_regime(root):
    import dataclasses

    from sparsebench.report.tables import row

    hardware = load_hardware("cpu", root)
    adam = execute(small_spec("sparse_training", "static-random", {"density": 0.2}), hardware)
    assert adam["regime"]["off"] == ["optimizer adam (paper: sgd)"]
    assert row(adam)["off_regime"] == "optimizer adam (paper: sgd)"
    sgd = dataclasses.replace(
        small_spec("sparse_training", "static-random", {"density": 0.2}),
        budget={"steps": 20, "batch_size": 32, "eval_every": 10, "optimizer": "sgd"},
    )
    assert execute(sgd, hardware)["regime"]["off"] == []
    undeclared = execute(small_spec("sparse_training", "dense", {}), hardware)
    assert undeclared["regime"] is None and row(undeclared)["off_regime"] == ""


def test_a_federated_run_reports_compute_and_time_to_target_through_a_shared_server(root):
    slow = {"bandwidth_gbps": 0.001, "latency_ms": 0.0}  # bytes, not latency, decide
    hardware = {**load_hardware("cpu", root), "links": {"slow": slow}}
    spec = small_spec("federated", "fedavg", {"clients": 8, "clients_per_round": 4})
    budget = {**spec.budget, "target_acc": 0.01}
    import dataclasses

    doc = execute(dataclasses.replace(spec, budget=budget), hardware)
    costs = doc["costs"]
    assert costs["compute_s"] > 0 and len(costs["compute_s_at_eval"]) == 2
    reached = costs["time_to_target_s"]["slow"]
    assert reached is not None and reached > costs["compute_s_at_eval"][0]
    uncontended = execute(
        dataclasses.replace(spec, budget=budget), {**hardware, "server_links": None}
    )["costs"]["comm_time_s"]
    # 4 clients' uploads and downloads pass one after another through the server's one link
    assert costs["comm_time_s"]["slow"] == pytest.approx(4 * uncontended["slow"])
