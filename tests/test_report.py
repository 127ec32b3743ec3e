"""Report pieces: Pareto fronts, claims, tables from real runs."""

import pandas as pd
import pytest

from sparsebench.report.claims import check
from sparsebench.report.figures import pareto_front


def test_pareto_front_keeps_only_undominated_points():
    points = pd.DataFrame({"cost": [1, 2, 3, 4, 2.5], "acc": [0.5, 0.7, 0.6, 0.9, 0.8]})
    front = pareto_front(points, "cost", "acc")
    assert front["cost"].tolist() == [1, 2, 2.5, 4]


def doc(method: str, params: dict, seed: int, acc: float) -> dict:
    label = ",".join(f"{k}={v}" for k, v in sorted(params.items()))
    return {
        "status": "ok",
        "metrics": {"test_acc": acc},
        "key": f"fam/{method}[{label}]/seed={seed}",
        "spec": {
            "family": "fam",
            "method": {"name": method, "params": params},
            "seed": seed,
            "dataset": {"name": "mnist1d", "params": {}},
            "model": {"name": "mlp", "params": {}},
        },
    }


CLAIM = {
    "claim": "a beats b",
    "paper": "p",
    "metric": "test_acc",
    "better": "higher",
    "where": {"dataset": "mnist1d"},
    "a": {"method": "x", "params": {"density": 0.1}},
    "b": {"method": "y"},
}


@pytest.mark.parametrize(
    ("a_accs", "verdict"),
    [
        ([0.90, 0.91, 0.92], "supported"),
        ([0.70, 0.71, 0.72], "contradicted"),
        ([0.95, 0.70, 0.85], "inconclusive"),
    ],
)
def test_claim_verdict_follows_the_paired_interval(a_accs, verdict):
    docs = [doc("x", {"density": 0.1}, s, acc) for s, acc in enumerate(a_accs)]
    docs += [doc("y", {}, s, acc) for s, acc in enumerate([0.80, 0.81, 0.82])]
    result = check(CLAIM, docs)
    assert result.verdict == verdict and result.seeds == 3


def test_claim_margin_turns_a_small_loss_into_support():
    docs = [doc("x", {"density": 0.1}, s, acc) for s, acc in enumerate([0.79, 0.80, 0.81])]
    docs += [doc("y", {}, s, acc) for s, acc in enumerate([0.80, 0.81, 0.82])]
    assert check(CLAIM, docs).verdict == "contradicted"
    assert check({**CLAIM, "margin": 0.02}, docs).verdict == "supported"


def test_claim_without_matching_runs_is_inconclusive():
    assert check(CLAIM, []).verdict.startswith("inconclusive")


def test_a_claim_side_can_use_its_own_metric():
    docs = [doc("x", {"density": 0.1}, s, acc) for s, acc in enumerate([0.90, 0.91, 0.92])]
    for d in docs:
        d["metrics"]["acc_before_prune"] = d["metrics"]["test_acc"] - 0.05
    claim = {
        **CLAIM,
        "b": {"method": "x", "params": {"density": 0.1}, "metric": "acc_before_prune"},
    }
    result = check(claim, docs)
    assert result.verdict == "supported" and result.diff == pytest.approx(0.05)


def test_a_claim_side_matching_several_configs_is_ambiguous():
    docs = [doc("x", {"density": 0.1, "lr": lr}, 0, 0.9) for lr in (1, 2)]
    docs += [doc("y", {}, 0, 0.8)]
    assert check(CLAIM, docs).verdict.startswith("ambiguous")


def test_a_claim_can_name_a_default_param_value():
    claim = {
        **CLAIM,
        "a": {"method": "static-random", "params": {"allocation": "erk"}},
        "b": {"method": "dense"},
    }
    docs = []
    for s, (a, b) in enumerate([(0.9, 0.8), (0.91, 0.8), (0.92, 0.81)]):
        docs.append(doc("static-random", {"density": 0.1}, s, a))
        docs.append(doc("dense", {}, s, b))
    for d in docs:
        d["spec"]["family"] = "sparse_training"
    assert check(claim, docs).verdict == "supported"


def test_a_claim_can_compare_with_a_published_number():
    docs = [doc("x", {"density": 0.1}, s, acc) for s, acc in enumerate([0.93, 0.935, 0.94])]
    claim = {**CLAIM, "margin": 0.03, "b": {"value": 0.94}}
    result = check(claim, docs)
    assert result.verdict == "supported" and result.b_mean == 0.94 and result.seeds == 3
    assert check({**claim, "margin": 0.0}, docs).verdict != "supported"


