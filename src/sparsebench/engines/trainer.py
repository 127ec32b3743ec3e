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
from torch.func import functional_call, vmap
from tqdm import tqdm

from sparsebench import checkpoint as checkpoints
from sparsebench.data.base import Dataset
from sparsebench.engines.stacked import WeightFirstLinear, row_losses
from sparsebench.hooks import TrainHooks
from sparsebench.metrics import FlopProfile, evaluate, flop_profile
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
    lane = Lane(model, hooks or TrainHooks(), data_seed)
    _train_lanes([lane], None, data, budget, steps, desc, checkpoint, lr_factor, run)
    return lane.log


def train_seeds(
    models: list[nn.Module],
    data: Dataset,
    budget: Budget,
    data_seeds: list[int],
    hooks: list[TrainHooks],
    steps: int | None = None,
    desc: str = "train",
    lr_factor: Callable[[int, int], float] | None = None,
) -> list[TrainLog]:
    """`train` for several seeds of one cell at once: model s with its own hooks and batch
    order (data_seeds[s]), as one batched forward and backward (`SeedStack`), then each seed's
    hooks, gradient clipping and optimizer step on its own model, exactly as `train` runs them.
    A seed whose loss stops being finite stops there (diverged); the others go on. The models
    must share one batchable architecture (`stacked.model_batchable`); there are no mid-run
    checkpoints."""
    lanes = [Lane(m, h, seed) for m, h, seed in zip(models, hooks, data_seeds, strict=True)]
    stack = SeedStack(models)
    _train_lanes(lanes, stack, data, budget, steps, desc, None, lr_factor, "")
    return [lane.log for lane in lanes]


class Lane:
    """One model's training state in the loop: its hooks, optimizer, batch order and log."""

    def __init__(self, model: nn.Module, hooks: TrainHooks, data_seed: int) -> None:
        self.model, self.hooks = model, hooks
        self.generator = torch.Generator().manual_seed(data_seed)
        self.log = TrainLog()
        self.layers = prunable_layers(model)
        self.running = 0.0
        self.active = True
        self.row = torch.empty(0, dtype=torch.long)
        """The minibatch (indices into the training set) of the current step."""

    def start(self, budget: Budget, n_train: int) -> None:
        self.optimizer = make_optimizer(self.model.parameters(), budget)
        self.hooks.bind_optimizer(self.optimizer)
        self.index_stream = batches(n_train, min(budget.batch_size, n_train), self.generator)
        self.model.train()


