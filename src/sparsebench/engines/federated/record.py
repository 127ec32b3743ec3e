"""What every federated loop records: per-round curves, the clients' own accuracy, the result."""

from __future__ import annotations

import itertools

import torch

from sparsebench.data.partition import label_skew, manifest_hash
from sparsebench.engines.context import RunContext, model_costs
from sparsebench.engines.federated.resume import Progress
from sparsebench.metrics import evaluate, final_metrics
from sparsebench.spec import RunResult

EVAL_BATCH = 1000


def _hits(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-sample accuracy (the mean over tokens for sequence targets)."""
    hits = (logits.argmax(1) == target).float()
    return hits.flatten(1).mean(1) if hits.dim() > 1 else hits


def client_accuracy(ctx: RunContext, parts: list[torch.Tensor]) -> dict[str, float]:
    """The global model's accuracy on each client's own training data: mean, spread, worst 10%."""
    x, y = ctx.data.x_train, ctx.data.y_train
    with torch.no_grad():
        ctx.model.eval()
        correct = torch.cat(
            [
                _hits(ctx.model(x[i : i + EVAL_BATCH]), y[i : i + EVAL_BATCH])
                for i in range(0, len(y), EVAL_BATCH)
            ]
        )
    accs = torch.stack([correct[p].mean() for p in parts])
    return {
        "client_acc_mean": float(accs.mean()),
        "client_acc_std": float(accs.std()) if len(parts) > 1 else 0.0,
        "client_acc_p10": float(accs.quantile(0.1)),
    }


def new_curves() -> dict[str, list]:
    keys = ("round", "train_loss", "test_loss", "test_acc", "bytes_up", "bytes_down")
    return {k: [] for k in (*keys, "bytes_total")}


def log_round(ctx, curves, rnd, losses, up, down) -> None:
    ev = evaluate(ctx.model, ctx.data.x_test, ctx.data.y_test)
    total = (curves["bytes_total"][-1] if curves["bytes_total"] else 0) + up + down
    row = {
        "round": rnd,
        "train_loss": sum(losses) / len(losses),
        "test_loss": ev["loss"],
        "test_acc": ev["acc"],
        "bytes_up": up,
        "bytes_down": down,
        "bytes_total": total,
    }
    for key, value in row.items():
        curves[key].append(value)


def run_result(ctx, parts, progress: Progress, diverged: bool) -> RunResult:
    """The run's result from what its loop recorded; where the loop timed its rounds' client
    compute (the round loops), also the compute time so far at each logged round, from which
    the runner gets the time to the target accuracy on each network link."""
    curves, compute_s = progress.curves, progress.compute_s
    budget, params = ctx.budget, ctx.method.params
    active = params.clients if ctx.method.execution == "gossip" else params.clients_per_round
    samples = budget.rounds * active * budget.local_steps * budget.batch_size
    costs = model_costs(ctx, samples)
    costs["bytes"] = {"up": sum(curves["bytes_up"]), "down": sum(curves["bytes_down"])}
    metrics = {}
    if curves["round"]:
        metrics = {
            **final_metrics(curves, ctx.data.language_model),
            **client_accuracy(ctx, parts),
        }
    metrics["label_skew"] = label_skew(ctx.data.y_train, parts, ctx.data.num_classes)
    costs["partition"] = {"sha256": manifest_hash(parts), "client_sizes": [len(p) for p in parts]}
    if compute_s:
        costs["compute_s"] = sum(compute_s)
        costs["compute_s_at_eval"] = list(itertools.accumulate(compute_s))
    return RunResult(
        metrics=metrics,
        curves=curves,
        costs=costs,
        status="diverged" if diverged else "ok",
        traffic=progress.traffic,
    )
