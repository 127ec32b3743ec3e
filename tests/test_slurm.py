"""The suite through Snakemake's SLURM executor plugin (workflow/profiles/slurm).

The dry run needs only the plugin. The real run needs a SLURM cluster that shares this
filesystem: CI starts a one-node cluster with scripts/ci/slurm-up.sh and sets SPARSEBENCH_SLURM=1.
On one node the embedded SQLite MLflow store sits on the same filesystem for every job, so its
file lock (sparsebench.tracking) serialises the writers; on a real cluster it needs a shared
filesystem with working locks, or an MLflow server.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from sparsebench.config import load_suite
from sparsebench.runner import seed_groups

ROOT = Path(__file__).resolve().parents[1]
SUITE = "configs/suite-smoke.yaml"
PROFILE = "workflow/profiles/slurm"
BIN = Path(sys.executable).parent


def copy_workflow(dest: Path) -> Path:
    for name in ("workflow", "configs"):
        shutil.copytree(ROOT / name, dest / name)
    return dest


def snakemake(workdir: Path, *args: str, timeout: float = 1500) -> subprocess.CompletedProcess:
    """Run Snakemake with this venv first on PATH: SLURM jobs inherit it to find `sparsebench`."""
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    return subprocess.run(
        [str(BIN / "snakemake"), "--config", f"suite={SUITE}", *args],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def submitted(log: str) -> int:
    """How many jobs went to SLURM (the target rule `all` runs in Snakemake itself)."""
    count = len(re.findall(r"has been submitted with SLURM jobid \d+", log))
    assert count, log[-3000:]
    return count


def active_runs(workdir: Path) -> list:
    client = MlflowClient(f"sqlite:///{workdir / 'results/mlflow/mlflow.db'}")
    experiments = [e.experiment_id for e in client.search_experiments()]
    return client.search_runs(experiments, max_results=1000)


def results(workdir: Path) -> dict[str, dict]:
    specs = load_suite(workdir / SUITE, workdir).runs
    paths = {s.key(): workdir / f"results/runs/{s.family}/{s.run_id()}/result.json" for s in specs}
    return {key: json.loads(path.read_text()) for key, path in paths.items()}


# --- dry run: only the plugin is needed ----------------------------------------------------


@pytest.fixture
def plugin():
    pytest.importorskip(
        "snakemake_executor_plugin_slurm",
        reason="snakemake-executor-plugin-slurm is not installed (pip install '.[slurm]')",
    )


def dry_run(workdir: Path) -> str:
    """A dry run caps each job's threads at --cores (1 unless given); a cluster run does not."""
    done = snakemake(workdir, "--workflow-profile", PROFILE, "-n", "-c", "64", timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout + done.stderr


def job_resources(log: str, rule: str) -> list[str]:
    return re.findall(rf"\nrule {rule}:\n(?:    .*\n)*?    resources: (.*)\n", log)


def test_slurm_profile_dry_run_gives_every_job_partition_account_and_cpus(plugin, tmp_path):
    log = dry_run(copy_workflow(tmp_path))
    groups = job_resources(log, "seeds")
    assert len(groups) == len(seed_groups(load_suite(tmp_path / SUITE, tmp_path).runs))
    for rule in ("dataset", "seeds", "kernel", "tables", "report"):
        found = job_resources(log, rule)
        assert found, f"no {rule} job in the dry run"
        for resources in found:
            assert "slurm_partition=main" in resources and "slurm_account=edit-me" in resources
            assert "cpus_per_task=1" in resources and "runtime=" in resources
    assert all("gpu=0" in r for r in job_resources(log, "kernel"))


def test_slurm_profile_asks_a_gpu_for_kernels_and_profile_threads_on_cuda(plugin, tmp_path):
    work = copy_workflow(tmp_path)
    suite = yaml.safe_load((work / SUITE).read_text())
    (work / SUITE).write_text(yaml.safe_dump({**suite, "hardware": "h100"}))
    log = dry_run(work)
    kernels = job_resources(log, "kernel")
    assert kernels and all("gpu=1" in r for r in kernels)
    groups = job_resources(log, "seeds")
    assert groups and all("cpus_per_task=16" in r for r in groups)


# --- the real suite on a SLURM cluster -----------------------------------------------------


def default_partition() -> str:
    if os.environ.get("SPARSEBENCH_SLURM_PARTITION"):
        return os.environ["SPARSEBENCH_SLURM_PARTITION"]
    names = subprocess.run(
        ["sinfo", "-h", "-o", "%P"], capture_output=True, text=True, check=True
    ).stdout.split()
    return next((n.rstrip("*") for n in names if n.endswith("*")), names[0])


def point_profile_at(workdir: Path, partition: str) -> None:
    """Edit the copied profile where a user would: the partition (the account is unchecked
    on a cluster without accounting)."""
    path = workdir / PROFILE / "config.yaml"
    profile = yaml.safe_load(path.read_text())
    profile["default-resources"]["slurm_partition"] = partition
    path.write_text(yaml.safe_dump(profile))


@pytest.fixture(scope="module")
def suites(tmp_path_factory) -> dict[str, Path]:
    if os.environ.get("SPARSEBENCH_SLURM") != "1":
        pytest.skip("no SLURM cluster: run scripts/ci/slurm-up.sh and set SPARSEBENCH_SLURM=1")
    pytest.importorskip("snakemake_executor_plugin_slurm")
    local = copy_workflow(tmp_path_factory.mktemp("local"))
    start = time.monotonic()
    done = snakemake(local, "-c", "2")
    local_s = time.monotonic() - start
    assert done.returncode == 0, done.stderr[-3000:]

    cluster = copy_workflow(tmp_path_factory.mktemp("slurm"))
    point_profile_at(cluster, default_partition())
    start = time.monotonic()
    done = snakemake(
        cluster,
        "--workflow-profile",
        PROFILE,
        # CI's jobs last seconds: check on them every few seconds instead of the default 40 s.
        "--slurm-init-seconds-before-status-checks",
        "2",
    )
    slurm_s = time.monotonic() - start
    logs = "".join(p.read_text() for p in cluster.glob(".snakemake/slurm_logs/**/*.log"))
    assert done.returncode == 0, done.stderr[-3000:] + logs[-3000:]
    jobs = submitted(done.stdout + done.stderr)
    print(
        f"\nsmoke suite, {jobs} SLURM jobs: local -c 2 {local_s:.1f} s, SLURM {slurm_s:.1f} s, "
        f"overhead {(slurm_s - local_s) / jobs:.1f} s per job"
    )
    return {"local": local, "slurm": cluster}


@pytest.mark.slurm
def test_every_cell_ran_on_slurm_with_status_ok(suites):
    docs = results(suites["slurm"])
    assert docs and all(doc["status"] == "ok" for doc in docs.values())
    assert not list(suites["slurm"].glob("results/runs/*/*/.*.tmp"))


@pytest.mark.slurm
def test_slurm_metrics_equal_the_local_run(suites):
    local, cluster = results(suites["local"]), results(suites["slurm"])
    assert local.keys() == cluster.keys()
    for key, doc in cluster.items():
        assert doc["metrics"] == local[key]["metrics"], key


@pytest.mark.slurm
def test_each_slurm_run_reached_mlflow_exactly_once(suites):
    keys = [r.data.tags["sparsebench.key"] for r in active_runs(suites["slurm"])]
    assert sorted(keys) == sorted(results(suites["slurm"]))


@pytest.mark.slurm
def test_slurm_suite_writes_tables_and_report(suites):
    families = {doc["spec"]["family"] for doc in results(suites["slurm"]).values()}
    for family in families:
        assert (suites["slurm"] / f"results/tables/{family}.parquet").stat().st_size > 0
    assert "Provenance" in (suites["slurm"] / "reports/index.html").read_text()
