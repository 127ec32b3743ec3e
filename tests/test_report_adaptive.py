"""Adaptive seeding: the sequential looks at a claim, and the runs each look adds."""

import random
from pathlib import Path

import pytest

from sparsebench.config import Experiment, Suite
from sparsebench.report.adaptive import look_count, next_runs
from sparsebench.report.claims import ClaimResult, _decide_sequentially, check
from sparsebench.report.sequential import SeedPlan
from sparsebench.spec import Component, RunSpec

PLAN = SeedPlan(batch=2, max_seeds=7)
CLAIM = {
    "claim": "sparse beats dense",
    "paper": "p",
    "metric": "test_acc",
    "a": {"method": "static-random", "params": {"density": 0.1}},
    "b": {"method": "dense"},
}


def spec(method: str, seed: int) -> RunSpec:
    params = {"density": 0.1} if method == "static-random" else {}
    return RunSpec(
        "sparse_training", Component(method, params), Component("digits"), Component("mlp"),
        seed=seed, budget={"steps": 10},
    )  # fmt: skip


def doc(method: str, seed: int, acc: float) -> dict:
    s = spec(method, seed)
    return {"status": "ok", "metrics": {"test_acc": acc}, "key": s.key(), "spec": s.to_dict()}


def docs(a_accs: list[float], b_accs: list[float]) -> list[dict]:
    return [doc("static-random", s, v) for s, v in enumerate(a_accs)] + [
        doc("dense", s, v) for s, v in enumerate(b_accs)
    ]


def suite(grid_seeds: int, **raw) -> Suite:
    runs = [spec(m, s) for m in ("static-random", "dense") for s in range(grid_seeds)]
    grid = Experiment(Path("grid.yaml"), "sparse_training", runs, [CLAIM], raw)
    adaptive = {"batch": PLAN.batch, "max_seeds": PLAN.max_seeds}
    return Suite(Path("suite.yaml"), {}, [grid], None, {"adaptive_seeds": adaptive})


def base_keys(seeds: int) -> set[str]:
    return {spec(m, s).key() for m in ("static-random", "dense") for s in range(seeds)}


def test_the_plan_looks_in_batches_up_to_the_cap_and_spends_alpha_early():
    assert PLAN.looks(3) == [3, 5, 7] and PLAN.looks(7) == [7]
    levels = PLAN.levels([3, 5, 7])
    assert sum(levels) == pytest.approx(0.05)
    assert levels[0] > 0.05 / 3 and all(level > 0 for level in levels)
    assert look_count(PLAN) == len(PLAN.looks(2)) + 1


def _false_verdicts(levels: list[float], looks: list[int], trials: int) -> float:
    rng = random.Random(0)
    wrong = 0
    for _ in range(trials):
        result = ClaimResult(*["x"] * 5, *[0.0] * 5, 0, "")
        diffs = [rng.gauss(0.0, 1.0) for _ in range(looks[-1])]
        _decide_sequentially(result, diffs, looks, levels, 0.0, None)
        wrong += result.verdict in ("supported", "contradicted")
    return wrong / trials


def test_looking_again_keeps_the_rate_of_false_verdicts_at_alpha():
    looks = PLAN.looks(2)
    trials = 2000
    assert _false_verdicts(PLAN.levels(looks), looks, trials) <= 0.05 + 3 * (0.05 / trials) ** 0.5
    # testing every look at 5% would not: that is what the spending is for
    assert _false_verdicts([0.05] * len(looks), looks, trials) > 0.08


def test_a_claim_decided_at_its_first_look_keeps_that_verdict_whatever_later_seeds_say():
    clear = docs([0.9, 0.91, 0.92, 0.5, 0.5, 0.5, 0.5], [0.8, 0.81, 0.82, 0.9, 0.9, 0.9, 0.9])
    result = check(CLAIM, clear, PLAN, base_keys(3))
    assert result.verdict == "supported" and result.seeds == 3
    assert "look 1 of 3" in result.test and result.next_seeds is None


def test_an_undecided_claim_asks_its_next_look_for_more_seeds_of_both_cells():
    noisy = docs([0.95, 0.70, 0.85], [0.80, 0.81, 0.82])
    result = check(CLAIM, noisy, PLAN, base_keys(3))
    assert result.verdict == "inconclusive" and result.next_seeds == 5
    added = next_runs(suite(3), noisy)
    assert sorted((s.method.name, s.seed) for s in added) == [
        ("dense", 3), ("dense", 4), ("static-random", 3), ("static-random", 4)
    ]  # fmt: skip


def test_seeds_one_side_already_ran_are_not_run_again():
    noisy = docs([0.95, 0.70, 0.85, 0.9], [0.80, 0.81, 0.82])
    added = next_runs(suite(3), noisy)
    assert sorted((s.method.name, s.seed) for s in added) == [
        ("dense", 3), ("dense", 4), ("static-random", 4)
    ]  # fmt: skip


def test_a_claim_at_its_cap_adds_nothing_and_stays_inconclusive():
    at_cap = docs([0.95, 0.70, 0.85, 0.75, 0.9, 0.7, 0.86], [0.8] * 7)
    assert next_runs(suite(3), at_cap) == []
    result = check(CLAIM, at_cap, PLAN, base_keys(3))
    assert result.verdict == "inconclusive" and result.next_seeds is None


def test_a_smoke_scale_grid_gets_no_more_seeds():
    noisy = docs([0.95, 0.70, 0.85], [0.80, 0.81, 0.82])
    assert next_runs(suite(3, smoke_scale="too small"), noisy) == []


def test_a_claim_can_cap_its_own_seeds_below_the_suite():
    noisy = docs([0.95, 0.70, 0.85], [0.80, 0.81, 0.82])
    capped = {**CLAIM, "max_seeds": 3}
    result = check(capped, noisy, PLAN, base_keys(3))
    assert result.verdict == "inconclusive" and result.next_seeds is None
