"""Train many clients of a round at once: vmap over stacked client parameter vectors.

pfl-research's lesson is to avoid one process per client; here one process goes further and
trains all sampled clients as one batched computation. Every client runs the same number of
local steps on its own minibatches (drawn from the same per-client generators as the sequential
path), the model is called through `torch.func.functional_call` on a flat parameter vector, and
SGD (momentum, weight decay) or Adam is applied with torch's own formulas, so the result matches
the sequential path to float rounding. Models with buffers or dropout, and rounds whose clients
would use different batch sizes, fall back to the sequential path.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.func import functional_call, grad_and_value, vmap

from sparsebench.engines.trainer import batches
from sparsebench.spec import Budget

Correction = Callable[[torch.Tensor], torch.Tensor | None]


def batchable(model: nn.Module, shard_sizes: list[int], budget: Budget) -> bool:
    """Whether the vmap path applies: no buffers, no dropout, one common batch size."""
    if any(True for _ in model.buffers()):
        return False
    if any(isinstance(m, nn.modules.dropout._DropoutNd) for m in model.modules()):
        return False
    return len({min(budget.batch_size, n) for n in shard_sizes}) == 1


def _loss_fn(model: nn.Module) -> Callable:
    names = [name for name, _ in model.named_parameters()]

    def loss(params: list[torch.Tensor], x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        named = dict(zip(names, params, strict=True))
        return F.cross_entropy(functional_call(model, named, (x,)), y)

    return loss


def _views(flat: torch.Tensor, model: nn.Module) -> list[torch.Tensor]:
    """Per-parameter views [C, *shape] into stacked flat vectors [C, d] (no copy): vmap takes
    and returns gradients per parameter, so nothing is concatenated per step."""
    shapes = [p.shape for p in model.parameters()]
    pieces = torch.split(flat, [math.prod(s) for s in shapes], dim=1)
    return [piece.view(flat.shape[0], *shape) for piece, shape in zip(pieces, shapes, strict=True)]


class _BatchedOptimizer:
    """torch.optim.SGD / Adam (default betas and eps) applied in place to every client's
    parameters at once, with torch's single-tensor formulas (so results match them exactly)."""

    def __init__(self, budget: Budget, w: torch.Tensor, model: nn.Module) -> None:
        self.budget = budget
        self.t = 0
        self.m = _views(torch.zeros_like(w), model)
        self.v = _views(torch.zeros_like(w), model)

    def step(self, ws: list[torch.Tensor], gs: list[torch.Tensor]) -> None:
        self.t += 1
        for w, g, m, v in zip(ws, gs, self.m, self.v, strict=True):
            self._update(w, g, m, v)

    def _update(self, w: torch.Tensor, g: torch.Tensor, m: torch.Tensor, v: torch.Tensor) -> None:
        b = self.budget
        if b.weight_decay:
            g = g.add(w, alpha=b.weight_decay)
        if b.optimizer == "sgd":
            if not b.momentum:
                w.add_(g, alpha=-b.lr)
                return
            if self.t == 1:
                m.copy_(g)
            else:
                m.mul_(b.momentum).add_(g)
            w.add_(m, alpha=-b.lr)
            return
        beta1, beta2, eps = 0.9, 0.999, 1e-8
        m.lerp_(g, 1 - beta1)
        v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
        step_size = b.lr / (1 - beta1**self.t)
        denom = (v.sqrt() / math.sqrt(1 - beta2**self.t)).add_(eps)
        w.addcdiv_(m, denom, value=-step_size)


def _minibatch_plan(
    shards: list[tuple[torch.Tensor, torch.Tensor]],
    budget: Budget,
    generators: list[torch.Generator],
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """All clients' data concatenated, and every step's minibatch as indices into it
    [steps, C, B], drawn exactly as the sequential path draws them."""
    batch_size = min(budget.batch_size, len(shards[0][1]))
    plan, start = [], 0
    for (_, y), gen in zip(shards, generators, strict=True):
        stream = batches(len(y), batch_size, gen)
        plan.append(torch.stack([next(stream) for _ in range(budget.local_steps)]) + start)
        start += len(y)
    x_all = torch.cat([x for x, _ in shards])
    y_all = torch.cat([y for _, y in shards])
    return x_all, y_all, torch.stack(plan, dim=1)


def train_clients(
    model: nn.Module,
    start: torch.Tensor,
    shards: list[tuple[torch.Tensor, torch.Tensor]],
    budget: Budget,
    generators: list[torch.Generator],
    correction: Correction,
    sam_rho: float = 0.0,
) -> tuple[torch.Tensor, list[float]]:
    """Run `budget.local_steps` steps on every client from `start` ([d], or [C, d]); return the
    trained vectors [C, d] and each client's mean loss (NaN where it stopped being finite).
    With `sam_rho` > 0 each client's gradient is taken at w + sam_rho g / ||g|| (SAM)."""
    clients = len(shards)
    w = start.detach().expand(clients, -1).clone()
    ws = _views(w, model)
    x_all, y_all, index = _minibatch_plan(shards, budget, generators)
    step_fn = vmap(grad_and_value(_loss_fn(model)))
    optimizer = _BatchedOptimizer(budget, w, model)
    totals = torch.zeros(clients, dtype=torch.float64)
    model.train()
    for step in range(budget.local_steps):
        xb, yb = x_all[index[step]], y_all[index[step]]
        grads, losses = step_fn(ws, xb, yb)
        if sam_rho > 0:
            norm = torch.stack([g.flatten(1).pow(2).sum(1) for g in grads]).sum(0).sqrt()
            scale = sam_rho / (norm + 1e-12)
            shifted = [
                p + g * scale.view(-1, *[1] * (g.dim() - 1)) for p, g in zip(ws, grads, strict=True)
            ]
            grads, _ = step_fn(shifted, xb, yb)
        extra = correction(w)
        if extra is not None:
            grads = [g + e for g, e in zip(grads, _views(extra, model), strict=True)]
        optimizer.step(ws, grads)
        totals += losses.detach().double()
    means = (totals / max(budget.local_steps, 1)).tolist()
    return w.detach(), [v if math.isfinite(v) else math.nan for v in means]
