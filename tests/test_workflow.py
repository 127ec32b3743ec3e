"""End to end: a real tiny Snakemake suite in a temporary copy of the workflow."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from sparsebench.config import load_suite
from sparsebench.runner import group_id, seed_groups

pytestmark = pytest.mark.slow
SUITE = "configs/suite-smoke.yaml"


def snakemake(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("snakemake")
    return subprocess.run(
        [str(exe), "-c", "2", "--config", f"suite={SUITE}", *args],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=900,
    )


def active_runs(workdir: Path) -> list:
    client = MlflowClient(f"sqlite:///{workdir / 'results/mlflow/mlflow.db'}")
    experiments = [e.experiment_id for e in client.search_experiments()]
    return client.search_runs(experiments, max_results=1000)


@pytest.fixture(scope="module")
def suite_dir(tmp_path_factory) -> Path:
    root = Path(__file__).resolve().parents[1]
    work = tmp_path_factory.mktemp("suite")
    for name in ("workflow", "configs"):
        src = root / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, work / name)
    done = snakemake(work)
    assert done.returncode == 0, done.stderr[-3000:]
    return work


def test_every_cell_writes_a_complete_result(suite_dir):
    specs = load_suite(suite_dir / SUITE, suite_dir).runs
    for spec in specs:
        doc = json.loads(
            (suite_dir / f"results/runs/{spec.family}/{spec.run_id()}/result.json").read_text()
        )
        assert doc["key"] == spec.key()
        assert doc["status"] == "ok"
        assert {"test_acc", "best_test_acc"} <= set(doc["metrics"])
        assert 0 < doc["costs"]["density"] <= 1


def test_each_run_is_logged_to_mlflow_once_with_tags(suite_dir):
    runs = active_runs(suite_dir)
    keys = [r.data.tags["sparsebench.key"] for r in runs]
    assert len(keys) == len(set(keys)) == len(load_suite(suite_dir / SUITE, suite_dir).runs)
    for run in runs:
        assert {
            "sparsebench.spec_hash",
            "sparsebench.family",
            "sparsebench.hardware",
            "mlflow.source.git.commit",
        } <= set(run.data.tags)
        assert "test_acc" in run.data.metrics


def test_tables_have_one_row_per_run_and_the_report_shows_each_family(suite_dir):
    for family in ("sparse_training", "pruning", "compression", "federated"):
        frame = pd.read_parquet(suite_dir / f"results/tables/{family}.parquet")
        assert len(frame) == len(list((suite_dir / f"results/runs/{family}").iterdir()))
        assert {"metric_test_acc", "density", "bytes_up", "seed"} <= set(frame.columns)
    html = (suite_dir / "reports/index.html").read_text()
    assert html.count("data:image/png;base64,") == 4
    assert html.count("<table") >= 5
    assert "Provenance" in html and "configs/suite-smoke.yaml" in html


def test_rerun_does_nothing_and_a_deleted_result_reruns_only_that_job(suite_dir):
    """A deleted result.json comes back from its seed group's folder without training; forcing
    the group's folder (`-R`) reruns that one job, and its runs replace theirs in MLflow."""
    again = snakemake(suite_dir)
    assert again.returncode == 0 and "Nothing to be done" in again.stderr + again.stdout
    runs = load_suite(suite_dir / SUITE, suite_dir).runs
    spec = runs[0]
    target = suite_dir / f"results/runs/{spec.family}/{spec.run_id()}/result.json"
    kept = target.read_text()
    target.unlink()
    restored = snakemake(suite_dir)
    assert restored.returncode == 0, restored.stderr[-3000:]
    assert "rule seeds:" not in restored.stderr + restored.stdout and target.read_text() == kept
    old_ids = {
        r.info.run_id
        for r in active_runs(suite_dir)
        if r.data.tags["sparsebench.key"] == spec.key()
    }
    group = next(g for g in seed_groups(runs) if spec in g)
    redo = snakemake(suite_dir, "-R", f"results/seeds/{spec.family}/{group_id(group)}")
    assert redo.returncode == 0, redo.stderr[-3000:]
    assert target.exists()
    assert (redo.stderr + redo.stdout).count("rule seeds:") == 1
    new_ids = {
        r.info.run_id
        for r in active_runs(suite_dir)
        if r.data.tags["sparsebench.key"] == spec.key()
    }
    assert len(new_ids) == 1 and new_ids != old_ids


def test_snakemake_report_builds(suite_dir):
    done = snakemake(suite_dir, "--report", "reports/snakemake.html")
    assert done.returncode == 0, done.stderr[-3000:]
    assert (suite_dir / "reports/snakemake.html").stat().st_size > 10_000


def test_invalid_config_stops_before_any_job(suite_dir):
    grid = suite_dir / "configs/experiments/smoke/federated.yaml"
    original = grid.read_text()
    grid.write_text(original.replace("name: fedavg", "name: fedavgg"))
    try:
        done = snakemake(suite_dir, "-n")
    finally:
        grid.write_text(original)
    assert done.returncode != 0
    assert "methods[0].name: unknown federated 'fedavgg'; valid choices:" in done.stderr
    assert "fedavg" in done.stderr.split("valid choices:")[1]
    assert "Traceback" not in done.stderr


