"""MLflow on PostgreSQL, directly and through a tracking server: a real parallel Snakemake suite
logs every run exactly once, a re-run replaces rather than duplicates, and an outage of the
server loses nothing (`sync` logs the run later).

Needs a PostgreSQL started by scripts/ci/postgres-up.sh, which prints the URI:
    export SPARSEBENCH_PG_URI="$(scripts/ci/postgres-up.sh)"
Each test works in a PostgreSQL schema of its own, dropped afterwards.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections import Counter
from pathlib import Path

import pytest
import yaml

from sparsebench.cli import main
from sparsebench.config import load_suite
from sparsebench.runner import group_id, seed_groups

PG_URI = os.environ.get("SPARSEBENCH_PG_URI")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not PG_URI,
        reason="SPARSEBENCH_PG_URI is not set; start PostgreSQL with "
        'export SPARSEBENCH_PG_URI="$(scripts/ci/postgres-up.sh)"',
    ),
]
SMOKE = "configs/suite-smoke.yaml"
SUITE = "configs/suite-postgres.yaml"
BIN = Path(sys.executable).parent


@pytest.fixture
def schema_uri():
    """PG_URI confined to a fresh schema (MLflow creates its tables there)."""
    import sqlalchemy
    from sqlalchemy.pool import NullPool

    pytest.importorskip("psycopg2", reason="pip install psycopg2-binary")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    engine = sqlalchemy.create_engine(PG_URI, poolclass=NullPool)
    with engine.begin() as conn:
        conn.execute(sqlalchemy.text(f"CREATE SCHEMA {schema}"))
    yield f"{PG_URI}?options=-csearch_path%3D{schema}"
    with engine.begin() as conn:
        conn.execute(sqlalchemy.text(f"DROP SCHEMA {schema} CASCADE"))
    engine.dispose()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """`mlflow server` on a PostgreSQL backend, proxying artifacts to a local folder."""

    def __init__(self, backend: str, workdir: Path) -> None:
        self.backend, self.workdir = backend, workdir
        self.port = free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        command = [
            str(BIN / "mlflow"),
            "server",
            "--backend-store-uri",
            self.backend,
            "--artifacts-destination",
            str(self.workdir / "artifacts"),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--workers",
            "1",
        ]
        self.log = open(self.workdir / "server.log", "a")  # noqa: SIM115 (closed in stop)
        # The server's background job runner (GenAI features) is not needed and costs ~10
        # extra processes.
        env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
        self.proc = subprocess.Popen(
            command, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True, env=env
        )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, (self.workdir / "server.log").read_text()[-3000:]
            try:
                with urllib.request.urlopen(f"{self.uri}/health", timeout=2) as answer:
                    if answer.status == 200:
                        return
            except OSError:
                time.sleep(0.5)
        raise AssertionError("mlflow server did not answer /health within 120 s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, 15)
            self.proc.wait(timeout=60)
        self.proc = None
        self.log.close()


@pytest.fixture
def server(schema_uri, tmp_path):
    srv = Server(schema_uri, tmp_path)
    yield srv
    if srv.proc is not None:
        srv.stop()


def active_runs(uri: str) -> list:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    experiments = [e.experiment_id for e in client.search_experiments()]
    return client.search_runs(experiments, max_results=1000) if experiments else []


def copy_suite(work: Path, uri: str) -> list:
    """workflow/ and configs/ in `work`, plus the smoke suite pointed at `uri`; its run specs."""
    root = Path(__file__).resolve().parents[1]
    for name in ("workflow", "configs"):
        shutil.copytree(root / name, work / name)
    suite = yaml.safe_load((work / SMOKE).read_text())
    suite["mlflow"] = {"tracking_uri": uri}
    (work / SUITE).write_text(yaml.safe_dump(suite))
    return load_suite(work / SUITE, work).runs


def run_suite(work: Path, specs: list, *args: str) -> None:
    targets = [f"results/runs/{s.family}/{s.run_id()}/result.json" for s in specs]
    targets.append("results/mlflow/synced.txt")  # the workflow logs to MLflow in one track job
    done = subprocess.run(
        [str(BIN / "snakemake"), *targets, "-c", "2", "--config", f"suite={SUITE}", *args],
        cwd=work,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    synced = (work / "results/mlflow/synced.txt").read_text()
    assert "MLflow sync failed" not in synced, synced


def assert_logged_once(uri: str, specs: list) -> dict[str, str]:
    """One active run per run key, for exactly the suite's keys; key -> run id."""
    runs = active_runs(uri)
    keys = Counter(r.data.tags["sparsebench.key"] for r in runs)
    assert keys == Counter(s.key() for s in specs)
    return {r.data.tags["sparsebench.key"]: r.info.run_id for r in runs}


