"""`sparsebench run|run-seeds|list|data|validate|report|throughput|sync|ui`: the command line
over the library."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import shlex
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from sparsebench import atomic, registry
from sparsebench.config import ConfigError, hardware_names, load_hardware, load_suite
from sparsebench.paths import ProjectNotFoundError, project_file, project_root
from sparsebench.registry import RegistryError
from sparsebench.regression import BaselineError
from sparsebench.seed_throughput import STEPS
from sparsebench.spec import Component, RunSpec

log = logging.getLogger("sparsebench")


def _read_spec(text: str) -> RunSpec:
    """SPEC is a path to a JSON/YAML file, or the JSON itself."""
    path = Path(text)
    if not text.lstrip().startswith("{") and path.exists():
        import yaml

        return RunSpec.from_dict(yaml.safe_load(path.read_text()))
    return RunSpec.from_json(text)


def cmd_run(args: argparse.Namespace) -> int:
    from sparsebench import runner

    spec = _read_spec(args.spec)
    hardware = load_hardware(spec.hardware, args.root)
    registry.make_params(spec.family, spec.method.name, spec.method.params)
    out = Path(args.out) / "result.json"
    document = runner.execute(
        spec, hardware, args.data_dir, args.threads, checkpoint=out.with_name("checkpoint.pt")
    )
    if args.partition:
        check_partition(Path(args.partition), document)
    _write_result(out, document, args)
    return 0


def _read_specs(text: str) -> list[RunSpec]:
    """SPECS is a JSON array of run specs, inline or in a file."""
    path = Path(text)
    raw = text if text.lstrip().startswith("[") or not path.exists() else path.read_text()
    items = json.loads(raw)
    if not isinstance(items, list) or not items:
        raise ConfigError("SPECS: expected a non-empty JSON array of run specs")
    return [RunSpec.from_dict(item) for item in items]


def cmd_run_seeds(args: argparse.Namespace) -> int:
    from sparsebench import runner

    specs = _read_specs(args.specs)
    cells = sorted({spec.cell_key() for spec in specs})
    if len(cells) > 1:
        raise ConfigError(f"SPECS: the seeds of one cell, got {len(cells)} cells: {cells}")
    hardware = load_hardware(specs[0].hardware, args.root)
    for spec in specs:
        registry.make_params(spec.family, spec.method.name, spec.method.params)
    if len(specs) == 1:
        checkpoint = Path(args.checkpoint_dir or args.out) / specs[0].run_id() / "checkpoint.pt"
        documents = iter(
            [runner.execute(specs[0], hardware, args.data_dir, args.threads, checkpoint=checkpoint)]
        )
    else:
        documents = runner.execute_seeds(
            specs, hardware, args.data_dir, args.threads, batch=not args.no_batch
        )
    for document in documents:
        if args.partition_dir:
            check_partition(Path(args.partition_dir) / f"{document['run_id']}.json", document)
        _write_result(Path(args.out) / document["run_id"] / "result.json", document, args)
    return 0


def _write_result(out: Path, document: dict, args: argparse.Namespace) -> None:
    """Write result.json atomically, then log it to MLflow unless told not to (a tracking
    outage never loses the result)."""
    from sparsebench import tracking

    atomic.write_json(out, document)
    print(f"{document['status']}: {document['key']} -> {out}", file=sys.stderr)
    if args.no_track:
        return
    try:
        tracking.log_result(out, args.tracking_uri)
    except Exception as err:  # a tracking outage must never lose the result
        print(
            f"warning: MLflow logging failed ({err}); result kept at {out}; "
            "run `sparsebench sync` later",
            file=sys.stderr,
        )


def check_partition(manifest: Path, document: dict) -> None:
    """The partition the run used must be the one in the workflow's checksummed manifest."""
    from sparsebench.data.partition import read_manifest

    read_manifest(manifest)
    recorded = json.loads(manifest.read_text())["sha256"]
    used = document["costs"].get("partition", {}).get("sha256")
    if used != recorded:
        raise ConfigError(
            f"{manifest}: the run used partition {used}, the manifest records {recorded}"
        )


