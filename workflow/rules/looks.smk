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


_LOOK_GROUPS = {}


def _look_groups():
    """Every seed group the looks on disk added: (family, group id) -> specs (computed once
    per state of the look files)."""
    paths = sorted(Path("results/looks").glob("*.json"))
    stamp = tuple((str(p), p.stat().st_mtime_ns) for p in paths)
    if stamp not in _LOOK_GROUPS:
        groups = {}
        for path in paths:
            specs = [RunSpec.from_dict(entry["spec"]) for entry in _look_runs(path)]
            groups.update({(g[0].family, group_id(g)): g for g in seed_groups(specs)})
        _LOOK_GROUPS.clear()
        _LOOK_GROUPS[stamp] = groups
    return _LOOK_GROUPS[stamp]


def looked_up_group(family, run):
    """The group of a run a look added."""
    for (fam, group), specs in _look_groups().items():
        if fam == family and any(s.run_id() == run for s in specs):
            return group
    raise KeyError(f"no grid cell or added seed has run id {run} in family {family}")


def looked_up_group_specs(family, group):
    """The specs of a seed group a look added."""
    return _look_groups()[(family, group)]


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