class SeedStack:
    """The parameters of several models of one architecture as stacked leaves [S, *shape].
    Each model's own parameters become views of its row, so whatever updates a model in place
    (its optimizer, a method re-applying masks) writes the stack, and after `backward` each
    model's `.grad` is a view of its row of the batched gradient."""

    def __init__(self, models: list[nn.Module]) -> None:
        template = models[0]
        self.names = [name for name, _ in template.named_parameters()]
        self.params = [dict(m.named_parameters()) for m in models]
        self.stacked = [torch.stack([p[n].detach() for p in self.params]) for n in self.names]
        for row, params in enumerate(self.params):
            for name, tensor in zip(self.names, self.stacked, strict=True):
                params[name].data = tensor[row]

        def forward(weights: list[torch.Tensor], x: torch.Tensor) -> torch.Tensor:
            return functional_call(template, dict(zip(self.names, weights, strict=True)), (x,))

        self.forward = vmap(forward)

    def backward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Every model's mean loss [S] on its own minibatch (x [S, B, ...], y [S, B]), with
        each model's gradient left in its parameters' `.grad`."""
        leaves = [t.detach().requires_grad_() for t in self.stacked]
        with torch.enable_grad():
            with WeightFirstLinear():
                logits = self.forward(leaves, x)
            losses = row_losses(logits, y)
            grads = torch.autograd.grad(losses.sum(), leaves)
        for row, params in enumerate(self.params):
            for name, grad in zip(self.names, grads, strict=True):
                params[name].grad = grad[row]
        return losses.detach()


def _losses(lanes: list[Lane], stack: SeedStack | None, data: Dataset) -> list[float]:
    """Each lane's loss on its minibatch (`lane.row`), its gradient left in its parameters.
    Batched, every lane of the stack runs (a stopped lane on its last minibatch, its result
    unused); alone, a loss that is not finite gets no backward pass."""
    if stack is not None:
        idx = torch.stack([lane.row for lane in lanes])
        return stack.backward(data.x_train[idx], data.y_train[idx]).tolist()
    lane = lanes[0]
    loss = F.cross_entropy(lane.model(data.x_train[lane.row]), data.y_train[lane.row])
    if math.isfinite(loss.item()):
        lane.optimizer.zero_grad(set_to_none=True)
        loss.backward()
    return [loss.item()]


def _train_lanes(
    lanes: list[Lane],
    stack: SeedStack | None,
    data: Dataset,
    budget: Budget,
    steps: int | None,
    desc: str,
    checkpoint: Path | None,
    lr_factor: Callable[[int, int], float] | None,
    run: str,
) -> None:
    """The loop of `train` and `train_seeds`: `stack` batches the lanes' forward and backward
    (None: one lane, plain autograd); checkpoints only for one lane."""
    steps = budget.steps if steps is None else steps
    lr_at = budget.lr_at if lr_factor is None else lambda s, n: budget.lr * lr_factor(s, n)
    for lane in lanes:
        lane.start(budget, len(data.y_train))
    profile = flop_profile(lanes[0].model, data.x_train)
    every = budget.checkpoint_every if checkpoint is not None else 0
    first = 1
    if every:
        first = _resume(lanes[0], checkpoint, steps, run) + 1
    progress = tqdm(range(first, steps + 1), desc=desc, mininterval=2.0, leave=False)
    for step in progress:
        active = [lane for lane in lanes if lane.active]
        for lane in active:
            lane.row = next(lane.index_stream)
        densities = [live_density(lane.layers) for lane in active]
        losses = _losses(lanes, stack, data)
        for lane, density in zip(active, densities, strict=True):
            loss = losses[lanes.index(lane)]
            if not math.isfinite(loss):
                lane.log.diverged, lane.active = True, False
                continue
            _step(lane, step, budget, lr_at(step, steps), loss, profile, density)
            if step % budget.eval_every == 0 or step == steps:
                acc = _evaluate(lane, step, data)
                progress.set_postfix(acc=f"{acc:.3f}")
        if not any(lane.active for lane in lanes):
            break
        if every and step % every == 0 and step < steps:
            _save(lanes[0], checkpoint, step, steps, run)
    progress.close()
    if every:
        checkpoints.remove(checkpoint)


def _step(
    lane: Lane,
    step: int,
    budget: Budget,
    lr: float,
    loss: float,
    profile: FlopProfile,
    density: dict[str, float],
) -> None:
    """One lane's update after its backward pass: hooks, clipping, the optimizer, FLOPs."""
    hooks, optimizer = lane.hooks, lane.optimizer
    hooks.after_backward(step)
    if budget.grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(lane.model.parameters(), budget.grad_clip)
    for group in optimizer.param_groups:
        group["lr"] = lr
    if not hooks.skips_optimizer_step(step):
        optimizer.step()
    charged = profile.train(density, hooks.dense_weight_grad(step))
    lane.log.train_flops += len(lane.row) * charged
    hooks.after_step(step)
    lane.running += loss
    lane.log.steps_done = step


def _evaluate(lane: Lane, step: int, data: Dataset) -> float:
    """Evaluate the lane on the test set and append a point to its curves; its accuracy."""
    evaluation = evaluate(lane.model, data.x_test, data.y_test)
    curves = lane.log.curves
    window = step - (curves["step"][-1] if curves["step"] else 0)
    curves["step"].append(step)
    curves["train_loss"].append(lane.running / window)
    curves["test_loss"].append(evaluation["loss"])
    curves["test_acc"].append(evaluation["acc"])
    lane.running = 0.0
    return evaluation["acc"]


def _resume(lane: Lane, checkpoint: Path, steps: int, run: str) -> int:
    """Put back a valid checkpoint of this run, if one is there; the steps it had done."""
    resumed = checkpoints.load_training(checkpoint, steps, run)
    if resumed is None:
        return 0
    checkpoints.restore_training(resumed, lane.model, lane.optimizer, lane.hooks, lane.log.curves)
    for _ in range(resumed["step"]):
        next(lane.index_stream)
    checkpoints.check_data_order(resumed, lane.generator)
    lane.running, lane.log.steps_done = resumed["running"], resumed["step"]
    lane.log.train_flops = resumed["train_flops"]
    return resumed["step"]


def _save(lane: Lane, checkpoint: Path, step: int, steps: int, run: str) -> None:
    state = checkpoints.training_state(
        run=run,
        step=step,
        total_steps=steps,
        running=lane.running,
        train_flops=lane.log.train_flops,
        model=lane.model,
        optimizer=lane.optimizer,
        hooks=lane.hooks,
        data_generator=lane.generator,
        curves=lane.log.curves,
    )
    checkpoints.save(state, checkpoint)