def suite_logs_each_run_once(work: Path, uri: str) -> None:
    from mlflow.tracking import MlflowClient

    specs = copy_suite(work, uri)
    run_suite(work, specs)
    first = assert_logged_once(uri, specs)
    run_id = next(iter(first.values()))
    artifacts = [a.path for a in MlflowClient(tracking_uri=uri).list_artifacts(run_id)]
    assert artifacts == ["result.json"]

    group = seed_groups(specs)[0]
    run_suite(work, specs, "-R", f"results/seeds/{group[0].family}/{group_id(group)}")
    second = assert_logged_once(uri, specs)
    rerun = {spec.key() for spec in group}
    assert all(second[key] != first[key] for key in rerun)
    assert {k: v for k, v in second.items() if k not in rerun} == {
        k: v for k, v in first.items() if k not in rerun
    }


def test_parallel_suite_through_a_tracking_server_logs_each_run_once(server, tmp_path):
    server.start()
    suite_logs_each_run_once(tmp_path / "work", server.uri)


def test_parallel_suite_on_a_postgres_uri_logs_each_run_once(schema_uri, tmp_path):
    suite_logs_each_run_once(tmp_path / "work", schema_uri)


SPEC = json.dumps(
    {
        "family": "sparse_training",
        "method": {"name": "dense"},
        "dataset": {"name": "digits"},
        "model": {"name": "mlp", "params": {"hidden": 16}},
        "budget": {"steps": 10, "eval_every": 5},
    }
)


def test_server_outage_keeps_the_result_and_sync_logs_it_once_it_is_back(
    server, tmp_path, root, capsys
):
    results = tmp_path / "results"
    out = results / "runs" / "sparse_training" / "abc"
    start = time.monotonic()
    code = main(["--root", str(root), "run", SPEC, "--out", str(out), "--tracking-uri", server.uri])
    assert code == 0
    assert time.monotonic() - start < 60, "an unreachable server must not stall the job"
    assert json.loads((out / "result.json").read_text())["status"] == "ok"
    assert "MLflow logging failed" in capsys.readouterr().err

    server.start()
    sync = ["--root", str(root), "sync", "--results", str(results), "--tracking-uri", server.uri]
    assert main(sync) == 0
    assert "logged 1 missing run(s); 0 already present" in capsys.readouterr().out
    assert main(sync) == 0
    assert "logged 0 missing run(s); 1 already present" in capsys.readouterr().out
    assert len(active_runs(server.uri)) == 1


def test_an_unreachable_postgres_fails_fast_and_keeps_the_result(tmp_path, root, capsys):
    down = PG_URI.rsplit("@", 1)[0] + f"@127.0.0.1:{free_port()}/sparsebench"
    out = tmp_path / "results" / "runs" / "sparse_training" / "abc"
    start = time.monotonic()
    code = main(["--root", str(root), "run", SPEC, "--out", str(out), "--tracking-uri", down])
    assert code == 0 and (out / "result.json").exists()
    assert time.monotonic() - start < 60, "MLflow's 100 s connection retries must be skipped"
    assert "MLflow logging failed" in capsys.readouterr().err
