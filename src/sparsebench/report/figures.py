"""Seaborn figures per family: quality against its cost axis (training FLOPs as executed for
sparse training and pruning, bytes sent for the communication families), and curves over training.

Every line is a mean over seeds with a 95% confidence band (never one seed drawn as truth).
Figures are returned as PNG bytes so the HTML page can inline them and Snakemake can file them.
"""

from __future__ import annotations

import io
import math
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from sparsebench.spec import Component  # noqa: E402

COST_AXIS = {
    "sparse_training": ("flops_train_sparse", "training FLOPs as executed", True),
    "pruning": ("flops_train_sparse", "training FLOPs as executed (all phases)", True),
    "compression": ("bytes_up", "bytes sent up (total, all workers)", True),
    "federated": ("bytes_up", "bytes sent up (total, all clients)", True),
}


def variant(spec: dict[str, Any]) -> str:
    """Method name and params other than the cost-axis param: one line per variant (density is
    the x axis of the sparsity families, so it is left out there)."""
    drop = "density" if spec["family"] in ("sparse_training", "pruning") else None
    params = {k: v for k, v in spec["method"]["params"].items() if k != drop}
    return Component(spec["method"]["name"], params).label()


def setting_label(spec: dict[str, Any]) -> str:
    """Dataset/model and training length: runs compared in one panel share all three."""
    budget = spec.get("budget", {})
    length = (
        f"{budget['rounds']} rounds"
        if spec["family"] == "federated" and "rounds" in budget
        else f"{budget['steps']} steps"
        if "steps" in budget
        else "default budget"
    )
    return f"{spec['dataset']['name']}/{spec['model']['name']}, {length}"


def curves_frame(docs: list[dict[str, Any]]) -> pd.DataFrame:
    """Test accuracy and perplexity (exp of the test loss) over steps or rounds, per run."""
    rows = []
    for doc in docs:
        if doc["status"] != "ok":
            continue
        curves = doc["curves"]
        x_key = "round" if "round" in curves else "step"
        losses = curves.get("test_loss", [])
        for i, (x, acc) in enumerate(
            zip(curves.get(x_key, []), curves.get("test_acc", []), strict=False)
        ):
            rows.append(
                {
                    "x": x,
                    "x_label": x_key,
                    "metric_test_acc": acc,
                    "metric_test_ppl": math.exp(min(losses[i], 50.0)) if i < len(losses) else None,
                    "variant": variant(doc["spec"]),
                    "setting": setting_label(doc["spec"]),
                    "seed": doc["spec"]["seed"],
                }
            )
    return pd.DataFrame(rows)


def pareto_front(
    points: pd.DataFrame, cost: str, quality: str, higher_is_better: bool = True
) -> pd.DataFrame:
    """Points not dominated by any other (lower cost and better quality), by increasing cost."""
    sign = 1.0 if higher_is_better else -1.0
    ordered = points.assign(_q=sign * points[quality]).sort_values(
        [cost, "_q"], ascending=[True, False]
    )
    best = float("-inf")
    keep = []
    for _, point in ordered.iterrows():
        if point["_q"] > best:
            keep.append(point)
            best = point["_q"]
    return pd.DataFrame(keep).drop(columns="_q") if keep else pd.DataFrame(keep)


def quality_metric(part: pd.DataFrame) -> tuple[str, str, bool]:
    """Perplexity (lower is better) for language-model runs, test accuracy otherwise."""
    if "metric_test_ppl" in part and part["metric_test_ppl"].notna().any():
        return "metric_test_ppl", "test perplexity", False
    return "metric_test_acc", "test accuracy", True


def family_figure(family: str, table: pd.DataFrame, docs: list[dict[str, Any]]) -> bytes:
    """One row of panels per (dataset, model) setting: quality vs the family's cost axis with
    its Pareto front, quality over training, and for communication families quality vs the
    simulated communication time on the slowest network link."""
    sns.set_theme(style="whitegrid", context="notebook")
    ok = table[table["status"] == "ok"].copy()
    ok["variant"] = [variant(d["spec"]) for d in docs if d["status"] == "ok"]
    ok["setting"] = [setting_label(d["spec"]) for d in docs if d["status"] == "ok"]
    curves = curves_frame(docs)
    settings = sorted(ok["setting"].unique())
    with_time = family in ("compression", "federated")
    ncols = 3 if with_time else 2
    fig, axes = plt.subplots(
        max(len(settings), 1),
        ncols,
        figsize=(6 * ncols, 4.2 * max(len(settings), 1)),
        squeeze=False,
    )
    for row, setting in zip(axes, settings, strict=False):
        part = ok[ok["setting"] == setting]
        metric, name, higher = quality_metric(part)
        _quality_vs_cost(row[0], family, part, metric, name, higher, setting)
        setting_curves = curves[curves["setting"] == setting] if not curves.empty else curves
        _curves(row[1], setting_curves, metric, name)
        if with_time:
            _quality_vs_time(row[2], part, metric, name)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    return buffer.getvalue()


