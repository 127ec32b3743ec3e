"""Sparse training: the method picks masks at setup and acts through the trainer's hooks."""

from __future__ import annotations

from sparsebench.engines.context import RunContext, model_costs
from sparsebench.engines.trainer import train
from sparsebench.metrics import final_metrics
from sparsebench.spec import RunResult


def run(ctx: RunContext) -> RunResult:
    ctx.method.prepare(ctx.model, ctx.data, ctx.budget.steps)
    log = train(
        ctx.model,
        ctx.data,
        ctx.budget,
        ctx.seeds["data"],
        hooks=ctx.method,
        checkpoint=ctx.extra.get("checkpoint"),
        run=ctx.spec.key(),
    )
    metrics = {**final_metrics(log.curves, ctx.data.language_model), **ctx.method.extra_metrics()}
    train_samples = log.steps_done * ctx.budget.batch_size
    return RunResult(
        metrics=metrics,
        curves=log.curves,
        costs=model_costs(ctx, train_samples, log.train_flops),
        status="diverged" if log.diverged else "ok",
    )
