"""Whether each grid's budget brings its reference cell near its plateau.

A grid's `convergence` section names its reference cell (dense, uncompressed, FedAvg on IID
clients); the workflow trains that cell's first seed `factor` times longer (the probe,
results/probes/). The budget counts as near the plateau when the probe's plateau (the mean of
its last quarter's evaluations) is no more than `tolerance` better than the reference run of
the same seed at the grid's budget. Otherwise the
grid's claims compare methods early in training, and their caveats say so.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

if TYPE_CHECKING:
    from sparsebench.config import Experiment

TOLERANCE = 0.02
"""Default gain (metric units: 2 accuracy points) below which a budget is near the plateau."""


def load_probes(results_dir: Path) -> dict[str, dict[str, Any]]:
    """Every probe's result.json, by run key."""
    paths = sorted(Path(results_dir).glob("probes/*/*/result.json"))
    documents = [json.loads(path.read_text()) for path in paths]
    return {document["key"]: document for document in documents}


def _length(budget: dict[str, Any], family: str) -> int | None:
    return budget.get("rounds" if family == "federated" else "steps")


def plateau(document: dict[str, Any], metric: str) -> float:
    """The probe's plateau: the mean of its evaluations in the last quarter of its training
    (one final evaluation wobbles by points under a constant learning rate), or its final
    metric where its curves do not hold the metric."""
    curves = document["curves"]
    x, values = curves.get("step") or curves.get("round") or [], curves.get(metric) or []
    tail = [v for t, v in zip(x, values, strict=False) if t > 0.75 * max(x, default=0)]
    return sum(tail) / len(tail) if tail else document["metrics"][metric]


def convergence_row(
    experiment: Experiment, docs: dict[str, dict[str, Any]], probes: dict[str, dict[str, Any]]
) -> dict[str, Any]:
    """One grid's reference at its budget against its probe: metric values, gain, verdict."""
    section = experiment.raw["convergence"]
    metric = section.get("metric", "test_acc")
    higher = section.get("better", "higher") == "higher"
    tolerance = section.get("tolerance", TOLERANCE)
    family = experiment.family
    if experiment.reference is None or experiment.probe is None:
        raise ValueError(f"{experiment.path}: no convergence section to probe")
    reference, probe = docs.get(experiment.reference.key()), probes.get(experiment.probe.key())
    row: dict[str, Any] = {
        "grid": experiment.path.name,
        "reference": experiment.reference.cell_key().split("/")[1],
        "seed": experiment.reference.seed,
        "budget": _length(experiment.reference.budget, family),
        "probe budget": _length(experiment.probe.budget, family),
        "metric": metric,
        "at budget": None,
        "probe plateau": None,
        "gain": None,
        "tolerance": tolerance,
        "verdict": "not run",
        "curves": [],
    }
    if reference is None or probe is None:
        return row
    row["curves"] = [("budget", reference["curves"]), ("probe", probe["curves"])]
    if reference["status"] != "ok" or probe["status"] != "ok":
        row["verdict"] = "diverged"
        return row
    at_budget, at_probe = reference["metrics"][metric], plateau(probe, metric)
    gain = at_probe - at_budget if higher else at_budget - at_probe
    row.update({"at budget": at_budget, "probe plateau": at_probe, "gain": gain})
    row["verdict"] = (
        "near plateau" if gain <= tolerance else f"short of plateau by {gain:.3f} {metric}"
    )
    return row


def convergence_rows(
    experiments: list[Experiment], docs: list[dict[str, Any]], results_dir: Path
) -> list[dict[str, Any]]:
    """A row per grid that declares a convergence probe."""
    by_key = {doc["key"]: doc for doc in docs}
    probes = load_probes(results_dir)
    return [
        convergence_row(experiment, by_key, probes)
        for experiment in experiments
        if experiment.probe is not None
    ]


def caveat(row: dict[str, Any]) -> str:
    """The caveat a grid's claims carry when its budget stops short of the plateau."""
    if row["gain"] is None or row["gain"] <= row["tolerance"]:
        return ""
    return (
        f"budget short of plateau: the reference gains {row['gain']:.3f} {row['metric']} "
        f"with {row['probe budget'] // row['budget']}x the budget"
    )


def convergence_figure(rows: list[dict[str, Any]]) -> bytes | None:
    """Each probed grid's reference curve at the grid's budget and the probe's, side by side."""
    drawn = [row for row in rows if row["curves"]]
    if not drawn:
        return None
    fig, axes = plt.subplots(1, len(drawn), figsize=(3.2 * len(drawn), 2.8), squeeze=False)
    for ax, row in zip(axes[0], drawn, strict=True):
        metric = row["metric"]
        for label, curves in row["curves"]:
            x = curves.get("step") or curves.get("round") or []
            ax.plot(x, curves.get(metric, []), label=label, marker="." if label == "budget" else "")
        ax.axvline(row["budget"], color="grey", linewidth=0.8, linestyle=":")
        ax.set_title(f"{row['grid']}\n{row['reference']}", fontsize=8)
        ax.set_xlabel("rounds" if "round" in row["curves"][0][1] else "steps", fontsize=8)
        ax.set_ylabel(metric, fontsize=8)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=7)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    return buffer.getvalue()