def test_pivot_puts_methods_in_rows_and_sparsity_patterns_in_columns():
    from sparsebench.report.pivots import pivot_tables

    rows = []
    for seed in range(3):
        for method, params, acc in [
            ("magnitude", {"density": 0.5}, 0.9),
            ("magnitude", {"density": 0.1}, 0.8),
            ("magnitude", {"nm": "2:4"}, 0.85),
            ("wanda", {"density": 0.5}, 0.95),
        ]:
            row = {
                "status": "ok",
                "dataset": "d",
                "model": "m",
                "method": method,
                "seed": seed,
                "metric_test_acc": acc + 0.01 * seed,
                "density": 0.22 if method == "wanda" else params.get("density", 0.5),
            }
            row.update({f"p_method_{k}": v for k, v in params.items()})
            rows.append(row)
    (table,) = pivot_tables("pruning", pd.DataFrame(rows))
    assert table["columns"] == ["row", "2:4", "0.5", "0.1"]
    by_row = {r["row"]: r for r in table["rows"]}
    assert by_row["magnitude"]["0.1"].startswith("0.81 ± ")
    assert by_row["magnitude"]["0.1"].endswith(" @ 0.1")
    assert by_row["wanda"]["0.5"].startswith("0.96 ± ")
    assert by_row["wanda"]["0.5"].endswith(" @ 0.22")  # requested 0.5, measured 0.22: shown
    assert by_row["wanda"]["0.1"] == "–"


def kernel_doc(comparable: bool) -> dict:
    timings = {"interpreted": not comparable, "comparable": comparable}
    if comparable:
        timings |= {
            "triton": {"ms_median": 0.1, "frac_peak_gbps": 0.8, "frac_peak_tflops": None},
            "speedup_vs": {"dense_linear": 1.5},
        }
    return {
        "kernel": "nm_linear",
        "status": "ok",
        "interpreted": not comparable,
        "cases": [
            {
                "shape": {"m": 1, "n": 64},
                "correctness": {"ok": True, "outputs": {}},
                "timings": timings,
            }
        ],
    }


def test_kernel_figure_only_for_real_timings():
    from sparsebench.report.figures import kernel_figure

    assert kernel_figure(kernel_doc(comparable=False)) is None
    assert kernel_figure(kernel_doc(comparable=True)).startswith(b"\x89PNG")


def test_report_shows_kernel_timings_and_marks_interpreted_runs(tmp_path):
    import json

    from sparsebench.report.build import build_report

    for hardware, comparable in (("cpu", False), ("h100", True)):
        folder = tmp_path / "kernels" / hardware
        folder.mkdir(parents=True)
        (folder / "nm_linear.json").write_text(json.dumps(kernel_doc(comparable)))
    html = build_report(tmp_path, tmp_path / "index.html").read_text()
    assert "correctness only" in html
    assert "dense_linear 1.50x" in html
    assert html.count("data:image/png;base64,") == 1


def test_a_side_that_diverged_on_every_seed_settles_the_claim():
    docs = [doc("x", {"density": 0.1}, s, 0.9) for s in range(2)]
    for s in range(2):
        d = doc("y", {}, s, 0.0)
        d["status"] = "diverged"
        docs.append(d)
    assert check(CLAIM, docs).verdict == "supported (b diverged on 2 seeds)"
    swapped = {**CLAIM, "a": CLAIM["b"], "b": CLAIM["a"]}
    assert check(swapped, docs).verdict == "contradicted (a diverged on 2 seeds)"


def test_report_shows_simulation_speed_against_bare_loops_actors_and_fedavg(tmp_path):
    import json

    from sparsebench.report.build import build_report

    rows = [
        {"clients_per_round": 10, "mode": mode, "clients_per_s": rate}
        for mode, rate in (("bare-vmap", 100.0), ("vmap", 150.0), ("actor", 50.0))
    ]
    strategies = [
        {"clients_per_round": 10, "strategy": "scaffold", "round_s": 0.004, "ratio_to_fedavg": 2.0}
    ]
    doc = {
        "work": {"strategy": "fedavg", "clients": 1000, "dataset": "mnist1d", "model": "mlp",
                 "rounds_timed": 5, "budget": {"local_steps": 10, "batch_size": 4}},
        "threads": 1, "rows": rows, "strategies": strategies,
        "environment": {"cpu": "test cpu", "versions": {}},
    }  # fmt: skip
    (tmp_path / "benchmarks").mkdir()
    (tmp_path / "benchmarks" / "federated_throughput.json").write_text(json.dumps(doc))
    html = build_report(tmp_path, tmp_path / "index.html").read_text()
    assert "Federated simulation speed" in html and "test cpu" in html
    assert "<td>10</td><td>vmap</td><td>150</td><td>1.5</td><td>3</td>" in html
    assert "<td>10</td><td>scaffold</td><td>4</td><td>2</td><td>False</td>" in html


def measured(document: dict, density: float, off: list[str] | None = None) -> dict:
    regime = None if off is None else {"paper": "sgd, step", "source": "", "off": off}
    return {**document, "costs": {"density": density}, "regime": regime}


