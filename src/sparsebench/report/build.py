"""Assemble reports/index.html: one self-contained page (figures inlined as base64 PNG).

Sections: a summary (what ran, where, how long, the best variant per family), one section per
family with its figure and a seed-aggregated table, and the provenance of every number (configs,
git commits, package versions, hardware fingerprints, seeds).
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
from jinja2 import Environment, PackageLoader, select_autoescape

from sparsebench.report.adaptive import grid_docs, seed_plan
from sparsebench.report.claims import check
from sparsebench.report.convergence import caveat, convergence_figure, convergence_rows
from sparsebench.report.figures import family_figure, kernel_figure
from sparsebench.report.pivots import pivot_tables
from sparsebench.report.tables import config_label, load_results, row, seed_summary
from sparsebench.spec import FAMILIES

MLFLOW_UI = "http://127.0.0.1:5000"
TABLE_COLUMNS = {
    "metric_test_acc": "test acc",
    "metric_test_ppl": "test ppl",
    "metric_acc_before_prune": "acc before prune",
    "density": "density",
    "flops_train_sparse": "train FLOPs (executed)",
    "train_flops_ratio": "train FLOPs / dense",
    "bytes_up": "bytes up",
    "bytes_down": "bytes down",
    "wall_s": "wall s",
}


def time_columns(family: str, table: pd.DataFrame) -> dict[str, str]:
    """For the communication families: simulated compute, communication and total seconds
    per network link of the hardware profile."""
    if family not in ("compression", "federated") or "compute_s" not in table:
        return {}
    links = sorted(c.removeprefix("comm_s_") for c in table.columns if c.startswith("comm_s_"))
    columns = {"compute_s": "compute s"}
    for link in links:
        columns[f"comm_s_{link}"] = f"comm s ({link})"
        columns[f"total_s_{link}"] = f"total s ({link})"
    return columns


def mlflow_links(docs: list[dict[str, Any]], runs: dict[str, tuple[str, str]]) -> dict:
    """Per config: [(seed, url)] of its MLflow runs, for the table's link column."""
    links: dict[str, list[tuple[int, str]]] = {}
    for doc in sorted(docs, key=lambda d: d["spec"]["seed"]):
        if doc["key"] in runs:
            experiment, run = runs[doc["key"]]
            links.setdefault(config_label(doc["spec"]), []).append(
                (doc["spec"]["seed"], f"{MLFLOW_UI}/#/experiments/{experiment}/runs/{run}")
            )
    return links


def family_section(
    family: str,
    docs: list[dict[str, Any]],
    figure_dir: Path | None,
    runs: dict[str, tuple[str, str]] | None = None,
) -> dict:
    table = pd.DataFrame([row(d) for d in docs])
    png = family_figure(family, table, docs)
    if figure_dir is not None:
        figure_dir.mkdir(parents=True, exist_ok=True)
        (figure_dir / f"{family}.png").write_bytes(png)
    merged = None
    for column, title in {**TABLE_COLUMNS, **time_columns(family, table)}.items():
        if column not in table or table[column].isna().all():
            continue
        s = seed_summary(table, column).rename(
            columns={"mean": f"{title}", "ci95": f"{title} ±95%", "count": "seeds"}
        )
        merged = s if merged is None else merged.merge(s.drop(columns=["seeds"]), on="config")
    diverged = int((table["status"] != "ok").sum())
    best = None
    if merged is not None and "test acc" in merged:
        top = merged.sort_values("test acc", ascending=False).iloc[0]
        best = {"config": top["config"], "acc": top["test acc"]}
    return {
        "family": family,
        "figure": base64.b64encode(png).decode(),
        "columns": list(merged.columns) if merged is not None else [],
        "rows": merged.to_dict("records") if merged is not None else [],
        "runs": len(docs),
        "diverged": diverged,
        "best": best,
        "wall_s": float(table["wall_s"].sum()),
        "links": mlflow_links(docs, runs or {}),
        "pivots": pivot_tables(family, table),
    }


def provenance(docs: list[dict[str, Any]], suite: str | None, root: Path) -> dict[str, Any]:
    configs = {}
    if suite and (root / suite).exists():
        configs[suite] = (root / suite).read_text()
        import yaml

        for exp in yaml.safe_load((root / suite).read_text()).get("experiments", []):
            if (root / exp).exists():
                configs[exp] = (root / exp).read_text()
    first = docs[0]["provenance"] if docs else {}
    return {
        "configs": configs,
        "commits": sorted({str(d["provenance"].get("git_commit")) for d in docs}),
        "dirty": any(d["provenance"].get("git_dirty") for d in docs),
        "versions": first.get("versions", {}),
        "hardware": sorted({json.dumps(d["provenance"]["hardware"], sort_keys=True) for d in docs}),
        "seeds": sorted({d["spec"]["seed"] for d in docs}),
    }