def cmd_partition(args: argparse.Namespace) -> int:
    from sparsebench.data.base import load_dataset
    from sparsebench.engines.federated.clients import write_partition_manifest

    spec = _read_spec(args.spec)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    digest = write_partition_manifest(spec, load_dataset(spec.dataset, args.data_dir), args.out)
    print(f"{args.out} sha256={digest}")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    for kind in registry.KINDS:
        entries = [registry.get(kind, n) for n in registry.names(kind)]
        if not entries:
            continue
        print(f"{kind}:")
        for entry in entries:
            print(f"  {entry.name:<18} {entry.doc()}")
    print("hardware:")
    for name in hardware_names(args.root):
        print(f"  {name}")
    return 0


def cmd_data(args: argparse.Namespace) -> int:
    from sparsebench.data.base import prepare_dataset

    component = Component.from_dict(json.loads(args.component))
    print(prepare_dataset(component, args.data_dir))
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    suite = load_suite(args.suite, args.root)
    print(f"{args.suite}: ok, {len(suite.runs)} runs in {len(suite.experiments)} experiments")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from sparsebench.report.build import build_report

    build_report(Path(args.results), Path(args.out), args.suite, args.root)
    print(args.out)
    return 0


def cmd_throughput(args: argparse.Namespace) -> int:
    from sparsebench.engines.federated.throughput import Workload, measure, summary

    given = {k: v for k, v in vars(args).items() if k in Workload.__dataclass_fields__}
    work = Workload(**{k: v for k, v in given.items() if v is not None})
    try:
        work.check()
    except ValueError as err:
        print(f"sparsebench: error: {err}", file=sys.stderr)
        return 2
    document = measure(work, progress=lambda line: print(line, file=sys.stderr, flush=True))
    atomic.write_json(Path(args.out), document)
    print(summary(document))
    return 0


def cmd_seed_throughput(args: argparse.Namespace) -> int:
    from sparsebench.seed_throughput import measure, summary

    if args.seeds < 2 or args.steps < 1:
        raise ConfigError(f"--seeds must be >= 2 and --steps >= 1, got {args.seeds}, {args.steps}")
    document = measure(
        Path(args.root),
        args.seeds,
        args.steps,
        progress=lambda line: print(line, file=sys.stderr, flush=True),
    )
    atomic.write_json(Path(args.out), document)
    print(summary(document))
    return 0


def _ints(text: str) -> tuple[int, ...]:
    """A comma-separated list of integers (`10,100`)."""
    try:
        return tuple(int(part) for part in text.split(","))
    except ValueError:
        message = f"expected integers separated by commas, got {text!r}"
        raise argparse.ArgumentTypeError(message) from None


def cmd_tables(args: argparse.Namespace) -> int:
    from sparsebench.report.tables import write_tables

    for path in write_tables(Path(args.results), args.family):
        print(path)
    return 0


def suite_docs(suite_path: str, root: str, results: str) -> tuple[list[dict], str]:
    """The result.json documents of a suite's runs that exist, and the suite's hardware."""
    suite = load_suite(suite_path, root)
    docs = []
    for spec in suite.runs:
        path = Path(results) / "runs" / spec.family / spec.run_id() / "result.json"
        if path.exists():
            docs.append(json.loads(path.read_text()))
    return docs, suite.hardware["name"]


def cmd_look(args: argparse.Namespace) -> int:
    from sparsebench.report.adaptive import next_runs
    from sparsebench.report.tables import load_results

    suite = load_suite(args.root / args.suite, args.root)
    added = next_runs(suite, load_results(Path(args.results)))
    runs = [{"family": s.family, "run_id": s.run_id(), "spec": s.to_dict()} for s in added]
    atomic.write_json(Path(args.out), {"suite": args.suite, "runs": runs})
    cells = len({s.cell_key() for s in added})
    print(f"{len(added)} runs added on {cells} cells for the claims still undecided")
    return 0


def cmd_regress(args: argparse.Namespace) -> int:
    from sparsebench import regression

    docs, hardware = suite_docs(args.suite, args.root, args.results)
    baseline_path = Path(args.baseline or args.root / "configs/baselines" / f"{hardware}.json")
    if not baseline_path.exists():
        raise regression.BaselineError(
            f"no baseline at {baseline_path}; create one with `sparsebench baseline update`"
        )
    baseline = json.loads(baseline_path.read_text())
    verdicts = regression.compare(baseline, docs, hardware)
    for name in load_suite(args.suite, args.root).benchmarks:
        path = Path(args.results) / "benchmarks" / f"{name}.json"
        verdicts += regression.speed_verdicts(
            json.loads(path.read_text()) if path.exists() else None, name
        )
    print(regression.render(verdicts))
    out = Path(args.out or f"results/regression/{hardware}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "baseline": str(baseline_path),
                "hardware": hardware,
                "failed": regression.failed(verdicts),
                "verdicts": regression.to_json(verdicts),
            },
            indent=1,
        )
    )
    return 1 if regression.failed(verdicts) else 0


