"""The CLI outside the checkout: the project is found from the install, --root or
$SPARSEBENCH_ROOT, profiles can be given by path, and `ui` leaves no server behind."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from sparsebench import paths
from sparsebench.cli import main
from sparsebench.config import load_hardware

SPARSEBENCH = str(Path(sys.executable).with_name("sparsebench"))
SPEC = {
    "family": "sparse_training",
    "method": {"name": "dense"},
    "dataset": {"name": "synthetic"},
    "model": {"name": "mlp", "params": {"hidden": 8}},
    "seed": 0,
    "budget": {"steps": 2, "eval_every": 2},
}


def outside_env() -> dict[str, str]:
    """The environment of a shell without the venv on PATH and no project named."""
    env = {k: v for k, v in os.environ.items() if k != paths.ENV_VAR}
    env["PATH"] = "/usr/bin:/bin"
    return env


def sparsebench(cwd: Path, *args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [SPARSEBENCH, *args], cwd=cwd, env=outside_env(), capture_output=True, text=True,
        timeout=120, **kwargs,
    )  # fmt: skip


def own_profile(tmp_path: Path, root: Path, name: str = "mine") -> Path:
    path = tmp_path / f"{name}.yaml"
    text = (root / "configs/hardware/cpu.yaml").read_text()
    path.write_text(text.replace("name: cpu", f"name: {name}"))
    return path


def test_run_outside_the_project_finds_the_cpu_profile(tmp_path):
    done = sparsebench(tmp_path, "run", json.dumps(SPEC), "--out", "run", "--no-track")
    assert done.returncode == 0, done.stderr[-2000:]
    doc = json.loads((tmp_path / "run/result.json").read_text())
    assert doc["status"] == "ok"
    assert doc["provenance"]["hardware"]["profile"] == "cpu"


def test_list_outside_the_project_shows_its_hardware_profiles(tmp_path, root):
    done = sparsebench(tmp_path, "list")
    assert done.returncode == 0, done.stderr[-2000:]
    listed = done.stdout.split("hardware:")[1].split()
    assert listed == sorted(p.stem for p in (root / "configs/hardware").glob("*.yaml"))


def test_validate_outside_the_project_reads_the_projects_suite(tmp_path):
    done = sparsebench(tmp_path, "validate", "configs/suite-smoke.yaml")
    assert done.returncode == 0, done.stderr[-2000:]


def test_a_hardware_profile_given_by_path_is_loaded_and_recorded(tmp_path, root, monkeypatch):
    profile = own_profile(tmp_path, root)
    assert load_hardware(str(profile), root)["name"] == "mine"
    monkeypatch.chdir(tmp_path)
    spec = json.dumps({**SPEC, "hardware": "mine.yaml"})
    assert main(["run", spec, "--out", str(tmp_path / "run"), "--no-track"]) == 0
    doc = json.loads((tmp_path / "run/result.json").read_text())
    assert doc["provenance"]["hardware"]["profile"] == "mine.yaml"


def test_an_unknown_profile_names_the_folder_searched_and_the_choices(tmp_path, root, capsys):
    spec = json.dumps({**SPEC, "hardware": "h200"})
    assert main(["run", spec, "--out", str(tmp_path / "run"), "--no-track"]) == 2
    err = capsys.readouterr().err
    assert f"unknown hardware profile 'h200' in {root / 'configs/hardware'}" in err
    assert "valid choices: cpu, h100" in err
    assert "--root PATH" in err and paths.ENV_VAR in err
    assert not (tmp_path / "run").exists()


def test_without_a_project_the_error_says_where_it_looked(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv(paths.ENV_VAR, raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(paths, "installed_checkout", lambda: tmp_path / "site-packages")
    assert main(["list"]) == 2
    err = capsys.readouterr().err
    assert f"looked for configs/hardware/ and workflow/schemas/ in {tmp_path}" in err
    assert str(tmp_path / "site-packages") in err
    assert "--root PATH" in err and paths.ENV_VAR in err


@pytest.mark.parametrize("how", ["--root", "env"])
def test_a_named_root_that_is_not_a_project_is_refused(how, tmp_path, monkeypatch, capsys):
    argv = ["list"]
    if how == "--root":
        argv = ["--root", str(tmp_path), *argv]
    else:
        monkeypatch.setenv(paths.ENV_VAR, str(tmp_path))
    assert main(argv) == 2
    assert f"{tmp_path} is not a sparsebench project" in capsys.readouterr().err


def test_the_environment_variable_points_at_another_project(tmp_path, root, monkeypatch, capsys):
    shutil.copytree(root / "workflow/schemas", tmp_path / "workflow/schemas")
    (tmp_path / "configs/hardware").mkdir(parents=True)
    own_profile(tmp_path / "configs/hardware", root, "tiny")
    monkeypatch.setenv(paths.ENV_VAR, str(tmp_path))
    assert main(["list"]) == 0
    assert capsys.readouterr().out.split("hardware:")[1].split() == ["tiny"]


FAKE_MLFLOW = """
import json, os, signal, subprocess, sys, time
worker = subprocess.Popen(
    [sys.executable, "-c", "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
     "print(flush=True); time.sleep(600)"], stdout=subprocess.PIPE)
