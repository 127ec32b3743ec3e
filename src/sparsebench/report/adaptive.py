"""Adaptive seeding: after each look at the suite's claims, the runs the next look needs.

A suite with `adaptive_seeds: {batch, max_seeds}` checks its claims sequentially (see
`sequential`). At each look, every claim still undecided whose plan has another look gets the
seeds that look needs on exactly the cells it compares: its paired seeds, then those only one
side ran, then new seeds after the largest either side ran. Grids marked `smoke_scale` are left
as they are (their claims are not evidence, so more seeds would not make them so). The workflow
runs the looks as Snakemake checkpoints, one after another, until every claim is decided or at
its cap.
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any

from sparsebench.config import Experiment, Suite
from sparsebench.report.claims import check, side_runs
from sparsebench.report.sequential import SeedPlan
from sparsebench.spec import RunSpec


def seed_plan(suite: Suite) -> SeedPlan | None:
    """The suite's adaptive seeding plan (None: every claim is looked at once)."""
    spec = suite.raw.get("adaptive_seeds")
    return SeedPlan(int(spec["batch"]), int(spec["max_seeds"])) if spec else None


def look_count(plan: SeedPlan | None) -> int:
    """Looks the workflow plans: enough for a claim starting from one seed to reach the cap and
    be looked at there (0 without a plan)."""
    return len(plan.looks(2)) + 1 if plan else 0


def grid_docs(experiment: Experiment, docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The results of the experiment's cells, at any seed (the grid's and those added)."""
    cells = {spec.cell_key() for spec in experiment.runs}
    return [d for d in docs if RunSpec.from_dict(d["spec"]).cell_key() in cells]


def next_runs(suite: Suite, docs: list[dict[str, Any]]) -> list[RunSpec]:
    """The runs the next look needs, each once, none that already ran."""
    plan = seed_plan(suite)
    if plan is None:
        return []
    ran = {d["key"] for d in docs}
    out: dict[str, RunSpec] = {}
    for experiment in suite.experiments:
        if experiment.raw.get("smoke_scale"):
            continue
        own = grid_docs(experiment, docs)
        base = {spec.key() for spec in experiment.runs}
        for claim in experiment.claims:
            for spec in _claim_runs(claim, own, plan, base):
                if spec.key() not in ran:
                    out.setdefault(spec.key(), spec)
    return list(out.values())


def _claim_runs(claim: dict[str, Any], docs, plan: SeedPlan, base: set[str]) -> list[RunSpec]:
    """The claim's cells at the seeds its next look needs (none when it is decided or its plan
    is spent)."""
    result = check(claim, docs, plan, base)
    if result.next_seeds is None:
        return []
    where = claim.get("where", {})
    sides = [
        side_runs(docs, side, where, side.get("metric", claim["metric"]))
        for side in (claim["a"], claim["b"])
        if "value" not in side
    ]
    started = sorted({seed for runs in sides for seed in runs} - set(result.paired))
    fresh = range(max(seed for runs in sides for seed in runs) + 1, 1 << 31)
    seeds = list(
        itertools.islice(itertools.chain(result.paired, started, fresh), result.next_seeds)
    )
    specs = []
    for runs in sides:
        template = RunSpec.from_dict(next(iter(runs.values()))["spec"])
        specs += [dataclasses.replace(template, seed=s) for s in seeds if s not in runs]
    return specs
