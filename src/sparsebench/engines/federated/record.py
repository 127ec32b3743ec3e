"""What every federated loop records: the curves (one point per evaluated round, every
`budget.eval_every_rounds` rounds and after the last, holding what the rounds since the previous
point sent and computed), the clients' own accuracy, the result."""

from __future__ import annotations

import itertools

import torch

from sparsebench.data.partition import label_skew, manifest_hash
from sparsebench.engines.context import RunContext, model_costs
from sparsebench.engines.federated.clients import load_vector
from sparsebench.engines.federated.resume import Progress
from sparsebench.metrics import evaluate, final_metrics
from sparsebench.spec import Budget, RunResult

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


def evaluation_due(budget: Budget, rnd: int) -> bool:
    """Whether budget round `rnd` evaluates the global model: every `eval_every_rounds`
    rounds, and the last one always."""
    return rnd % budget.eval_every_rounds == 0 or rnd == budget.rounds


def log_round(
    ctx: RunContext,
    progress: Progress,
    rnd: int,
    losses: list[float],
    up: int,
    down: int,
    global_vec: torch.Tensor,
    compute_s: float | None = None,
) -> bool:
    """Count round `rnd` (its clients' losses, bytes sent each way, and, for the round loops,
    its client compute seconds) and, when an evaluation is due, load `global_vec` into the
    model, evaluate it and log one curve point. A point holds everything counted since the
    previous one: its bytes (so the curves still sum to all bytes sent), its compute seconds,
    and as `train_loss` the mean of every client loss in those rounds. True when logged (the
    loop then adds its own curves, and the asynchronous loops their clock's compute)."""
    progress.unlogged_rounds += 1
    progress.unlogged_losses.extend(losses)
    progress.unlogged_up += up
    progress.unlogged_down += down
    if compute_s is not None:
        progress.unlogged_compute_s += compute_s
    if not evaluation_due(ctx.budget, rnd):
        return False
    _log(ctx, progress, rnd, global_vec, compute_s is not None)
    return True


def flush(ctx: RunContext, progress: Progress, global_vec: torch.Tensor, timed: bool) -> bool:
    """Log the rounds counted since the last point at the last round done (a run that
    diverged between two evaluations); True when there were any. `timed`: the loop passes
    its compute to `log_round`."""
    if not progress.unlogged_rounds:
        return False
    _log(ctx, progress, progress.rounds_done, global_vec, timed)
    return True


def _log(ctx, progress: Progress, rnd: int, global_vec: torch.Tensor, timed: bool) -> None:
    load_vector(ctx.model, global_vec)
    ev = evaluate(ctx.model, ctx.data.x_test, ctx.data.y_test)
    curves, losses = progress.curves, progress.unlogged_losses
    up, down = progress.unlogged_up, progress.unlogged_down
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
    if timed:
        progress.compute_s.append(progress.unlogged_compute_s)
    progress.unlogged_rounds, progress.unlogged_losses = 0, []
    progress.unlogged_up = progress.unlogged_down = 0
    progress.unlogged_compute_s = 0.0


def run_result(ctx, parts, progress: Progress, diverged: bool) -> RunResult:
    """The run's result from what its loop recorded; where the loop timed its client compute,
    also the compute time so far at each logged round (one per curve point), from which the
    runner gets the time to the target accuracy on each network link (`traffic` has one entry
    per budget round, logged or not)."""
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