worker.stdout.readline()  # the worker ignores SIGTERM from here on
record = {"prefix": sys.prefix, "argv": sys.argv[1:], "pid": os.getpid(), "worker": worker.pid,
          "pgid": os.getpgid(0)}
path = os.environ["FAKE_MLFLOW_RECORD"]
with open(path + ".tmp", "w") as f:
    json.dump(record, f)
os.replace(path + ".tmp", path)
if "FAKE_MLFLOW_EXIT" in os.environ:
    sys.exit(int(os.environ["FAKE_MLFLOW_EXIT"]))
time.sleep(600)
"""


@pytest.fixture
def groups():
    """Process groups a test started; whatever a failed test left in them is killed."""
    started: list[int] = []
    yield started
    for pgid in started:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)


def start_ui(tmp_path: Path, port: int, env: dict[str, str], groups: list[int]) -> subprocess.Popen:
    """`sparsebench ui` in a group of its own (so teardown can reach it and its server)."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cmd = [SPARSEBENCH, "ui", "--port", str(port), "--tracking-uri", uri]
    ui = subprocess.Popen(
        cmd, cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True, process_group=0
    )
    groups.append(ui.pid)
    return ui


def fake_mlflow_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """Put a stand-in `mlflow` package first on the path: it records how it was started and
    starts one worker that ignores SIGTERM, as a server's workers might."""
    (tmp_path / "fake/mlflow").mkdir(parents=True)
    (tmp_path / "fake/mlflow/__init__.py").write_text("")
    (tmp_path / "fake/mlflow/__main__.py").write_text(FAKE_MLFLOW)
    record = str(tmp_path / "record.json")
    return {**outside_env(), "PYTHONPATH": str(tmp_path / "fake"), "FAKE_MLFLOW_RECORD": record,
            **extra}  # fmt: skip


def wait_for(path: Path, proc: subprocess.Popen, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, proc.stderr.read()
        assert time.monotonic() < deadline, f"no {path} after {timeout} s"
        time.sleep(0.1)
    return json.loads(path.read_text())


def live_members(pgid: int) -> list[int]:
    """Processes of the group that are not zombies (an orphan's zombie may wait for init)."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(stat.parent.name))
    return members


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


needs_proc = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")


@needs_proc
@pytest.mark.parametrize(("sig", "status"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_ui_runs_mlflow_from_its_interpreter_and_a_signal_stops_the_group(
    sig, status, tmp_path, groups
):
    ui = start_ui(tmp_path, 5999, fake_mlflow_env(tmp_path), groups)
    record = wait_for(tmp_path / "record.json", ui)
    groups.append(record["pgid"])
    assert record["prefix"] == sys.prefix
    assert record["argv"][:3] == ["ui", "--backend-store-uri", f"sqlite:///{tmp_path}/mlflow.db"]
    assert record["pgid"] == record["pid"] != os.getpgid(ui.pid)
    assert set(live_members(record["pgid"])) == {record["pid"], record["worker"]}
    ui.send_signal(sig)
    assert ui.wait(timeout=30) == status
    assert live_members(record["pgid"]) == []


@needs_proc
def test_ui_returns_the_servers_status_and_stops_its_leftover_workers(tmp_path, groups):
    ui = start_ui(tmp_path, 5999, fake_mlflow_env(tmp_path, FAKE_MLFLOW_EXIT="3"), groups)
    assert ui.wait(timeout=60) == 3
    record = json.loads((tmp_path / "record.json").read_text())
    groups.append(record["pgid"])
    assert live_members(record["pgid"]) == []


@needs_proc
@pytest.mark.slow
def test_real_mlflow_ui_serves_and_leaves_no_process_after_sigterm(tmp_path, groups):
    port = free_port()
    ui = start_ui(tmp_path, port, outside_env(), groups)
    deadline = time.monotonic() + 180
    while True:
        assert ui.poll() is None, ui.stderr.read()
        assert time.monotonic() < deadline, "mlflow ui did not answer"
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                if r.status == 200:
                    break
        except OSError:
            time.sleep(0.5)
    children = [p for p in Path("/proc").glob("[0-9]*/stat") if _ppid(p) == ui.pid]
    pgid = os.getpgid(int(children[0].parent.name))
    groups.append(pgid)
    assert len(live_members(pgid)) > 1  # the server and its workers
    ui.send_signal(signal.SIGTERM)
    assert ui.wait(timeout=60) == 143
    assert live_members(pgid) == []


def _ppid(stat: Path) -> int | None:
    try:
        return int(stat.read_text().rsplit(")", 1)[1].split()[1])
    except OSError:
        return None
