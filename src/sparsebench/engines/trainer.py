"""The single-model training loop every family reuses, with hooks for methods.

A method influences training only through `TrainHooks`: `after_backward` (for example to mask
or read gradients), `after_step` (to re-apply masks or update them) and `skips_optimizer_step`
(to leave a step's update out). The loop owns batching, evaluation, curves, divergence
detection, the progress bar and the training FLOPs as executed: every step is charged at the
density of each layer's weights during that step (counted from the weights), with a dense
weight gradient where the method's `dense_weight_grad` says so.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm import tqdm

from sparsebench import checkpoint as checkpoints
from sparsebench.data.base import Dataset
from sparsebench.hooks import TrainHooks
from sparsebench.metrics import evaluate, flop_profile
from sparsebench.sparsity.masked import prunable_layers
from sparsebench.spec import Budget


@dataclass
class TrainLog:
    curves: dict[str, list] = field(
        default_factory=lambda: {"step": [], "train_loss": [], "test_loss": [], "test_acc": []}
    )
    diverged: bool = False
    steps_done: int = 0
    train_flops: float = 0.0
    """FLOPs the steps executed, each at the densities live then (metrics.FlopProfile)."""


@torch.no_grad()
def live_density(layers: dict[str, nn.Module]) -> dict[str, float]:
    """Fraction of nonzero entries of each layer's weight as the forward sees it now (after any
    parametrization, such as an N:M projection), counted from the tensor."""
    return {
        name: int(torch.count_nonzero(m.weight)) / m.weight.numel() for name, m in layers.items()
    }


def make_optimizer(params, budget: Budget) -> torch.optim.Optimizer:
    if budget.optimizer == "adam":
        return torch.optim.Adam(params, lr=budget.lr, weight_decay=budget.weight_decay)
    return torch.optim.SGD(
        params, lr=budget.lr, momentum=budget.momentum, weight_decay=budget.weight_decay
    )


def batches(n: int, batch_size: int, generator: torch.Generator):
    """Endless minibatch indices: a fresh permutation each epoch, drawn from `generator`."""
    while True:
        order = torch.randperm(n, generator=generator)
        for start in range(0, n - batch_size + 1, batch_size):
            yield order[start : start + batch_size]


def train(
    model: nn.Module,
    data: Dataset,
    budget: Budget,
    data_seed: int,
    hooks: TrainHooks | None = None,
    steps: int | None = None,
    desc: str = "train",
    checkpoint: Path | None = None,
    lr_factor: Callable[[int, int], float] | None = None,
    run: str = "",
) -> TrainLog:
    """Train for `steps` minibatch steps (default budget.steps), evaluating on the test set.

    The learning rate at 1-based `step` is budget.lr_at(step, steps), or, with `lr_factor`,
    budget.lr * lr_factor(step, steps) (a method's own schedule, such as SMS's retraining one).

    With a `checkpoint` path and budget.checkpoint_every > 0, the state is saved there every
    that many steps, a valid checkpoint of the same `run` (key) found there is resumed from
    (bit-identically), and it is deleted once training ends.
    """
    hooks = hooks or TrainHooks()
    steps = budget.steps if steps is None else steps
    lr_at = budget.lr_at if lr_factor is None else lambda s, n: budget.lr * lr_factor(s, n)
    optimizer = make_optimizer(model.parameters(), budget)
    hooks.bind_optimizer(optimizer)
    generator = torch.Generator().manual_seed(data_seed)
    batch_size = min(budget.batch_size, len(data.y_train))
    index_stream = batches(len(data.y_train), batch_size, generator)
    log = TrainLog()
    profile = flop_profile(model, data.x_train)
    layers = prunable_layers(model)
    model.train()
    running = 0.0
    every = budget.checkpoint_every if checkpoint is not None else 0
    resumed = checkpoints.load_training(checkpoint, steps, run) if every else None
    if resumed is not None:
        checkpoints.restore_training(resumed, model, optimizer, hooks, log.curves)
        for _ in range(resumed["step"]):
            next(index_stream)
        checkpoints.check_data_order(resumed, generator)
        running, log.steps_done = resumed["running"], resumed["step"]
        log.train_flops = resumed["train_flops"]
    first = log.steps_done + 1
    progress = tqdm(range(first, steps + 1), desc=desc, mininterval=2.0, leave=False)
    for step in progress:
        idx = next(index_stream)
        density = live_density(layers)
        loss = F.cross_entropy(model(data.x_train[idx]), data.y_train[idx])
        if not math.isfinite(loss.item()):
            log.diverged = True
            break
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        hooks.after_backward(step)
        if budget.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), budget.grad_clip)
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, steps)
        if not hooks.skips_optimizer_step(step):
            optimizer.step()
        log.train_flops += len(idx) * profile.train(density, hooks.dense_weight_grad(step))
        hooks.after_step(step)
        running += loss.item()
        log.steps_done = step
        if step % budget.eval_every == 0 or step == steps:
            evaluation = evaluate(model, data.x_test, data.y_test)
            window = step - (log.curves["step"][-1] if log.curves["step"] else 0)
            log.curves["step"].append(step)
            log.curves["train_loss"].append(running / window)
            log.curves["test_loss"].append(evaluation["loss"])
            log.curves["test_acc"].append(evaluation["acc"])
            progress.set_postfix(acc=f"{evaluation['acc']:.3f}")
            running = 0.0
        if every and step % every == 0 and step < steps:
            state = checkpoints.training_state(
                run=run,
                step=step,
                total_steps=steps,
                running=running,
                train_flops=log.train_flops,
                model=model,
                optimizer=optimizer,
                hooks=hooks,
                data_generator=generator,
                curves=log.curves,
            )
            checkpoints.save(state, checkpoint)
    progress.close()
    if every:
        checkpoints.remove(checkpoint)
    return log