def claim_results(
    suite: str | None,
    root: Path,
    docs: list[dict[str, Any]],
    plateau: dict[str, str] | None = None,
) -> list[dict]:
    """Every claim of the suite's experiment configs, checked against that config's cells (at
    the grid's seeds and any adaptive seeding added, looked at sequentially when the suite
    plans it). A grid that declares `smoke_scale` (why it is smaller than its claims need)
    labels its claims so, and so does one whose probe `plateau` (grid file name -> caveat,
    empty when near its plateau) says stops short. A claim is `evidence` only from a grid at
    full scale whose probe shows its budget near the plateau."""
    if not suite or not (root / suite).exists():
        return []
    from sparsebench.config import load_suite

    out = []
    loaded = load_suite(root / suite, root)
    plan = seed_plan(loaded)
    for experiment in loaded.experiments:
        own = grid_docs(experiment, docs)
        base = {spec.key() for spec in experiment.runs}
        smoke = experiment.raw.get("smoke_scale")
        early = (plateau or {}).get(experiment.path.name)
        notes = [f"smoke scale: {smoke}" if smoke else "", early or ""]
        for claim in experiment.claims:
            result = check(claim, own, None if smoke else plan, base)
            result.caveats = "; ".join(filter(None, [*notes, result.caveats]))
            out.append({**vars(result), "evidence": not smoke and early == ""})
    return out


def claim_tally(claims: list[dict]) -> dict[str, dict[str, int]]:
    """How many claims ended with each verdict, among those that are evidence (a grid at full
    scale whose probe shows its budget near the plateau) and the others."""
    tally: dict[str, dict[str, int]] = {"evidence": {}, "not evidence": {}}
    for claim in claims:
        counts = tally["evidence" if claim["evidence"] else "not evidence"]
        verdict = claim["verdict"].split(" ")[0]
        counts[verdict] = counts.get(verdict, 0) + 1
    return tally


def convergence_section(
    suite: str | None, root: Path, docs: list[dict[str, Any]], results_dir: Path
) -> dict[str, Any] | None:
    """Each probed grid's reference at its budget against its convergence probe, with the
    curves drawn; None when no grid of the suite declares a probe."""
    if not suite or not (root / suite).exists():
        return None
    from sparsebench.config import load_suite

    rows = convergence_rows(load_suite(root / suite, root).experiments, docs, results_dir)
    if not rows:
        return None
    figure = convergence_figure(rows)
    return {
        "rows": [{k: v for k, v in row.items() if k != "curves"} for row in rows],
        "figure": base64.b64encode(figure).decode() if figure else None,
        "plateau": {row["grid"]: caveat(row) for row in rows if row["gain"] is not None},
    }


def regression_tables(results_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted(results_dir.glob("regression/*.json"))]


STRATEGY_TARGET = 1.5
"""How many times FedAvg's round time a strategy's round may take (issue #20's target)."""


def throughput_table(results_dir: Path) -> dict[str, Any] | None:
    """The federated simulator's clients/s per mode and clients-per-round, each engine mode
    against the bare torch loop of its kind and the actor-per-client design (all measured in
    the same job), and every strategy's round time against FedAvg's."""
    path = results_dir / "benchmarks" / "federated_throughput.json"
    if not path.exists():
        return None
    doc = json.loads(path.read_text())
    rates = {(r["clients_per_round"], r["mode"]): r["clients_per_s"] for r in doc["rows"]}
    rows = [
        {
            "clients per round": k,
            "mode": mode,
            "clients/s": rate,
            "x bare loop": rate / rates[(k, f"bare-{mode}")]
            if (k, f"bare-{mode}") in rates
            else None,
            "x actor": rate / rates[(k, "actor")] if (k, "actor") in rates else None,
        }
        for (k, mode), rate in rates.items()
    ]
    strategies = [
        {
            "clients per round": s["clients_per_round"],
            "strategy": s["strategy"],
            "round ms": 1000 * s["round_s"] if "round_s" in s else None,
            "x FedAvg": s.get("ratio_to_fedavg"),
            f"within {STRATEGY_TARGET}x": (
                s["ratio_to_fedavg"] <= STRATEGY_TARGET if "ratio_to_fedavg" in s else None
            ),
            "note": s.get("skipped", ""),
        }
        for s in doc.get("strategies", [])
    ]
    return {
        "work": doc["work"],
        "threads": doc["threads"],
        "rows": rows,
        "strategies": strategies,
        **doc["environment"],
    }


