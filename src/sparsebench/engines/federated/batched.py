"""Train many clients of a round at once: every client's parameters are one row of a [C, d]
tensor, and the model runs on all rows together.

pfl-research's lesson is to avoid one process per client; here one process goes further and
trains all sampled clients as one batched computation. Every client runs the same number of
local steps on its own minibatches (the same per-client streams as the sequential path). The
forward pass is `torch.func.vmap` over `functional_call` with the clients' parameters; the
backward pass is plain autograd on the sum of the clients' mean losses, whose gradient with
respect to client c's parameters is exactly client c's own gradient (the clients share nothing),
and which runs far fewer operations than vmapping a per-client `grad`. Under that forward a
linear layer runs as (W x^T)^T (`WeightFirstLinear`), so autograd hands back every weight
gradient in the weights' own layout and the update is a contiguous add. SGD (momentum, weight
decay) or Adam is applied with torch's single-tensor formulas, so the result matches the
sequential path to float rounding. Models with buffers or drawing dropout, and rounds whose clients
would use different batch sizes, fall back to the sequential path.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
from torch.func import functional_call, vmap

from sparsebench.engines.federated.plans import draws
from sparsebench.engines.stacked import WeightFirstLinear, model_batchable, row_losses
from sparsebench.methods.federated.base import StepCorrection
from sparsebench.spec import Budget


def batchable(model: nn.Module, shard_sizes: list[int], budget: Budget) -> bool:
    """Whether the vmap path applies: a batchable model, one common batch size."""
    sizes = {min(budget.batch_size, n) for n in shard_sizes}
    return model_batchable(model) and len(sizes) == 1


def _views(flat: torch.Tensor, shapes: list[torch.Size]) -> list[torch.Tensor]:
    """Per-parameter views [C, *shape] into stacked flat vectors [C, d] (no copy): the forward
    takes and autograd returns tensors per parameter, so nothing is concatenated per step."""
    pieces = torch.split(flat, [math.prod(s) for s in shapes], dim=1)
    return [piece.view(flat.shape[0], *shape) for piece, shape in zip(pieces, shapes, strict=True)]


def _added(grads: list[torch.Tensor], extra: list[torch.Tensor]) -> list[torch.Tensor]:
    """grads + extra, in place where every gradient is a plain contiguous tensor of its own
    (autograd's fresh outputs; an expanded one would alias itself), else a new list."""
    if all(g.is_contiguous() for g in grads):
        torch._foreach_add_(grads, extra)
        return grads
    return torch._foreach_add(grads, extra)


class BatchedOptimizer:
    """torch.optim.SGD / Adam (default betas and eps) applied in place to every client's
    parameters at once, with torch's single-tensor formulas (so results match them exactly);
    state is allocated only where the update keeps some (not for plain SGD)."""

    def __init__(self, budget: Budget) -> None:
        self.budget = budget
        self.t = 0
        self.m: list[torch.Tensor] = []
        self.v: list[torch.Tensor] = []

    @torch.no_grad()
    def step(self, ws: list[torch.Tensor], gs: list[torch.Tensor]) -> None:
        b = self.budget
        self.t += 1
        if b.weight_decay:
            gs = torch._foreach_add(gs, ws, alpha=b.weight_decay)
        if b.optimizer == "sgd" and not b.momentum:
            torch._foreach_add_(ws, gs, alpha=-b.lr)
            return
        if b.optimizer == "sgd":
            if self.t == 1:
                self.m = [g.clone() for g in gs]
            else:
                torch._foreach_mul_(self.m, b.momentum)
                torch._foreach_add_(self.m, gs)
            torch._foreach_add_(ws, self.m, alpha=-b.lr)
            return
        if self.t == 1:
            self.m = [torch.zeros_like(w) for w in ws]
            self.v = [torch.zeros_like(w) for w in ws]
        beta1, beta2, eps = 0.9, 0.999, 1e-8
        step_size = b.lr / (1 - beta1**self.t)
        root = math.sqrt(1 - beta2**self.t)
        for w, g, m, v in zip(ws, gs, self.m, self.v, strict=True):
            m.lerp_(g, 1 - beta1)
            v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
            w.addcdiv_(m, (v.sqrt() / root).add_(eps), value=-step_size)


class BatchedTrainer:
    """Local steps of many clients at once on `model`'s architecture (its own parameters are
    not touched), set up once per run: the vmapped forward, the parameter layout."""

    def __init__(self, model: nn.Module, budget: Budget, sam_rho: float = 0.0) -> None:
        self.budget, self.sam_rho = budget, sam_rho
        names = [name for name, _ in model.named_parameters()]
        self.shapes = [p.shape for p in model.parameters()]
        self.model = model

        def forward(params: list[torch.Tensor], x: torch.Tensor) -> torch.Tensor:
            return functional_call(model, dict(zip(names, params, strict=True)), (x,))

        self.forward = vmap(forward)

    def _grads(
        self, ws: list[torch.Tensor], xb: torch.Tensor, yb: torch.Tensor
    ) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Every client's gradient (per parameter, [C, *shape]) and mean loss [C] at `ws`."""
        leaves = [w.detach().requires_grad_() for w in ws]
        with torch.enable_grad():
            with WeightFirstLinear():
                logits = self.forward(leaves, xb)
            losses = row_losses(logits, yb)
            grads = torch.autograd.grad(losses.sum(), leaves)
        return list(grads), losses.detach()

    def _sam_grads(self, ws, grads, xb, yb) -> list[torch.Tensor]:
        """Each client's gradient at w + rho g / ||g|| (SAM), from its gradient g at w."""
        norm = torch.stack([g.flatten(1).pow(2).sum(1) for g in grads]).sum(0).sqrt()
        scale = self.sam_rho / (norm + 1e-12)
        shifted = [
            p + g * scale.view(-1, *[1] * (g.dim() - 1)) for p, g in zip(ws, grads, strict=True)
        ]
        return self._grads(shifted, xb, yb)[0]

    def train(
        self,
        start: torch.Tensor,
        x: torch.Tensor,
        y: torch.Tensor,
        rows: torch.Tensor,
        correction: StepCorrection | None,
        out: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, list[float]]:
        """Run one step per column of `rows` [C, steps, B] (the clients' minibatches as rows of
        x, y) from `start` ([d], or [C, d]); return the trained vectors [C, d] (in `out` when
        given) and each client's mean loss (NaN where it stopped being finite).
        `correction(w)` [C, d] is added to every step's gradients."""
        clients, steps = rows.shape[0], rows.shape[1]
        starts = start.detach().expand(clients, -1)
        w = starts.clone() if out is None else out.copy_(starts)
        ws = _views(w, self.shapes)
        optimizer = BatchedOptimizer(self.budget)
        totals = torch.zeros(clients, dtype=torch.float64)
        self.model.train()
        for step in range(steps):
            idx = rows[:, step]
            xb, yb = x[idx], y[idx]
            grads, losses = self._grads(ws, xb, yb)
            if self.sam_rho > 0:
                grads = self._sam_grads(ws, grads, xb, yb)
            extra = correction(w) if correction is not None else None
            if extra is not None:
                grads = _added(grads, _views(extra, self.shapes))
            optimizer.step(ws, grads)
            totals += losses.double()
        means = (totals / max(steps, 1)).tolist()
        return w, [v if math.isfinite(v) else math.nan for v in means]


def train_clients(
    model: nn.Module,
    start: torch.Tensor,
    shards: list[tuple[torch.Tensor, torch.Tensor]],
    budget: Budget,
    generators: list[torch.Generator],
    correction: StepCorrection | None,
    sam_rho: float = 0.0,
) -> tuple[torch.Tensor, list[float]]:
    """`BatchedTrainer.train` for clients given as their own shards and minibatch generators
    (the sequential path's `batches` streams): trained vectors [C, d] and mean losses."""
    batch = min(budget.batch_size, len(shards[0][1]))
    offsets = torch.tensor([0, *[len(y) for _, y in shards[:-1]]]).cumsum(0).tolist()
    rows = torch.stack(
        [
            draws(len(y), batch, budget.local_steps, gen) + offset
            for (_, y), gen, offset in zip(shards, generators, offsets, strict=True)
        ]
    )
    x = torch.cat([x for x, _ in shards])
    y = torch.cat([y for _, y in shards])
    return BatchedTrainer(model, budget, sam_rho).train(start, x, y, rows, correction)
