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

Checkpoints (a path in the context and budget.checkpoint_every > 0): the run is a sequence of
train() calls, its phases (the dense phase, then each retraining in the order the method asks
for it). A phase resumes mid-way from its own trainer checkpoint, and a finished phase leaves
its outcome (weights, hooks' state, log, global RNG), which a resumed run puts back instead of
training again. What happens between phases (pruning decisions, rewinding, averaging soups)
is a deterministic function of the weights and is simply recomputed, so a killed run ends with
the same result as an uninterrupted one, for any method, without per-method code.
"""

from __future__ import annotations

import glob
import time
from collections.abc import Callable
from dataclasses import asdict, replace
from functools import partial
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from sparsebench import checkpoint as checkpoints
from sparsebench.data.base import Dataset
from sparsebench.engines.context import RunContext, model_costs
from sparsebench.engines.trainer import TrainLog, train, train_seeds
from sparsebench.hooks import TrainHooks
from sparsebench.metrics import evaluate, final_metrics
from sparsebench.seeds import derive
from sparsebench.sparsity.masked import MaskedWeights
from sparsebench.spec import Budget, RunResult


class Phases:
    """The checkpoint files of one pruning run. Phase k's trainer checkpoint is
    `<stem>.phase<k><suffix>` beside `path`, its finished outcome `<stem>.phase<k>.done<suffix>`;
    `path` itself records the run they belong to, so that files of another run are refused and
    cleared. Without a path nothing is read or written."""

    def __init__(self, path: Path | None, identity: dict[str, Any]) -> None:
        self.path = path
        if path is not None and checkpoints.load_matching(path, **identity) is None:
            self._clear()
            checkpoints.save(identity, path)

    def _file(self, phase: int, tag: str = "") -> Path:
        return self.path.with_name(f"{self.path.stem}.phase{phase}{tag}{self.path.suffix}")

    def train_checkpoint(self, phase: int) -> Path | None:
        """Where phase `phase`'s train() call keeps its mid-phase checkpoint."""
        return None if self.path is None else self._file(phase)

    def outcome(self, phase: int) -> dict[str, Any] | None:
        """The recorded outcome of phase `phase`, if it finished in an earlier attempt."""
        return None if self.path is None else checkpoints.load(self._file(phase, ".done"))

    def record(self, phase: int, outcome: dict[str, Any]) -> None:
        if self.path is not None:
            checkpoints.save(outcome, self._file(phase, ".done"))

    def finish(self) -> None:
        """Remove every checkpoint file of the run: it has ended."""
        if self.path is not None:
            self._clear()
            checkpoints.remove(self.path)

    def _clear(self) -> None:
        pattern = f"{glob.escape(self.path.stem)}.phase*{self.path.suffix}"
        for stale in self.path.parent.glob(pattern):
            checkpoints.remove(stale)


def _phase(
    phases: Phases,
    phase: int,
    model: nn.Module,
    hooks: TrainHooks,
    training: Callable[..., TrainLog],
) -> TrainLog:
    """Run phase `phase` as `training(checkpoint=...)` and record its outcome, or, when an
    earlier attempt finished it, put that outcome back instead of training again."""
    done = phases.outcome(phase)
    if done is not None:
        model.load_state_dict(done["model"])
        hooks.load_state_dict(done["hooks"])
        torch.set_rng_state(done["torch_rng"])
        model.train()  # as train() leaves it
        return TrainLog(**done["log"])
    log = training(checkpoint=phases.train_checkpoint(phase))
    outcome = {
        "model": model.state_dict(),
        "hooks": hooks.state_dict(),
        "torch_rng": torch.get_rng_state(),
        "log": asdict(log),
    }
    phases.record(phase, outcome)
    return log


class DenseHooks(TrainHooks):
    """The method's dense-phase hooks, whose checkpointed state also carries the method's own
    (IMP's rewind iterate is taken by its hook but kept on the method)."""

    def __init__(self, inner: TrainHooks, method: Any) -> None:
        self.inner, self.method = inner, method

    def bind_optimizer(self, optimizer: torch.optim.Optimizer) -> None:
        self.inner.bind_optimizer(optimizer)

    def after_backward(self, step: int) -> None:
        self.inner.after_backward(step)

    def after_step(self, step: int) -> None:
        self.inner.after_step(step)

    def skips_optimizer_step(self, step: int) -> bool:
        return self.inner.skips_optimizer_step(step)

    def dense_weight_grad(self, step: int) -> bool:
        return self.inner.dense_weight_grad(step)

    def state_dict(self) -> dict[str, Any]:
        return {"hooks": self.inner.state_dict(), "method": self.method.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.inner.load_state_dict(state["hooks"])
        self.method.load_state_dict(state["method"])


class Retrainer:
    """Retrains a model under fixed masks; records curves and the quality at each start.
    Each call is the run's next phase (the dense phase is phase 0); its batch order comes from
    seeds.derive(root, "retrain", seed_offset)."""

    def __init__(
        self,
        data: Dataset,
        budget: Budget,
        root_seed: int,
        step_offset: int,
        phases: Phases | None = None,
    ) -> None:
        self.data, self.budget, self.root_seed = data, budget, root_seed
        self.phases = phases or Phases(None, {})
        self.step = step_offset
        self.curves: dict[str, list] = {}
        self.start_evals: list[dict[str, float]] = []
        self.calls = 0
        self.steps_done = 0
        self.train_flops = 0.0
        self.seconds = 0.0
        self.diverged = False

    def __call__(
        self,
        model: nn.Module,
        masks: dict,
        steps: int,
        seed_offset: int = 0,
        weight_decay: float | None = None,
        lr_factor: Callable[[int, int], float] | None = None,
        data: Dataset | None = None,
        schedule_from: int = 0,
    ) -> TrainLog:
        """`steps` steps with `masks` fixed; another batch order per `seed_offset`; the lr at
        each step budget.lr * lr_factor(step, steps) when given (see `train`), else the
        budget's schedule resumed at step `schedule_from` of a `schedule_from + steps` run (IMP's
        rewinding); on `data`'s training samples when given (a method that holds some out),
        else the run's."""
        clock = time.perf_counter()
        masked = self._start(model, masks)
        budget = (
            self.budget if weight_decay is None else replace(self.budget, weight_decay=weight_decay)
        )
        if lr_factor is None and schedule_from > 0:
            lr_factor = partial(_resumed_schedule, budget, schedule_from)
        training = partial(
            train,
            model,
            self.data if data is None else data,
            budget,
            derive(self.root_seed, "retrain", seed_offset),
            masked,
            steps,
            lr_factor=lr_factor,
        )
        log = _phase(self.phases, self.calls, model, masked, training)
        self._finish(log, time.perf_counter() - clock)
        return log

    def _start(self, model: nn.Module, masks: dict) -> MaskedWeights:
        """Begin a retraining: masks applied, the quality at its start recorded."""
        masked = MaskedWeights(model, masks)
        self.start_evals.append(evaluate(model, self.data.x_test, self.data.y_test))
        self.calls += 1
        return masked

    def _finish(self, log: TrainLog, seconds: float) -> None:
        self.curves = _concat(self.curves, log.curves, self.step)
        self.step += log.steps_done
        self.steps_done += log.steps_done
        self.train_flops += log.train_flops
        self.diverged |= log.diverged
        self.seconds += seconds


def retrain_seeds(
    retrainers: list[Retrainer], models: list[nn.Module], masks: list[dict], steps: int
) -> None:
    """Each retrainer's first retraining (`Retrainer.__call__` with its defaults) of its own
    model for `steps` steps, all seeds as one batched computation (`train_seeds`)."""
    clock = time.perf_counter()
    hooks = [r._start(m, k) for r, m, k in zip(retrainers, models, masks, strict=True)]
    first = retrainers[0]
    seeds = [derive(r.root_seed, "retrain", 0) for r in retrainers]
    logs = train_seeds(models, first.data, first.budget, seeds, hooks, steps, desc="retrain")
    seconds = (time.perf_counter() - clock) / len(retrainers)
    for retrainer, log in zip(retrainers, logs, strict=True):
        retrainer._finish(log, seconds)


def _resumed_schedule(budget: Budget, start: int, step: int, steps: int) -> float:
    """The budget's learning-rate factor at `step` of a retraining that resumes its schedule
    at step `start`."""
    return budget.lr_at(start + step, start + steps) / budget.lr


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
    if method.iterative:
        clock = time.perf_counter()
        masks = method.prune_iteratively(model, data, retrainer, steps)
        MaskedWeights(model, masks)
        return time.perf_counter() - clock - retrainer.seconds
    masks, prune_s = _prune_once(method, model, data)
    if steps:
        retrainer(model, masks, steps)
    return prune_s


def _prune_once(method: Any, model: nn.Module, data: Dataset) -> tuple[dict, float]:
    """A one-shot method's masks, applied to `model`, and the seconds its pruning took."""
    clock = time.perf_counter()
    masks = method.prune(model, data)
    prune_s = time.perf_counter() - clock
    MaskedWeights(model, masks)
    return masks, prune_s


def _phases(ctx: RunContext) -> Phases:
    """This run's checkpoint files, for this run (its key leaves out bookkeeping such as
    checkpoint_every) and step budget; none when checkpoints are off."""
    path = ctx.extra.get("checkpoint") if ctx.budget.checkpoint_every else None
    return Phases(path, {"run": ctx.spec.key(), "total_steps": ctx.budget.steps})


def prepare(ctx: RunContext) -> None:
    """Nothing to set up before the dense phase (a method's dense hooks come with it)."""


def run(ctx: RunContext) -> RunResult:
    budget, method = ctx.budget, ctx.method
    finetune_steps = int(round(budget.steps * method.params.finetune_fraction))
    phases = _phases(ctx)
    hooks = DenseHooks(method.dense_hooks(ctx.model), method)
    dense = partial(
        train, ctx.model, ctx.data, budget, ctx.seeds["data"], hooks, budget.steps - finetune_steps
    )
    log = _phase(phases, 0, ctx.model, hooks, partial(dense, desc="dense"))
    before = evaluate(ctx.model, ctx.data.x_test, ctx.data.y_test)
    retrainer = Retrainer(ctx.data, budget, ctx.seeds["root"], log.steps_done, phases)
    prune_s = 0.0
    if not log.diverged:
        prune_s = _prune_and_retrain(method, ctx.model, ctx.data, retrainer, finetune_steps)
    phases.finish()
    return _result(ctx, log, before, retrainer, prune_s)


def run_seeds(ctxs: list[RunContext]) -> list[RunResult]:
    """`run` for every seed of one cell of a one-shot method: the dense phases as one batched
    computation, each seed pruned on its own, then the fine-tuning phases batched."""
    first = ctxs[0]
    budget, data = first.budget, first.data
    finetune_steps = int(round(budget.steps * first.method.params.finetune_fraction))
    models = [ctx.model for ctx in ctxs]
    hooks = [DenseHooks(ctx.method.dense_hooks(ctx.model), ctx.method) for ctx in ctxs]
    seeds = [ctx.seeds["data"] for ctx in ctxs]
    dense_steps = budget.steps - finetune_steps
    logs = train_seeds(models, data, budget, seeds, hooks, dense_steps, desc="dense")
    befores = [evaluate(model, data.x_test, data.y_test) for model in models]
    retrainers = [
        Retrainer(data, budget, ctx.seeds["root"], log.steps_done)
        for ctx, log in zip(ctxs, logs, strict=True)
    ]
    prune_s = [0.0] * len(ctxs)
    pruned = [i for i, log in enumerate(logs) if not log.diverged]
    masks = {}
    for i in pruned:
        masks[i], prune_s[i] = _prune_once(ctxs[i].method, models[i], data)
    if finetune_steps and pruned:
        retrain_seeds(
            [retrainers[i] for i in pruned],
            [models[i] for i in pruned],
            [masks[i] for i in pruned],
            finetune_steps,
        )
    return [
        _result(ctx, log, before, retrainer, seconds)
        for ctx, log, before, retrainer, seconds in zip(
            ctxs, logs, befores, retrainers, prune_s, strict=True
        )
    ]


def _result(
    ctx: RunContext, log: TrainLog, before: dict, retrainer: Retrainer, prune_s: float
) -> RunResult:
    """The run's result from its dense phase's log, the quality before pruning, its
    retrainer's record and the seconds spent pruning."""
    budget, data, method = ctx.budget, ctx.data, ctx.method
    language_model = data.language_model
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
    samples = (log.steps_done + retrainer.steps_done) * budget.batch_size
    costs = model_costs(ctx, samples, log.train_flops + retrainer.train_flops)
    costs.update(report, prune_s=prune_s)
    diverged = log.diverged or retrainer.diverged
    return RunResult(
        metrics=metrics,
        curves=_concat(log.curves, retrainer.curves, 0),
        costs=costs,
        status="diverged" if diverged else "ok",
    )
