"""The regression gate catches a planted regression and lets noise alone pass."""

import copy
import json

import pytest

from sparsebench.cli import main
from sparsebench.config import load_hardware
from sparsebench.regression import (
    BaselineError,
    compare,
    failed,
    judge,
    make_baseline,
    speed_verdicts,
    write_baseline,
)
from sparsebench.runner import execute
from sparsebench.spec import Component, RunSpec


def runs(root, density: float = 0.2) -> list[dict]:
    hardware = load_hardware("cpu", root)
    budget = {"steps": 60, "batch_size": 64, "lr": 0.01, "eval_every": 30}
    return [
        execute(
            RunSpec(
                "sparse_training",
                Component("static-random", {"density": density}),
                Component("digits"),
                Component("mlp", {"hidden": 32}),
                "cpu",
                seed,
                budget,
            ),
            hardware,
        )
        for seed in (0, 1, 2)
    ]


@pytest.fixture(scope="module")
def baseline_docs(request):
    return runs(request.config.rootpath)


def test_rerunning_the_same_code_passes(root, baseline_docs):
    verdicts = compare(make_baseline(baseline_docs, "cpu"), runs(root), "cpu")
    assert not failed(verdicts)
    assert {v.status for v in verdicts} == {"same"}


def test_a_planted_code_regression_is_caught(root, baseline_docs, monkeypatch):
    """Same configs, worse code: a learning-rate schedule bug that trains 20x slower."""
    from sparsebench.spec import Budget

    correct = Budget.lr_at
    monkeypatch.setattr(Budget, "lr_at", lambda self, step, total: correct(self, step, total) / 20)
    slower = runs(root)
    verdicts = compare(make_baseline(baseline_docs, "cpu"), slower, "cpu")
    assert failed(verdicts)
    assert any(v.metric == "test_acc" and v.status == "regressed" for v in verdicts)


def test_a_change_in_an_exact_metric_is_caught(root, baseline_docs):
    verdicts = compare(make_baseline(baseline_docs, "cpu"), runs(root, density=0.25), "cpu")
    assert "missing" in {v.status for v in verdicts}
    shifted = copy.deepcopy(baseline_docs)
    for doc in shifted:
        doc["costs"]["density"] *= 1.01
    verdicts = compare(make_baseline(baseline_docs, "cpu"), shifted, "cpu")
    assert [v.status for v in verdicts if v.metric == "density"] == ["changed"]


def test_a_drop_within_seed_noise_is_not_a_regression():
    spec = {"values": [0.80, 0.90, 0.85], "direction": "higher", "kind": "quality"}
    status, change, p = judge("test_acc", spec, [0.79, 0.91, 0.83])
    assert status in {"noise", "same"}
    status, change, p = judge("test_acc", spec, [0.60, 0.61, 0.62])
    assert status == "regressed" and p < 0.05


def test_lower_is_better_metrics_regress_upwards():
    spec = {"values": [5.0, 5.1, 4.9], "direction": "lower", "kind": "quality"}
    assert judge("test_ppl", spec, [6.0, 6.1, 5.9])[0] == "regressed"
    assert judge("test_ppl", spec, [4.0, 4.1, 3.9])[0] == "improved"


def test_comparing_across_hardware_profiles_is_refused(baseline_docs):
    with pytest.raises(BaselineError, match="not comparable"):
        compare(make_baseline(baseline_docs, "cpu"), baseline_docs, "h100")


def test_baseline_update_refuses_to_overwrite_another_profile(tmp_path, baseline_docs):
    path = tmp_path / "cpu.json"
    write_baseline(make_baseline(baseline_docs, "h100"), path)
    with pytest.raises(BaselineError, match="refusing"):
        write_baseline(make_baseline(baseline_docs, "cpu"), path)
    write_baseline(make_baseline(baseline_docs, "cpu"), path, force=True)
    assert json.loads(path.read_text())["hardware"] == "cpu"


def test_committed_cpu_baseline_covers_the_regression_suite(root):
    from sparsebench.config import load_suite
    from sparsebench.regression import config_key

    baseline = json.loads((root / "configs/baselines/cpu.json").read_text())
    suite = load_suite(root / "configs/suite-regress.yaml", root)
    assert {config_key(s.to_dict()) for s in suite.runs} == set(baseline["entries"])


def test_regress_cli_exits_nonzero_without_results(tmp_path, root, capsys):
    code = main(
        [
            "--root",
            str(root),
            "regress",
            "--suite",
            str(root / "configs/suite-regress.yaml"),
            "--results",
            str(tmp_path),
            "--out",
            str(tmp_path / "r.json"),
        ]
    )
    assert code == 1
    out = capsys.readouterr().out
    assert "missing" in out and "benchmark/federated_throughput" in out


def _throughput(vmap: float, sequential: float) -> dict:
    """A benchmark document whose engine modes are `vmap` and `sequential` times as fast
    as the bare loops (in best round time)."""
    times = {"bare-vmap": 1.0, "vmap": 1.0 / vmap, "bare-sequential": 2.0}
    times["sequential"] = 2.0 / sequential
    rows = [{"clients_per_round": 10, "mode": m, "best_round_s": t} for m, t in times.items()]
    return {"rows": rows}


@pytest.mark.parametrize(
    "vmap,status",
    [(1.2, "same"), (1.0, "same"), (0.95, "noise"), (0.85, "regressed")],
)
def test_an_engine_slower_than_the_bare_loop_beyond_noise_fails_the_gate(vmap, status):
    verdicts = speed_verdicts(_throughput(vmap, 1.1), "federated_throughput")
    assert {v.config for v in verdicts} == {"benchmark/federated_throughput/per_round=10"}
    by_metric = {v.metric: v.status for v in verdicts}
    assert by_metric == {"vmap_over_bare_vmap": status}
    assert failed(verdicts) == (status == "regressed")


def test_a_benchmark_without_a_gated_ratio_is_missing():
    doc = _throughput(1.1, 1.1)
    doc["rows"] = [r for r in doc["rows"] if r["mode"] != "bare-vmap"]
    verdicts = speed_verdicts(doc, "federated_throughput")
    assert [v.status for v in verdicts] == ["missing"] and failed(verdicts)