def seed_batching_table(results_dir: Path) -> dict[str, Any] | None:
    """Seeds per second of one cell per family run as one job per seed, as one seed group and
    as one batched computation (`sparsebench seed-throughput`), with the speedups."""
    path = results_dir / "benchmarks" / "seed_batching.json"
    if not path.exists():
        return None
    doc = json.loads(path.read_text())
    columns = ("family", "method", "mode", "seeds", "steps", "wall_s", "seeds_per_s")
    rows = [
        {
            **{c: r[c] for c in columns},
            "x one job per seed": r["speedup_vs_jobs"],
            "max metric diff": r["max_metric_diff_vs_jobs"],
        }
        for r in doc["rows"]
    ]
    return {"rows": rows, "threads": doc["threads"], **doc["environment"]}


def kernel_sections(results_dir: Path) -> list[dict[str, Any]]:
    """One table per kernel result: correctness per shape, then time, rates and speedups
    (only where the timing is comparable, i.e. compiled on a GPU, never interpreted)."""
    sections = []
    for path in sorted(results_dir.glob("kernels/*/*.json")):
        doc = json.loads(path.read_text())
        rows = []
        for case in doc["cases"]:
            check_report = case["correctness"]
            errors = [o.get("max_abs_err", 0.0) for o in check_report.get("outputs", {}).values()]
            timing = case.get("timings", {})
            mine = timing.get("triton", {})
            rows.append(
                {
                    "shape": ", ".join(f"{k}={v}" for k, v in case["shape"].items()),
                    "correct": "yes" if check_report["ok"] else "NO",
                    "max abs err": max(errors, default=0.0),
                    "ms": mine.get("ms_median"),
                    "TFLOP/s": mine.get("tflops"),
                    "GB/s": mine.get("gbps"),
                    "% peak BW": 100 * mine["frac_peak_gbps"]
                    if mine.get("frac_peak_gbps")
                    else None,
                    "% copy BW": 100 * mine["frac_copy_gbps"]
                    if mine.get("frac_copy_gbps")
                    else None,
                    "speedup": ", ".join(
                        f"{k} {v:.2f}x" for k, v in timing.get("speedup_vs", {}).items()
                    ),
                }
            )
        figure = kernel_figure(doc)
        sections.append(
            {
                "kernel": doc["kernel"],
                "hardware": path.parent.name,
                "figure": base64.b64encode(figure).decode() if figure else None,
                "status": doc["status"],
                "interpreted": doc.get("interpreted", False),
                "rows": rows,
            }
        )
    return sections


def build_report(
    results_dir: Path, out: Path, suite: str | None = None, root: Path = Path(".")
) -> Path:
    from sparsebench import tracking

    runs = tracking.run_index()
    sections = []
    all_docs = []
    for family in FAMILIES:
        docs = load_results(results_dir, family)
        if docs:
            sections.append(family_section(family, docs, results_dir / "figures", runs))
            all_docs += docs
    convergence = convergence_section(suite, root, all_docs, results_dir)
    claims = claim_results(suite, root, all_docs, (convergence or {}).get("plateau"))
    env = Environment(
        loader=PackageLoader("sparsebench.report", "templates"),
        autoescape=select_autoescape(["html"]),
    )
    env.filters["num"] = _num
    html = env.get_template("index.html").render(
        sections=sections,
        claims=claims,
        tally=claim_tally(claims),
        convergence=convergence,
        regressions=regression_tables(results_dir),
        kernels=kernel_sections(results_dir),
        throughput=throughput_table(results_dir),
        seed_batching=seed_batching_table(results_dir),
        provenance=provenance(all_docs, suite, root),
        total_runs=len(all_docs),
        total_wall=sum(s["wall_s"] for s in sections),
        hardware=sorted({d["spec"]["hardware"] for d in all_docs}),
        generated=datetime.now(UTC).isoformat(timespec="seconds"),
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(html)
    tmp.replace(out)
    return out


def _num(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        if value != value:
            return "–"
        if abs(value) >= 1e4:
            return f"{value:.3e}"
        return f"{value:.4g}"
    return str(value)