def cmd_baseline_update(args: argparse.Namespace) -> int:
    from sparsebench import regression

    docs, hardware = suite_docs(args.suite, args.root, args.results)
    if not docs:
        raise regression.BaselineError(f"no results for {args.suite}; run the suite first")
    out = Path(args.out or args.root / "configs/baselines" / f"{hardware}.json")
    regression.write_baseline(regression.make_baseline(docs, hardware), out, args.force)
    print(f"wrote {out} from {len(docs)} runs")
    return 0


def cmd_kernels(args: argparse.Namespace) -> int:
    from sparsebench.kernels import harness

    if args.kernels_command == "list":
        harness.load_kernels("cuda" if args.cuda else "cpu")
        for name in registry.names("kernel"):
            print(f"  {name:<24} {registry.get('kernel', name).doc()}")
        return 0
    argv = ["--kernel", args.kernel, "--hardware", args.hardware, "--out", args.out]
    return harness.main(argv + (["--shapes", args.shapes] if args.shapes else []))


def cmd_sync(args: argparse.Namespace) -> int:
    from sparsebench import tracking

    try:
        logged, present = tracking.sync(Path(args.results), args.tracking_uri)
    except Exception as err:  # the workflow goes on; results stay and sync can run later
        if not args.allow_failure:
            raise
        print(f"MLflow sync failed: {err}; run `sparsebench sync` once the store is back")
        print(f"warning: MLflow sync failed ({err}); results are kept", file=sys.stderr)
        return 0
    print(f"logged {logged} missing run(s); {present} already present")
    return 0


def cmd_ui(args: argparse.Namespace) -> int:
    """MLflow's UI from this interpreter (no `mlflow` on PATH needed), stopped with the CLI."""
    from sparsebench import tracking

    uri = tracking.resolve_uri(args.tracking_uri)
    cmd = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri]
    cmd += ["--host", args.host, "--port", str(args.port)]
    print(shlex.join(cmd), file=sys.stderr)
    return run_in_own_group(cmd)


STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


def run_in_own_group(cmd: list[str], grace_s: float = 10.0) -> int:
    """Run cmd in a process group of its own and wait for it. However the wait ends (the child
    exits, Ctrl-C, SIGTERM, SIGHUP), the whole group is stopped: a server's workers never
    outlive the CLI. Returns the child's status, or 128 + the signal that stopped the CLI."""
    with _stop_signals_exit():
        child = subprocess.Popen(cmd, start_new_session=True)
        try:
            return child.wait()
        except KeyboardInterrupt:
            return 128 + signal.SIGINT
        finally:
            for sig in (signal.SIGINT, *STOP_SIGNALS):  # a second Ctrl-C must not skip cleanup
                signal.signal(sig, signal.SIG_IGN)
            stop_group(child, grace_s)


