"""Sparse training: the method picks masks at setup and acts through the trainer's hooks.

`run_seeds` trains several seeds of one cell, each already `prepare`d, as one batched
computation (`train_seeds`).
"""

from __future__ import annotations

from sparsebench.engines.context import RunContext, model_costs
from sparsebench.engines.trainer import TrainLog, train, train_seeds
from sparsebench.metrics import final_metrics
from sparsebench.spec import RunResult


def prepare(ctx: RunContext) -> None:
    """The method's setup: record the horizon and choose the initial masks."""
    ctx.method.prepare(ctx.model, ctx.data, ctx.budget.steps)


def run(ctx: RunContext) -> RunResult:
    prepare(ctx)
    log = train(
        ctx.model,
        ctx.data,
        ctx.budget,
        ctx.seeds["data"],
        hooks=ctx.method,
        checkpoint=ctx.extra.get("checkpoint"),
        run=ctx.spec.key(),
    )
    return _result(ctx, log)


def run_seeds(ctxs: list[RunContext]) -> list[RunResult]:
    """`run` for every seed of one cell, each prepared, trained together; their models must
    be batchable (`stacked.model_batchable`)."""
    first = ctxs[0]
    logs = train_seeds(
        [ctx.model for ctx in ctxs],
        first.data,
        first.budget,
        [ctx.seeds["data"] for ctx in ctxs],
        [ctx.method for ctx in ctxs],
    )
    return [_result(ctx, log) for ctx, log in zip(ctxs, logs, strict=True)]


def _result(ctx: RunContext, log: TrainLog) -> RunResult:
    metrics = {**final_metrics(log.curves, ctx.data.language_model), **ctx.method.extra_metrics()}
    train_samples = log.steps_done * ctx.budget.batch_size
    return RunResult(
        metrics=metrics,
        curves=log.curves,
        costs=model_costs(ctx, train_samples, log.train_flops),
        status="diverged" if log.diverged else "ok",
    )
