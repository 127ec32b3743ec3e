# Adaptive seeding (the suite's `adaptive_seeds`): look k is a checkpoint that checks the claims
# on every result so far and lists the runs the next look needs (more seeds of exactly the cells
# an undecided claim compares); look k+1 waits for those runs. The last planned look adds none,
# so the tables, MLflow and the report wait for it and see every added seed.
import json
from pathlib import Path

from sparsebench.report.adaptive import look_count, seed_plan
from sparsebench.spec import RunSpec

LOOKS = look_count(seed_plan(SUITE))
FINAL_LOOK = [f"results/looks/{LOOKS}.json"] if LOOKS else []


def _look_runs(path):
    return json.loads(Path(path).read_text())["runs"]


def _added_results(path):
    return [f"results/runs/{r['family']}/{r['run_id']}/result.json" for r in _look_runs(path)]


def looked_up_spec(family, run):
    """The spec of a run a look added (its look file is written before the run is planned)."""
    for path in sorted(Path("results/looks").glob("*.json")):
        for entry in _look_runs(path):
            if (entry["family"], entry["run_id"]) == (family, run):
                return RunSpec.from_dict(entry["spec"])
    raise KeyError(f"no grid cell or added seed has run id {run} in family {family}")


def look_inputs(wildcards):
    k = int(wildcards.k)
    if k == 1:
        return run_results()
    previous = checkpoints.look.get(k=k - 1).output[0]
    return [previous, *_added_results(previous)]


def all_results(family=None):
    """Every result the report covers: the grid's, and after the final look every added one."""
    added = []
    for k in range(1, LOOKS):
        path = checkpoints.look.get(k=k).output[0]
        added += [p for p in _added_results(path) if family in (None, p.split("/")[2])]
    return run_results(family) + added


wildcard_constraints:
    k="[0-9]+",


checkpoint look:
    input:
        look_inputs,
    output:
        "results/looks/{k}.json",
    params:
        suite=SUITE_FILE,
    log:
        "results/logs/looks/{k}.log",
    shell:
        "sparsebench look --suite {params.suite} --out {output} > {log} 2>&1"