@contextlib.contextmanager
def _stop_signals_exit() -> Iterator[None]:
    """While inside, SIGTERM and SIGHUP exit through Python (running `finally` blocks) instead of
    killing the process outright; the previous handlers come back afterwards."""

    def exit_on(signum: int, _frame: object) -> None:
        sys.exit(128 + signum)

    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, *STOP_SIGNALS)}
    for sig in STOP_SIGNALS:
        signal.signal(sig, exit_on)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def stop_group(child: subprocess.Popen, grace_s: float) -> None:
    """SIGTERM the child's process group, give its leader grace_s to exit, then SIGKILL whatever
    is left of the group (workers that outlived their parent included)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(timeout=grace_s)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sparsebench", description=__doc__)
    parser.add_argument(
        "--root",
        default=None,
        help="project root (configs/, workflow/); default: $SPARSEBENCH_ROOT, else the current "
        "directory or one above it, else the checkout sparsebench is installed from",
    )
    parser.set_defaults(needs_project=False)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("run", help="run one grid cell and write DIR/result.json")
    p.add_argument("spec", help="RunSpec as a JSON/YAML file or inline JSON")
    p.add_argument("--out", required=True)
    p.add_argument("--data-dir", default=None, help="dataset cache folder (default: in memory)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--tracking-uri", default=None)
    p.add_argument("--no-track", action="store_true", help="skip MLflow logging")
    p.add_argument("--partition", default=None, help="federated: manifest the run must match")
    p.set_defaults(func=cmd_run, needs_project=True)

    p = sub.add_parser(
        "run-seeds",
        help="run several seeds of one cell in one process (batched where the method allows): "
        "DIR/<run-id>/result.json each",
    )
    p.add_argument("specs", help="a JSON array of RunSpecs (inline or a file)")
    p.add_argument("--out", required=True)
    p.add_argument(
        "--checkpoint-dir",
        default=None,
        help="where a run of its own keeps <run-id>/checkpoint.pt (default: --out)",
    )
    p.add_argument("--data-dir", default=None, help="dataset cache folder (default: in memory)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--tracking-uri", default=None)
    p.add_argument("--no-track", action="store_true", help="skip MLflow logging")
    p.add_argument(
        "--no-batch",
        action="store_true",
        help="run the seeds one after another, never as one batched computation",
    )
    p.add_argument(
        "--partition-dir",
        default=None,
        help="federated: the folder of <run-id>.json manifests the runs must match",
    )
    p.set_defaults(func=cmd_run_seeds, needs_project=True)

    p = sub.add_parser("partition", help="write a federated run's client partition manifest")
    p.add_argument("spec", help="RunSpec as a JSON/YAML file or inline JSON")
    p.add_argument("--out", required=True)
    p.add_argument("--data-dir", default=None)
    p.set_defaults(func=cmd_partition)

    p = sub.add_parser("list", help="registered methods, datasets, models, hardware profiles")
    p.set_defaults(func=cmd_list, needs_project=True)

    p = sub.add_parser("data", help="build a dataset into the checksummed cache")
    p.add_argument("component", help='JSON like {"name": "mnist1d", "params": {}}')
    p.add_argument("--data-dir", default="results/data")
    p.set_defaults(func=cmd_data)

    p = sub.add_parser("validate", help="check a suite and its grids without running anything")
    p.add_argument("suite", nargs="?", default="configs/suite.yaml")
    p.set_defaults(func=cmd_validate, needs_project=True)

    p = sub.add_parser("tables", help="collect result.json files into results/tables/*.parquet")
    p.add_argument("--results", default="results")
    p.add_argument("--family", action="append", default=None)
    p.set_defaults(func=cmd_tables)

    p = sub.add_parser(
        "look", help="adaptive seeding: the runs the next look at the undecided claims needs"
    )
    p.add_argument("--suite", default="configs/suite.yaml")
    p.add_argument("--results", default="results")
    p.add_argument("--out", required=True, help="JSON file listing the runs to add")
    p.set_defaults(func=cmd_look, needs_project=True)

    p = sub.add_parser(
        "throughput",
        help="rounds/s of the federated simulator vs bare torch loops and an actor design",
        description="Time whole federated rounds of the engine (vmap and sequential), a bare "
        "torch.func vmap loop, a bare sequential loop and an actor-per-client design on one "
        "workload (FedAvg), in one process, and every synchronous strategy's round (--strategy "
        "all) or one strategy's against FedAvg's. Every option left out takes the common FL "
        "simulation workload: mlp 100,100 on MNIST-1D, 1000 clients x 32 samples, 1 local SGD "
        "step of batch 32 at lr 0.05, strategies all, 10 and 100 clients per round, 30 timed "
        "rounds (in turns of 15, each after 3 untimed ones), 1 thread.",
    )
    p.add_argument("--out", default="results/benchmarks/federated_throughput.json")
    p.add_argument("--model", default=None, help="model (mlp)")
    p.add_argument("--widths", type=_ints, default=None, help="hidden widths, e.g. 100,100")
    p.add_argument("--clients", type=int, default=None, help="clients in the population")
    p.add_argument("--samples-per-client", type=int, default=None)
    p.add_argument("--local-steps", type=int, default=None)
    p.add_argument("--batch", type=int, default=None, help="local minibatch size")
    p.add_argument("--lr", type=float, default=None, help="local SGD learning rate")
    p.add_argument("--strategy", default=None, help="a synchronous strategy, or all (default)")
    p.add_argument("--per-round", type=_ints, default=None, help="clients per round, e.g. 10,100")
    p.add_argument("--rounds", type=int, default=None, help="timed rounds per setting")
    p.add_argument("--warmup", type=int, default=None, help="untimed rounds before each turn")
    p.add_argument("--threads", type=int, default=None, help="torch threads, and actor processes")
    p.set_defaults(func=cmd_throughput)

    p = sub.add_parser(
        "seed-throughput",
        help="seeds/s of one cell per family: one job per seed vs one seed group vs batched",
        description="Time real sparsebench processes on the default grids' RigL and magnitude "
        "pruning cells: one `run` per seed, one `run-seeds --no-batch`, one batched "
        "`run-seeds`, each with one torch thread.",
    )
    p.add_argument("--out", default="results/benchmarks/seed_batching.json")
    p.add_argument("--seeds", type=int, default=3, help="seeds of each cell (at least 2)")
    p.add_argument("--steps", type=int, default=STEPS, help="training steps per seed")
    p.set_defaults(func=cmd_seed_throughput, needs_project=True)

    p = sub.add_parser("report", help="build the self-contained HTML report")
    p.add_argument("--results", default="results")
    p.add_argument("--out", default="reports/index.html")
    p.add_argument("--suite", default="configs/suite.yaml")
    p.set_defaults(func=cmd_report, needs_project=True)

    p = sub.add_parser("regress", help="compare a suite's results with the committed baseline")
    p.add_argument("--suite", default="configs/suite-regress.yaml")
    p.add_argument("--results", default="results")
    p.add_argument("--baseline", default=None, help="default: configs/baselines/<hardware>.json")
    p.add_argument("--out", default=None, help="default: results/regression/<hardware>.json")
    p.set_defaults(func=cmd_regress, needs_project=True)

    p = sub.add_parser("baseline", help="manage regression baselines")
    baseline_sub = p.add_subparsers(dest="baseline_command", required=True)
    p = baseline_sub.add_parser("update", help="write a baseline from a suite's results")
    p.add_argument("--suite", default="configs/suite-regress.yaml")
    p.add_argument("--results", default="results")
    p.add_argument("--out", default=None, help="default: configs/baselines/<hardware>.json")
    p.add_argument("--force", action="store_true", help="overwrite another profile's baseline")
    p.set_defaults(func=cmd_baseline_update, needs_project=True)

    p = sub.add_parser("kernels", help="list or run Triton kernel benchmarks")
    kernel_sub = p.add_subparsers(dest="kernels_command", required=True)
    p = kernel_sub.add_parser("list", help="registered kernel benchmarks")
    p.add_argument("--cuda", action="store_true", help="import compiled, not interpreted")
    p.set_defaults(func=cmd_kernels)
    p = kernel_sub.add_parser("run", help="check one kernel against its reference, then time it")
    p.add_argument("kernel")
    p.add_argument("--hardware", default="configs/hardware/cpu.yaml")
    p.add_argument("--out", required=True)
    p.add_argument("--shapes", default=None, help="shape set (default: small on CPU, full on GPU)")
    p.set_defaults(func=cmd_kernels, needs_project=True)

    p = sub.add_parser("sync", help="log result.json files missing from MLflow (idempotent)")
    p.add_argument("--results", default="results")
    p.add_argument("--tracking-uri", default=None)
    p.add_argument(
        "--allow-failure",
        action="store_true",
        help="report a tracking outage and exit 0 (the workflow's track job)",
    )
    p.set_defaults(func=cmd_sync)

    p = sub.add_parser("ui", help="open the MLflow UI on the suite's store")
    p.add_argument("--tracking-uri", default=None)
    p.add_argument("--host", default="127.0.0.1", help="listen address (localhost by default)")
    p.add_argument("--port", type=int, default=5000)
    p.set_defaults(func=cmd_ui)
    return parser


def locate_project(args: argparse.Namespace) -> None:
    """Point args.root at the project, and the config files named on the command line (a suite,
    a kernel's hardware profile) into it when they are not where the command runs."""
    args.root = project_root(args.root)
    for name in ("suite", "hardware"):
        if getattr(args, name, None):
            setattr(args, name, str(project_file(getattr(args, name), args.root)))


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.needs_project:
            locate_project(args)
        return args.func(args)
    except (ConfigError, RegistryError, BaselineError, ProjectNotFoundError) as err:
        print(f"sparsebench: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
