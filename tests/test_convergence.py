"""A grid's convergence probe trains its reference cell longer; the report says whether the
grid's budget is near that plateau and labels the claims of a grid that stops short."""

from __future__ import annotations

import copy
import json

import pytest
from suite_files import write_suite

from sparsebench.config import ConfigError, load_suite
from sparsebench.report.build import claim_results, claim_tally, convergence_section
from sparsebench.report.convergence import plateau

GRID = {
    "family": "sparse_training",
    "methods": [
        {"name": "dense", "seeds": [1, 0]},
        {"name": "static-random", "params": {"density": [0.1, 0.2]}},
    ],
    "datasets": [{"name": "digits"}],
    "models": [{"name": "mlp"}],
    "budget": {"steps": 10, "eval_every": 5},
    "seeds": [0, 1],
    "convergence": {"reference": {"method": "dense"}, "factor": 3},
    "claims": [
        {
            "claim": "denser random masks are better",
            "paper": "none",
            "metric": "test_acc",
            "a": {"method": "static-random", "params": {"density": 0.2}},
            "b": {"method": "static-random", "params": {"density": 0.1}},
        }
    ],
}


def test_the_probe_is_the_reference_first_seed_trained_factor_times_longer(tmp_path, root):
    [experiment] = load_suite(write_suite(tmp_path, root, GRID), tmp_path).experiments
    assert experiment.reference in experiment.runs and experiment.reference.seed == 0
    assert experiment.reference.method.name == "dense"
    assert experiment.probe.budget == {"steps": 30, "eval_every": 5}
    assert experiment.probe not in experiment.runs


def test_a_federated_probe_trains_more_rounds(tmp_path, root):
    grid = {
        "family": "federated",
        "methods": [{"name": "fedavg", "params": {"alpha": [0.1, 100.0]}}],
        "datasets": [{"name": "digits"}],
        "models": [{"name": "mlp"}],
        "budget": {"rounds": 5},
        "seeds": [0],
        "convergence": {"reference": {"method": "fedavg", "params": {"alpha": 100.0}}},
    }
    [experiment] = load_suite(write_suite(tmp_path, root, grid), tmp_path).experiments
    assert experiment.reference.method.params == {"alpha": 100.0}
    assert experiment.probe.budget == {"rounds": 20}


@pytest.mark.parametrize(
    ("reference", "found"),
    [({"method": "static-random"}, "names 2 cells"), ({"method": "rigl"}, "names no cell")],
)
def test_a_reference_that_names_not_one_cell_is_refused_with_the_cells(
    tmp_path, root, reference, found
):
    grid = copy.deepcopy(GRID)
    grid["convergence"]["reference"] = reference
    with pytest.raises(ConfigError, match="convergence.reference") as caught:
        load_suite(write_suite(tmp_path, root, grid), tmp_path)
    assert found in str(caught.value) and "static-random[density=0.2]" in str(caught.value)


def result(spec, acc: float, steps: int) -> dict:
    return {
        "key": spec.key(),
        "spec": spec.to_dict(),
        "status": "ok",
        "metrics": {"test_acc": acc},
        "curves": {"step": [steps // 2, steps], "test_acc": [acc / 2, acc]},
    }


@pytest.mark.parametrize(("probe_acc", "short"), [(0.61, False), (0.70, True)])
def test_a_budget_short_of_the_plateau_labels_the_grid_claims(tmp_path, root, probe_acc, short):
    suite = write_suite(tmp_path, root, GRID)
    [experiment] = load_suite(suite, tmp_path).experiments
    docs = [result(spec, 0.6 + 0.01 * spec.seed, 10) for spec in experiment.runs]
    probe = tmp_path / "results" / "probes" / "sparse_training" / experiment.probe.run_id()
    probe.mkdir(parents=True)
    (probe / "result.json").write_text(json.dumps(result(experiment.probe, probe_acc, 30)))
    section = convergence_section(str(suite), tmp_path, docs, tmp_path / "results")
    [row] = section["rows"]
    assert row["at budget"] == 0.6 and row["probe plateau"] == probe_acc
    assert row["gain"] == pytest.approx(probe_acc - 0.6)
    assert row["verdict"].startswith("short of plateau" if short else "near plateau")
    assert section["figure"]
    [claim] = claim_results(str(suite), tmp_path, docs, section["plateau"])
    assert ("budget short of plateau" in claim["caveats"]) == short
    assert claim["evidence"] is not short
    tally = claim_tally([claim])
    assert sum(tally["not evidence" if short else "evidence"].values()) == 1


def test_a_claim_of_a_grid_without_a_probe_is_not_evidence(tmp_path, root):
    grid = {k: v for k, v in GRID.items() if k != "convergence"}
    suite = write_suite(tmp_path, root, grid)
    [experiment] = load_suite(suite, tmp_path).experiments
    docs = [result(spec, 0.6, 10) for spec in experiment.runs]
    [claim] = claim_results(str(suite), tmp_path, docs)
    assert claim["evidence"] is False and "plateau" not in claim["caveats"]


def test_the_plateau_is_the_mean_of_the_probe_last_quarter():
    probe = {
        "curves": {"step": [100, 200, 300, 400], "test_acc": [0.5, 0.6, 0.7, 0.8]},
        "metrics": {"test_acc": 0.8},
    }
    assert plateau(probe, "test_acc") == pytest.approx(0.8)
    rounds = [10, 20, 30, 40, 50, 60, 70, 80]
    probe["curves"] = {"round": rounds, "test_acc": [0.1] * 6 + [0.6, 0.8]}
    assert plateau(probe, "test_acc") == pytest.approx(0.7)
    assert plateau({"curves": {}, "metrics": {"test_ppl": 3.0}}, "test_ppl") == 3.0