def test_report_renders_in_headless_chromium_without_console_errors(suite_dir, tmp_path):
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
    browser, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    if not (browser and driver_path):
        pytest.skip("chromium / chromedriver missing: apt-get install chromium chromium-driver")
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1280,1000",
        f"--user-data-dir={tmp_path / 'profile'}",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = webdriver.ChromeService(executable_path=driver_path)
    driver = webdriver.Chrome(options=options, service=service)
    try:
        driver.get((suite_dir / "reports/index.html").as_uri())
        images = driver.find_elements("css selector", "img.figure")
        assert len(images) == 4
        for image in images:
            assert image.is_displayed()
            assert driver.execute_script("return arguments[0].naturalWidth", image) > 300
        tables = driver.find_elements("css selector", "table")
        assert len(tables) >= 5 and all(t.is_displayed() for t in tables)
        header = driver.find_elements("css selector", "table.sortable th")[0]
        header.click()
        errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        assert errors == []
    finally:
        driver.quit()


def _wait_for_results(workdir: Path, count: int, timeout: float = 300) -> None:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len(list(workdir.glob("results/runs/*/*/result.json"))) >= count:
            return
        time.sleep(0.2)
    raise AssertionError(f"fewer than {count} results after {timeout} s")


def test_killed_suite_resumes_without_redoing_or_duplicating(tmp_path):
    """SIGINT, then SIGKILL mid-run; re-running finishes with every cell logged exactly once."""
    import os
    import signal

    root = Path(__file__).resolve().parents[1]
    for name in ("workflow", "configs"):
        shutil.copytree(root / name, tmp_path / name)
    exe = str(Path(sys.executable).with_name("snakemake"))
    command = [exe, "-c", "2", "--config", f"suite={SUITE}"]
    for sig, after in ((signal.SIGINT, 1), (signal.SIGKILL, 3)):
        proc = subprocess.Popen(
            command,
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        _wait_for_results(tmp_path, after)
        os.killpg(proc.pid, sig)
        proc.wait(timeout=120)
        if sig == signal.SIGINT:
            os.killpg(proc.pid, signal.SIGKILL) if proc.poll() is None else None
    subprocess.run(
        [exe, "--unlock", "--config", f"suite={SUITE}"],
        cwd=tmp_path,
        check=True,
        capture_output=True,
    )
    finished = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert finished.returncode == 0, finished.stderr[-3000:]
    specs = load_suite(tmp_path / SUITE, tmp_path).runs
    for spec in specs:
        path = tmp_path / f"results/runs/{spec.family}/{spec.run_id()}/result.json"
        assert json.loads(path.read_text())["key"] == spec.key()
    assert not list(tmp_path.glob("results/runs/*/*/.*.tmp"))
    keys = [r.data.tags["sparsebench.key"] for r in active_runs(tmp_path)]
    assert sorted(keys) == sorted(s.key() for s in specs)
    again = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert "Nothing to be done" in again.stdout + again.stderr


ADAPTIVE_GRID = """family: sparse_training
methods:
  - name: dense
  - name: static-random
    params: {density: 0.1, allocation: erk}
datasets: [{name: digits}]
models: [{name: mlp, params: {hidden: 64}}]
budget: {steps: 60, batch_size: 64, lr: 0.01, eval_every: 30}
seeds: [0, 1]
claims:
  - claim: a dense MLP beats a 10% random one
    paper: test
    metric: test_acc
    a: {method: dense}
    b: {method: static-random, params: {density: 0.1, allocation: erk}}
"""


def test_adaptive_seeding_adds_seeds_to_the_compared_cells_until_the_claim_is_decided(tmp_path):
    root = Path(__file__).resolve().parents[1]
    for name in ("workflow", "configs"):
        shutil.copytree(root / name, tmp_path / name)
    (tmp_path / "configs/experiments/adaptive.yaml").write_text(ADAPTIVE_GRID)
    suite = "configs/suite-adaptive.yaml"
    (tmp_path / suite).write_text(
        "hardware: cpu\nexperiments: [configs/experiments/adaptive.yaml]\n"
        "adaptive_seeds: {batch: 2, max_seeds: 4}\n"
    )
    exe = str(Path(sys.executable).with_name("snakemake"))
    command = [exe, "-c", "2", "--config", f"suite={suite}"]
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    looks = [json.loads((tmp_path / f"results/looks/{k}.json").read_text()) for k in (1, 2, 3)]
    added = [(r["spec"]["method"]["name"], r["spec"]["seed"]) for r in looks[0]["runs"]]
    # two seeds on two cells undecide it (one degree of freedom, level 0.031): seeds 2 and 3
    assert sorted(added) == [("dense", 2), ("dense", 3), ("static-random", 2), ("static-random", 3)]
    assert looks[1]["runs"] == looks[2]["runs"] == []
    table = pd.read_parquet(tmp_path / "results/tables/sparse_training.parquet")
    assert sorted(table["seed"]) == [0, 0, 1, 1, 2, 2, 3, 3]
    html = (tmp_path / "reports/index.html").read_text()
    assert "look 2 of 2" in html
    again = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert "Nothing to be done" in again.stdout + again.stderr
