"""Pruning: train dense, prune with the method's masks, fine-tune with the masks held fixed.

The budget's steps are split: (1 - finetune_fraction) dense, the rest after pruning. Quality is
recorded before pruning, right after the (last) pruning step, and at the end; for language
models perplexity is reported beside accuracy.

Two kinds of method meet this engine through hooks declared on `PruningMethod`:
- one-shot: `prune(model, data) -> masks`; the engine then fine-tunes with the masks fixed;
- `iterative` (IMP, model soups): `prune_iteratively(model, data, retrain, steps) -> masks`,
  which drives its own prune/retrain rounds within `steps` retraining steps through the
  `Retrainer` the engine hands it; the engine does no extra fine-tuning.
Every method also has `dense_hooks(model)` (IMP keeps an early iterate for rewinding) and a
`report` dict, which lands in the run's costs (post-training methods: per-layer
reconstruction error), except its `metrics` entry, which joins the metrics (the mean
reconstruction error; the soup against its best ingredient). The time to prune (`prune_s`,
retraining excluded) is always measured here.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

import torch.nn as nn

from sparsebench.data.base import Dataset
from sparsebench.engines.context import RunContext, model_costs
from sparsebench.engines.trainer import TrainLog, train
from sparsebench.metrics import evaluate, final_metrics
from sparsebench.sparsity.masked import MaskedWeights
from sparsebench.spec import Budget, RunResult


class Retrainer:
    """Retrains a model under fixed masks; records curves and the quality at each start."""

    def __init__(self, data: Dataset, budget: Budget, data_seed: int, step_offset: int) -> None:
        self.data, self.budget, self.data_seed = data, budget, data_seed
        self.step = step_offset
        self.curves: dict[str, list] = {}
        self.start_evals: list[dict[str, float]] = []
        self.steps_done = 0
        self.seconds = 0.0
        self.diverged = False

    def __call__(
        self,
        model: nn.Module,
        masks: dict,
        steps: int,
        seed_offset: int = 0,
        weight_decay: float | None = None,
    ) -> TrainLog:
        """`steps` steps with `masks` fixed; another batch order per `seed_offset`."""
        clock = time.perf_counter()
        masked = MaskedWeights(model, masks)
        self.start_evals.append(evaluate(model, self.data.x_test, self.data.y_test))
        budget = (
            self.budget if weight_decay is None else replace(self.budget, weight_decay=weight_decay)
        )
        log = train(
            model, self.data, budget, self.data_seed + seed_offset, hooks=masked, steps=steps
        )
        self.curves = _concat(self.curves, log.curves, self.step)
        self.step += log.steps_done
        self.steps_done += log.steps_done
        self.diverged |= log.diverged
        self.seconds += time.perf_counter() - clock
        return log


def _concat(curves: dict[str, list], more: dict[str, list], offset: int) -> dict[str, list]:
    out = {k: list(v) for k, v in curves.items()}
    for key, values in more.items():
        shifted = [v + offset for v in values] if key == "step" else values
        out[key] = out.get(key, []) + list(shifted)
    return out


def _quality(prefix: str, evaluation: dict[str, float], language_model: bool) -> dict[str, float]:
    out = {f"acc_{prefix}": evaluation["acc"]}
    if language_model:
        out[f"ppl_{prefix}"] = evaluation["ppl"]
    return out


def _prune_and_retrain(
    method: Any, model: nn.Module, data: Dataset, retrainer: Retrainer, steps: int
) -> float:
    """Prune (and retrain for `steps`) through the method's protocol; seconds spent pruning."""
    clock = time.perf_counter()
    if method.iterative:
        masks = method.prune_iteratively(model, data, retrainer, steps)
        MaskedWeights(model, masks)
        return time.perf_counter() - clock - retrainer.seconds
    masks = method.prune(model, data)
    prune_s = time.perf_counter() - clock
    MaskedWeights(model, masks)
    if steps:
        retrainer(model, masks, steps)
    return prune_s


def run(ctx: RunContext) -> RunResult:
    budget, data, method = ctx.budget, ctx.data, ctx.method
    language_model = data.language_model
    finetune_steps = int(round(budget.steps * method.params.finetune_fraction))
    dense_hooks = method.dense_hooks(ctx.model)
    log = train(
        ctx.model,
        data,
        budget,
        ctx.seeds["data"],
        hooks=dense_hooks,
        steps=budget.steps - finetune_steps,
        desc="dense",
    )
    before = evaluate(ctx.model, data.x_test, data.y_test)
    retrainer = Retrainer(data, budget, ctx.seeds["data"] + 1, log.steps_done)
    prune_s = 0.0
    if not log.diverged:
        prune_s = _prune_and_retrain(method, ctx.model, data, retrainer, finetune_steps)
    final = evaluate(ctx.model, data.x_test, data.y_test)
    after_prune = retrainer.start_evals[-1] if retrainer.start_evals else final
    pruned_curves = {
        "test_acc": [*retrainer.curves.get("test_acc", []), final["acc"]],
        "test_loss": [*retrainer.curves.get("test_loss", []), final["loss"]],
    }
    metrics = {
        **_quality("before_prune", before, language_model),
        **_quality("after_prune", after_prune, language_model),
        **final_metrics(pruned_curves, language_model),
    }
    report: dict[str, Any] = dict(method.report)
    metrics.update(report.pop("metrics", {}))
    costs = model_costs(ctx, (log.steps_done + retrainer.steps_done) * budget.batch_size)
    costs.update(report, prune_s=prune_s)
    diverged = log.diverged or retrainer.diverged
    return RunResult(
        metrics=metrics,
        curves=_concat(log.curves, retrainer.curves, 0),
        costs=costs,
        status="diverged" if diverged else "ok",
    )
