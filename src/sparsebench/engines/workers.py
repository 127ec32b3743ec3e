"""Simulated data-parallel workers for the compression family.

W workers share one model replica (they are synchronous, so their parameters are identical);
each step every worker computes a gradient on a minibatch of its own IID shard, the method turns
the W gradients into one update (counting the bytes each payload really takes), and the shared
optimizer applies it. Compute time and encode/decode time are timed separately.

A method that sets `drives_step` runs each step itself through `step(pool, step)` (DiLoCo's
local steps, 1-bit Adam's own optimizer, zeroth-order updates without gradients): the engine
lends it a
`Pool` with per-worker batches, losses and gradients at any flat parameter vector, and the
model's parameters stay the global ones that are evaluated.
"""

from __future__ import annotations

import math
import time

import torch
import torch.nn.functional as F
from torch.func import functional_call
from tqdm import tqdm

from sparsebench.data.partition import iid
from sparsebench.engines.context import RunContext, model_costs
from sparsebench.engines.trainer import batches, make_optimizer
from sparsebench.methods.compression.base import StepOutcome
from sparsebench.metrics import evaluate, final_metrics
from sparsebench.spec import RunResult


class Pool:
    """The workers' data and the shared model, as a method that owns the step sees them."""

    def __init__(self, ctx: RunContext) -> None:
        data, budget = ctx.data, ctx.budget
        self.model, self.data, self.budget = ctx.model, data, budget
        self.workers = ctx.method.params.workers
        self.lr = budget.lr
        self.shards = iid(len(data.y_train), self.workers, ctx.seeds["partition"])
        self.streams = [
            batches(
                len(shard),
                min(budget.batch_size, len(shard)),
                torch.Generator().manual_seed(ctx.seeds["data"] + w),
            )
            for w, shard in enumerate(self.shards)
        ]
        named = [(n, p) for n, p in ctx.model.named_parameters() if p.requires_grad]
        self.names = [n for n, _ in named]
        self.params = [p for _, p in named]
        self.compute_s = 0.0

    def flat(self) -> torch.Tensor:
        return torch.cat([p.detach().flatten() for p in self.params])

    @torch.no_grad()
    def assign(self, flat: torch.Tensor) -> None:
        offset = 0
        for p in self.params:
            p.copy_(flat[offset : offset + p.numel()].view_as(p))
            offset += p.numel()

    def batch(self, worker: int) -> torch.Tensor:
        """The sample indices of worker `worker`'s next minibatch."""
        return self.shards[worker][next(self.streams[worker])]

    def _views(self, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        sizes = [p.numel() for p in self.params]
        parts = torch.split(flat, sizes)
        return {n: v.view_as(p) for n, v, p in zip(self.names, parts, self.params, strict=True)}

    def _loss(self, idx: torch.Tensor, at: torch.Tensor | None) -> torch.Tensor:
        x, y = self.data.x_train[idx], self.data.y_train[idx]
        logits = self.model(x) if at is None else functional_call(self.model, self._views(at), x)
        return F.cross_entropy(logits, y)

    def grad(
        self, worker: int, at: torch.Tensor | None = None, batch: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, float]:
        """Flat gradient and loss of worker `worker` on `batch` (default: its next one), at the
        flat parameters `at` (default: the shared model's)."""
        started = time.perf_counter()
        idx = self.batch(worker) if batch is None else batch
        if at is None:
            loss = self._loss(idx, None)
            grads = torch.autograd.grad(loss, self.params)
            flat = torch.cat([g.flatten() for g in grads])
        else:
            leaf = at.detach().requires_grad_(True)
            loss = self._loss(idx, leaf)
            flat = torch.autograd.grad(loss, leaf)[0]
        self.compute_s += time.perf_counter() - started
        return flat, loss.item()

    @torch.no_grad()
    def loss(self, worker: int, batch: torch.Tensor, at: torch.Tensor) -> float:
        started = time.perf_counter()
        value = self._loss(batch, at).item()
        self.compute_s += time.perf_counter() - started
        return value


def _gradient_step(pool: Pool, method, optimizer: torch.optim.Optimizer) -> StepOutcome:
    """The default step: W gradients, one exchange, the shared optimizer applies the update."""
    grads, losses = [], []
    for w in range(pool.workers):
        grad, loss = pool.grad(w)
        grads.append(grad)
        losses.append(loss)
    if not all(math.isfinite(v) for v in losses):
        return StepOutcome(losses, [], [])
    exchange = method.exchange(grads)
    offset = 0
    for p in pool.params:
        p.grad = exchange.update[offset : offset + p.numel()].view_as(p).clone()
        offset += p.numel()
    optimizer.step()
    return StepOutcome(losses, exchange.bytes_up, exchange.bytes_down, exchange.messages)


def run(ctx: RunContext) -> RunResult:
    budget, method = ctx.budget, ctx.method
    pool = Pool(ctx)
    workers = pool.workers
    numel = sum(p.numel() for p in pool.params)
    method.bind([p.shape for p in pool.params])
    optimizer = make_optimizer(pool.params, budget)
    curves = {"step": [], "train_loss": [], "test_loss": [], "test_acc": [], "bytes_total": []}
    compute_at_eval: list[float] = []
    up = down = 0
    traffic: list[tuple[int, int]] = []
    step_s = 0.0
    running, diverged, steps_done = 0.0, False, 0
    for step in tqdm(range(1, budget.steps + 1), desc="workers", mininterval=2.0, leave=False):
        started = time.perf_counter()
        if method.drives_step:
            outcome = method.step(pool, step)
        else:
            outcome = _gradient_step(pool, method, optimizer)
        step_s += time.perf_counter() - started
        if not all(math.isfinite(v) for v in outcome.losses):
            diverged = True
            break
        up += sum(outcome.bytes_up)
        down += sum(outcome.bytes_down)
        traffic.append(_critical_path(outcome))
        running += sum(outcome.losses) / len(outcome.losses)
        steps_done = step
        if step % budget.eval_every == 0 or step == budget.steps:
            ev = evaluate(ctx.model, ctx.data.x_test, ctx.data.y_test)
            window = step - (curves["step"][-1] if curves["step"] else 0)
            for key, value in (
                ("step", step),
                ("train_loss", running / window),
                ("test_loss", ev["loss"]),
                ("test_acc", ev["acc"]),
                ("bytes_total", up + down),
            ):
                curves[key].append(value)
            compute_at_eval.append(pool.compute_s)
            running = 0.0
    costs = model_costs(ctx, steps_done * budget.batch_size * workers)
    steps = max(steps_done, 1)
    costs["bytes"] = {
        "up": up,
        "down": down,
        "up_per_worker_step": up / (workers * steps),
        "down_per_worker_step": down / (workers * steps),
    }
    costs["compute_s"] = pool.compute_s
    costs["compute_s_at_eval"] = compute_at_eval
    # Everything in a step that is not a forward/backward: encode, decode, aggregate, update.
    costs["codec_s"] = step_s - pool.compute_s
    metrics = final_metrics(curves, ctx.data.language_model)
    metrics["compression_ratio"] = 4 * numel * workers * steps / up if up else float("nan")
    return RunResult(
        metrics=metrics,
        curves=curves,
        costs=costs,
        status="diverged" if diverged else "ok",
        traffic=traffic,
    )


def _critical_path(outcome: StepOutcome) -> tuple[int, int]:
    """(bytes, messages) of the slowest worker's send and receive this step; none if silent."""
    nbytes = max(outcome.bytes_up, default=0) + max(outcome.bytes_down, default=0)
    return (nbytes, outcome.messages if nbytes else 0)