def _quality_vs_cost(ax, family, part, metric, name, higher, setting) -> None:
    column, label, log_x = COST_AXIS[family]
    # a measured cost differs in its last digits between seeds: place a config at its mean
    part = part.assign(**{column: part.groupby("config")[column].transform("mean")})
    sns.lineplot(
        data=part,
        x=column,
        y=metric,
        hue="variant",
        markers=True,
        marker="o",
        errorbar=("ci", 95),
        ax=ax,
    )
    front = pareto_front(part.groupby("variant")[[column, metric]].mean(), column, metric, higher)
    if len(front) > 1:
        ax.plot(
            front[column],
            front[metric],
            "k--",
            lw=1,
            drawstyle="steps-post",
            label="Pareto front (means)",
        )
    if log_x:
        ax.set_xscale("log")
    ax.set(xlabel=label, ylabel=name, title=f"{setting}: {name} vs {label}")
    ax.legend(fontsize=6, loc="best")


def _curves(ax, curves: pd.DataFrame, metric: str, name: str) -> None:
    if curves.empty or curves[metric].isna().all():
        ax.set_visible(False)
        return
    sns.lineplot(
        data=curves, x="x", y=metric, hue="variant", errorbar=("ci", 95), ax=ax, legend=False
    )
    ax.set(
        xlabel=curves["x_label"].iloc[0],
        ylabel=name,
        title=f"{name} over training (mean, 95% CI over seeds)",
    )


def _quality_vs_time(ax, part: pd.DataFrame, metric: str, name: str) -> None:
    links = [c for c in part.columns if c.startswith("comm_s_") and part[c].notna().any()]
    if not links:
        ax.set_visible(False)
        return
    slowest = max(links, key=lambda c: part[c].max())
    sns.scatterplot(data=part, x=slowest, y=metric, hue="variant", ax=ax, legend=False)
    ax.set_xscale("symlog")
    ax.set(
        xlabel=f"simulated communication time (s), {slowest.removeprefix('comm_s_')}",
        ylabel=name,
        title=f"{name} vs simulated time on the slowest link",
    )


def kernel_figure(doc: dict[str, Any]) -> bytes | None:
    """Speedup over each baseline (log scale: baselines differ by orders of magnitude) and the
    fraction of the measured copy bandwidth (else the profile's peak) and of peak compute, per
    shape; None when the kernel was only interpreted (no timing to show)."""
    rows = []
    for case in doc["cases"]:
        timing = case.get("timings", {})
        if not timing.get("comparable"):
            continue
        shape = ",".join(f"{v}" if k == "dtype" else f"{k}={v}" for k, v in case["shape"].items())
        for baseline, speedup in timing.get("speedup_vs", {}).items():
            rows.append(
                {"shape": shape, "what": f"vs {baseline}", "panel": "speedup", "value": speedup}
            )
        mine = timing.get("triton", {})
        bandwidth = "frac_copy_gbps" if mine.get("frac_copy_gbps") else "frac_peak_gbps"
        for key, label in ((bandwidth, "bandwidth"), ("frac_peak_tflops", "compute")):
            if mine.get(key) is not None:
                rows.append(
                    {"shape": shape, "what": label, "panel": "peak", "value": 100 * mine[key]}
                )
    if not rows:
        return None
    frame = pd.DataFrame(rows)
    sns.set_theme(style="whitegrid", context="notebook")
    height = 1.5 + 0.3 * frame["shape"].nunique()
    fig, (left, right) = plt.subplots(1, 2, figsize=(14, height))
    speed = frame[frame["panel"] == "speedup"]
    if not speed.empty:
        sns.barplot(data=speed, y="shape", x="value", hue="what", ax=left, orient="h")
        left.axvline(1.0, color="k", lw=1, ls="--")
        left.set_xscale("log")
    left.set(
        xlabel="speedup (baseline time / Triton time)",
        ylabel="",
        title=f"{doc['kernel']}: speedup per shape",
    )
    peak = frame[frame["panel"] == "peak"]
    if not peak.empty:
        sns.barplot(data=peak, y="shape", x="value", hue="what", ax=right, orient="h")
    right.set(
        xlabel="% of copy bandwidth, of peak compute",
        ylabel="",
        title="fraction of peak (roofline position)",
    )
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    return buffer.getvalue()
