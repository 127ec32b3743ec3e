"""Train clients one after another on the run's own model.

The model is reused for every client, so its buffers (BatchNorm statistics) carry from one client
to the next, as a real device's would not but a one-model simulator's always has. Set up once
per run: the parameters become views of one flat vector (loading a client's start and reading
its result are one copy each), one optimizer is kept and its state cleared per client (which is
exactly a fresh one), and plain SGD skips the optimizer altogether with torch's own in-place
update. Gradients come from `torch.autograd.grad`, so no `.grad` is zeroed or kept between steps.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from sparsebench.engines.trainer import make_optimizer
from sparsebench.methods.federated.base import StepCorrection
from sparsebench.spec import Budget


def flatten_parameters(model: nn.Module) -> torch.Tensor | None:
    """Make the model's parameters views of one new flat vector (in `parameters()` order, the
    layout of every client vector) and return it; None, leaving the model as it is, when they
    do not share one dtype and device."""
    params = list(model.parameters())
    if not params or len({(p.dtype, p.device) for p in params}) != 1:
        return None
    flat = torch.cat([p.detach().reshape(-1) for p in params])
    offset = 0
    for p in params:
        p.data = flat[offset : offset + p.numel()].view_as(p)
        offset += p.numel()
    return flat


class SequentialTrainer:
    """Local steps of one client at a time on `model`, from a start vector, through `strategy`'s
    gradient correction and SAM radius."""

    def __init__(self, model: nn.Module, budget: Budget, sam_rho: float, flat: bool) -> None:
        self.model, self.budget, self.sam_rho = model, budget, sam_rho
        self.flat = flatten_parameters(model) if flat else None
        self.params = list(model.parameters())
        # The same storage without autograd: updated in place with no no_grad context.
        self.weights = [p.detach() for p in self.params]
        plain = budget.optimizer == "sgd" and not budget.momentum
        self.optimizer = None if plain else make_optimizer(self.params, budget)

    def vector(self) -> torch.Tensor:
        """The model's current parameters as a flat vector (a view where they are flat)."""
        if self.flat is not None:
            return self.flat
        return torch.cat([p.detach().reshape(-1) for p in self.params])

    def load(self, vec: torch.Tensor) -> None:
        if self.flat is not None:
            self.flat.copy_(vec)
            return
        offset = 0
        for w in self.weights:
            w.copy_(vec[offset : offset + w.numel()].view_as(w))
            offset += w.numel()

    def client(
        self,
        start: torch.Tensor,
        x: torch.Tensor,
        y: torch.Tensor,
        plan: torch.Tensor,
        correction: StepCorrection | None,
    ) -> float:
        """Train from `start` on minibatches `plan` [steps, B] (rows of x, y); leave the model
        at the result and return the mean loss, NaN (at once) if one stopped being finite.
        `correction(w [1, d])` is added to every step's gradient. The model must be in train
        mode (set once per round by the caller)."""
        self.load(start)
        if self.optimizer is not None:
            self.optimizer.state.clear()
        total = 0.0
        for idx in plan:
            xb, yb = x.index_select(0, idx), y.index_select(0, idx)
            loss = F.cross_entropy(self.model(xb), yb)
            value = loss.item()
            if not math.isfinite(value):
                return math.nan
            grads = list(torch.autograd.grad(loss, self.params))
            if self.sam_rho > 0:
                grads = self._sam_gradient(grads, xb, yb)
            extra = correction(self.vector()[None]) if correction is not None else None
            if extra is not None:
                grads = self._add(grads, extra[0])
            self._step(grads)
            total += value
        return total / max(len(plan), 1)

    @torch.no_grad()
    def _sam_gradient(self, grads: list[torch.Tensor], xb, yb) -> list[torch.Tensor]:
        """The gradient at w + rho g / ||g|| (sharpness-aware minimisation, Foret et al. 2021),
        the weights left at w."""
        g = torch.cat([t.flatten() for t in grads])
        scale = self.sam_rho / (g.norm() + 1e-12)
        shifts = [scale * t for t in grads]
        for p, e in zip(self.params, shifts, strict=True):
            p.add_(e)
        with torch.enable_grad():
            loss = F.cross_entropy(self.model(xb), yb)
            shifted = list(torch.autograd.grad(loss, self.params))
        for p, e in zip(self.params, shifts, strict=True):
            p.sub_(e)
        return shifted

    def _add(self, grads: list[torch.Tensor], vec: torch.Tensor) -> list[torch.Tensor]:
        out, offset = [], 0
        for g in grads:
            out.append(g + vec[offset : offset + g.numel()].view_as(g))
            offset += g.numel()
        return out

    def _step(self, grads: list[torch.Tensor]) -> None:
        """torch.optim's update: SGD's single-tensor formula in place, else the kept optimizer."""
        if self.optimizer is None:
            decay = self.budget.weight_decay
            if decay:
                grads = [g.add(w, alpha=decay) for g, w in zip(grads, self.weights, strict=True)]
            torch._foreach_add_(self.weights, grads, alpha=-self.budget.lr)
            return
        for p, g in zip(self.params, grads, strict=True):
            p.grad = g
        self.optimizer.step()