def test_sparse_sides_at_different_measured_densities_are_not_compared():
    docs = [measured(doc("x", {"density": 0.1}, s, 0.9), 0.21) for s in range(3)]
    docs += [measured(doc("y", {}, s, 0.8), 0.10) for s in range(3)]
    result = check(CLAIM, docs)
    assert result.verdict.startswith("not comparable") and "0.210" in result.verdict
    assert (result.a_density, result.b_density) == pytest.approx((0.21, 0.10))
    assert check({**CLAIM, "density_tolerance": None}, docs).verdict == "supported"
    near = [measured(d, 0.102) if d["spec"]["method"]["name"] == "x" else d for d in docs]
    assert check(CLAIM, near).verdict == "supported"
    against_dense = [measured(d, 1.0) if d["spec"]["method"]["name"] == "y" else d for d in docs]
    assert check(CLAIM, against_dense).verdict == "supported"


def test_a_side_trained_off_its_papers_regime_is_named_beside_the_verdict():
    off = ["optimizer adam (paper: sgd)"]
    docs = [measured(doc("x", {"density": 0.1}, s, 0.9), 0.1, off) for s in range(3)]
    docs += [measured(doc("y", {}, s, 0.8), 0.1, []) for s in range(3)]
    result = check(CLAIM, docs)
    assert result.verdict == "supported"
    assert (
        result.caveats == "x[density=0.1] ran off its paper's regime: optimizer adam (paper: sgd)"
    )
    on = [measured(d, 0.1, []) for d in docs]
    assert check(CLAIM, on).caveats == ""


def test_claims_of_a_smoke_scale_grid_say_so_beside_the_verdict(root, tmp_path):
    import yaml

    from sparsebench.report.build import claim_results

    grid = {
        "family": "sparse_training",
        "smoke_scale": "120 steps, far from convergence",
        "methods": [{"name": "static-random", "params": {"density": 0.1}}, {"name": "dense"}],
        "datasets": [{"name": "digits"}],
        "models": [{"name": "mlp"}],
        "seeds": [0],
        "claims": [
            {
                "claim": "c",
                "paper": "p",
                "metric": "test_acc",
                "a": {"method": "static-random"},
                "b": {"method": "dense"},
            }
        ],
    }
    (tmp_path / "grid.yaml").write_text(yaml.safe_dump(grid))
    suite = {"hardware": "cpu", "experiments": [str(tmp_path / "grid.yaml")]}
    (tmp_path / "suite.yaml").write_text(yaml.safe_dump(suite))
    [result] = claim_results(str(tmp_path / "suite.yaml"), root, [])
    assert result["caveats"] == "smoke scale: 120 steps, far from convergence"


def test_no_real_difference_within_the_stated_margin_is_an_equivalent_verdict():
    docs = [doc("x", {"density": 0.1}, s, acc) for s, acc in enumerate([0.801, 0.809, 0.821])]
    docs += [doc("y", {}, s, acc) for s, acc in enumerate([0.802, 0.808, 0.822])]
    result = check({**CLAIM, "equivalence_margin": 0.01}, docs)
    assert result.verdict == "equivalent (within ±0.01)"
    plain = check(CLAIM, docs)
    assert plain.verdict == "inconclusive"
    assert plain.seeds_needed is None or plain.seeds_needed > 3
    assert plain.detectable > abs(plain.diff)


def test_a_claims_note_is_shown_beside_its_verdict():
    docs = [doc("x", {"density": 0.1}, s, 0.9) for s in range(2)]
    docs += [doc("y", {}, s, 0.8) for s in range(2)]
    assert check({**CLAIM, "note": "rule unverified"}, docs).caveats == "rule unverified"


def test_tables_and_figures_price_sparse_training_at_the_flops_it_executed():
    from sparsebench.report.figures import COST_AXIS
    from sparsebench.report.tables import train_flops_ratio

    assert train_flops_ratio({"train_dense": 100.0, "train_sparse": 73.0}) == 0.73
    assert train_flops_ratio({}) is None
    for family in ("sparse_training", "pruning"):
        assert COST_AXIS[family][0] == "flops_train_sparse"


def test_communication_families_show_compute_communication_and_total_time_per_link():
    from sparsebench.report.build import time_columns
    from sparsebench.report.tables import row

    document = {
        **doc("x", {}, 0, 0.9),
        "run_id": "r",
        "costs": {"compute_s": 2.0, "comm_time_s": {"slow": 5.0, "fast": 0.5}},
        "provenance": {},
    }
    document["spec"]["hardware"] = "cpu"
    values = row(document)
    assert (values["total_s_slow"], values["total_s_fast"]) == (7.0, 2.5)
    table = pd.DataFrame([values])
    assert list(time_columns("federated", table)) == [
        "compute_s", "comm_s_fast", "total_s_fast", "comm_s_slow", "total_s_slow",
    ]  # fmt: skip
    assert time_columns("pruning", table) == {}
