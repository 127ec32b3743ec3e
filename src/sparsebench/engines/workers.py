"""Simulated data-parallel workers for the compression family.

W workers share one model replica (they are synchronous, so their parameters are identical);
each step every worker computes a gradient on a minibatch of its own IID shard, the method turns
the W gradients into one update (counting the bytes each payload really takes), and the shared
optimizer applies it. Compute time and encode/decode time are timed separately. The workers
compute in parallel, so a step's compute time is its slowest worker's measured time, scaled by
that worker's device slowdown when the hardware profile sets a `compute_spread` (the simulation
runs them one after another; `compute_serial_s` is the measured sum).

A method that sets `drives_step` runs each step itself through `step(pool, step)` (DiLoCo's
local steps, 1-bit Adam's own optimizer, zeroth-order updates without gradients): the engine
lends it a
`Pool` with per-worker batches, losses and gradients at any flat parameter vector, and the
model's parameters stay the global ones that are evaluated.

With a checkpoint path in the context and budget.checkpoint_every > 0, the whole state (shared
weights and optimizer, the method's `state_dict`, each worker's data stream, the global RNG,
and the tally of curves, bytes, traffic and seconds so far) is saved every that many steps; a
run killed in between resumes from it and ends with the same result as an uninterrupted one.
The checkpoint is removed when the run ends.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.func import functional_call
from tqdm import tqdm

from sparsebench import checkpoint as checkpoints
from sparsebench.data.partition import iid
from sparsebench.engines.context import RunContext, model_costs, parallel_compute, slowdowns
from sparsebench.engines.trainer import batches, make_optimizer
from sparsebench.methods.compression.base import StepOutcome
from sparsebench.metrics import evaluate, final_metrics
from sparsebench.seeds import derive
from sparsebench.spec import RunResult


class Pool:
    """The workers' data and the shared model, as a method that owns the step sees them."""

    def __init__(self, ctx: RunContext) -> None:
        data, budget = ctx.data, ctx.budget
        self.model, self.data, self.budget = ctx.model, data, budget
        self.workers = ctx.method.params.workers
        self.lr = budget.lr
        self.shards = iid(len(data.y_train), self.workers, ctx.seeds["partition"])
        self.generators = [
            torch.Generator().manual_seed(derive(ctx.seeds["root"], "data", w))
            for w in range(self.workers)
        ]
        self.streams = [
            batches(len(shard), min(budget.batch_size, len(shard)), generator)
            for shard, generator in zip(self.shards, self.generators, strict=True)
        ]
        self.drawn = [0] * self.workers
        named = [(n, p) for n, p in ctx.model.named_parameters() if p.requires_grad]
        self.names = [n for n, _ in named]
        self.params = [p for _, p in named]
        self.compute_s = 0.0
        """Simulated parallel compute so far: per step, the slowest worker's seconds."""
        self.serial_s = 0.0
        """Measured compute so far, the workers one after another."""
        self.step_s = [0.0] * self.workers
        self.slowdown = slowdowns(ctx, self.workers).tolist()

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
        self.drawn[worker] += 1
        return self.shards[worker][next(self.streams[worker])]

    def state_dict(self) -> dict[str, Any]:
        """How many batches each worker has drawn, where its generator stands, and the
        compute seconds so far."""
        return {
            "drawn": list(self.drawn),
            "generators": [g.get_state() for g in self.generators],
            "compute_s": self.compute_s,
            "serial_s": self.serial_s,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Re-draw each worker's batches up to where the checkpoint stood (a batch stream is
        restored by replaying it), which must land on the saved generator states."""
        for w, count in enumerate(state["drawn"]):
            for _ in range(count):
                next(self.streams[w])
            if not torch.equal(self.generators[w].get_state(), state["generators"][w]):
                raise checkpoints.CheckpointMismatch(
                    f"worker {w}'s data order differs from the checkpoint's "
                    "(dataset, batch size or data seed changed); delete it to restart"
                )
        self.drawn = list(state["drawn"])
        self.compute_s, self.serial_s = state["compute_s"], state["serial_s"]

    def end_step(self) -> None:
        """Close a step: its compute time is its slowest worker's on its own device (they run
        in parallel)."""
        self.compute_s += parallel_compute(self.step_s, self.slowdown)
        self.serial_s += sum(self.step_s)
        self.step_s = [0.0] * self.workers

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
        self.step_s[worker] += time.perf_counter() - started
        return flat, loss.item()

    @torch.no_grad()
    def loss(self, worker: int, batch: torch.Tensor, at: torch.Tensor) -> float:
        started = time.perf_counter()
        value = self._loss(batch, at).item()
        self.step_s[worker] += time.perf_counter() - started
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


CURVES = ("step", "train_loss", "test_loss", "test_acc", "bytes_total")


@dataclass
class Tally:
    """What the loop has accumulated so far: curves, bytes, traffic per step, seconds."""

    curves: dict[str, list] = field(default_factory=lambda: {key: [] for key in CURVES})
    compute_at_eval: list[float] = field(default_factory=list)
    up: int = 0
    down: int = 0
    traffic: list[tuple[int, int, int]] = field(default_factory=list)
    step_s: float = 0.0
    running: float = 0.0
    steps_done: int = 0

    def add(self, step: int, outcome: StepOutcome) -> None:
        self.up += sum(outcome.bytes_up)
        self.down += sum(outcome.bytes_down)
        self.traffic.append(_traffic(outcome))
        self.running += sum(outcome.losses) / len(outcome.losses)
        self.steps_done = step

    def evaluate(self, ctx: RunContext, pool: Pool, step: int) -> None:
        """Append the test quality, the mean train loss since the last point and the bytes."""
        ev = evaluate(ctx.model, ctx.data.x_test, ctx.data.y_test)
        window = step - (self.curves["step"][-1] if self.curves["step"] else 0)
        values = (step, self.running / window, ev["loss"], ev["acc"], self.up + self.down)
        for key, value in zip(CURVES, values, strict=True):
            self.curves[key].append(value)
        self.compute_at_eval.append(pool.compute_s)
        self.running = 0.0


def _identity(ctx: RunContext) -> dict[str, Any]:
    """What a checkpoint must have been written for: this run (its key leaves out
    bookkeeping such as checkpoint_every) and this step budget."""
    return {"run": ctx.spec.key(), "total_steps": ctx.budget.steps}


def _save(
    path: Path, ctx: RunContext, pool: Pool, optimizer: torch.optim.Optimizer, tally: Tally
) -> None:
    checkpoints.save(
        {
            **_identity(ctx),
            "model": ctx.model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "method": ctx.method.state_dict(),
            "pool": pool.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "tally": asdict(tally),
        },
        path,
    )


def _resume(
    path: Path | None, ctx: RunContext, pool: Pool, optimizer: torch.optim.Optimizer
) -> Tally:
    """The tally to continue from: the checkpoint's, with every other part of the state put
    back, or a fresh one when there is no valid checkpoint for this run."""
    state = checkpoints.load_matching(path, **_identity(ctx)) if path else None
    if state is None:
        return Tally()
    ctx.model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    ctx.method.load_state_dict(state["method"])
    pool.load_state_dict(state["pool"])
    torch.set_rng_state(state["torch_rng"])
    return Tally(**state["tally"])


def run(ctx: RunContext) -> RunResult:
    budget, method = ctx.budget, ctx.method
    pool = Pool(ctx)
    method.bind([p.shape for p in pool.params])
    optimizer = make_optimizer(pool.params, budget)
    every = budget.checkpoint_every
    path = ctx.extra.get("checkpoint") if every else None
    tally = _resume(path, ctx, pool, optimizer)
    diverged = False
    steps = range(tally.steps_done + 1, budget.steps + 1)
    for step in tqdm(steps, desc="workers", mininterval=2.0, leave=False):
        started = time.perf_counter()
        if method.drives_step:
            outcome = method.step(pool, step)
        else:
            outcome = _gradient_step(pool, method, optimizer)
        tally.step_s += time.perf_counter() - started
        pool.end_step()
        if not all(math.isfinite(v) for v in outcome.losses):
            diverged = True
            break
        tally.add(step, outcome)
        if step % budget.eval_every == 0 or step == budget.steps:
            tally.evaluate(ctx, pool, step)
        if path and step % every == 0 and step < budget.steps:
            _save(path, ctx, pool, optimizer, tally)
    if path:
        checkpoints.remove(path)
    return _result(ctx, pool, tally, diverged)


def _result(ctx: RunContext, pool: Pool, tally: Tally, diverged: bool) -> RunResult:
    budget, workers = ctx.budget, pool.workers
    numel = sum(p.numel() for p in pool.params)
    up, down = tally.up, tally.down
    costs = model_costs(ctx, tally.steps_done * budget.batch_size * workers)
    steps = max(tally.steps_done, 1)
    costs["bytes"] = {
        "up": up,
        "down": down,
        "up_per_worker_step": up / (workers * steps),
        "down_per_worker_step": down / (workers * steps),
    }
    costs["compute_s"] = pool.compute_s
    costs["compute_serial_s"] = pool.serial_s
    costs["compute_s_at_eval"] = tally.compute_at_eval
    # Everything in a step that is not a forward/backward: encode, decode, aggregate, update.
    costs["codec_s"] = tally.step_s - pool.serial_s
    metrics = final_metrics(tally.curves, ctx.data.language_model)
    metrics["compression_ratio"] = 4 * numel * workers * steps / up if up else float("nan")
    return RunResult(
        metrics=metrics,
        curves=tally.curves,
        costs=costs,
        status="diverged" if diverged else "ok",
        traffic=tally.traffic,
    )


def _traffic(outcome: StepOutcome) -> tuple[int, int, int]:
    """This step's `comm.links.Round`: the biggest worker's bytes sent plus received, the
    sequential exchanges (none if silent) and all workers' bytes through the server."""
    largest = max(outcome.bytes_up, default=0) + max(outcome.bytes_down, default=0)
    total = sum(outcome.bytes_up) + sum(outcome.bytes_down)
    return (largest, outcome.messages if largest else 0, total)
