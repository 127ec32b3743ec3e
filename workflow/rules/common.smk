# Load and validate the suite before any job runs, and build the run table.
import sys

from sparsebench.config import ConfigError, load_suite
from sparsebench.data.base import dataset_file
from sparsebench.registry import RegistryError
from sparsebench.runner import group_id, seed_groups

SUITE_FILE = config.get("suite", "configs/suite.yaml")
try:
    SUITE = load_suite(SUITE_FILE)
except (ConfigError, RegistryError) as err:
    sys.exit(f"sparsebench: invalid configuration: {err}")

RUNS = {(spec.family, spec.run_id()): spec for spec in SUITE.runs}
# One job per seed group: every seed of a cell whose method batches seeds, every other run alone.
GROUPS = {(g[0].family, group_id(g)): g for g in seed_groups(SUITE.runs)}
GROUP_OF = {(family, spec.run_id()): group for (family, group), g in GROUPS.items() for spec in g}
FAMILIES_IN_SUITE = sorted({family for family, _ in RUNS})
# Each grid's convergence probe: its reference cell trained longer (results/probes/).
PROBES = {(spec.family, spec.run_id()): spec for spec in SUITE.probes}
PROBE_RESULTS = [f"results/probes/{family}/{run}/result.json" for family, run in PROBES]
DATASETS = {
    dataset_file(spec.dataset, "results/data").stem: spec.dataset for spec in SUITE.runs
}
THREADS = int(SUITE.hardware["threads"])
TRACKING = f"--tracking-uri {SUITE.tracking_uri}" if SUITE.tracking_uri else ""


wildcard_constraints:
    family="|".join(FAMILIES_IN_SUITE) or "none",
    run="[0-9a-f]{12}",
    group="[0-9a-f]{12}",


def run_results(family=None):
    """The grid's own runs' results (of one family, or all)."""
    return [f"results/runs/{f}/{run}/result.json" for f, run in RUNS if family in (None, f)]


def spec_of(family, run):
    """A run's spec: a grid cell's, or one an adaptive-seeding look added."""
    if (family, run) in RUNS:
        return RUNS[(family, run)]
    return looked_up_spec(family, run)


def group_of(family, run):
    """The seed group that runs a run: a grid cell's, or one an adaptive-seeding look added."""
    if (family, run) in GROUP_OF:
        return GROUP_OF[(family, run)]
    return looked_up_group(family, run)


def group_specs(family, group):
    """The specs of a seed group, in seed order."""
    if (family, group) in GROUPS:
        return GROUPS[(family, group)]
    return looked_up_group_specs(family, group)
