"""Gradual magnitude pruning (Zhu & Gupta, "To prune, or not to prune: exploring the efficacy of
pruning for model compression", 2017, arXiv 1710.01878).

Update rule: train dense until t0 = `start_step`; then every dt = `interval` steps up to
t0 + n dt = `end_step`, set each layer's sparsity to s_t = s_f + (s_i - s_f)(1 - (t - t0)/(n dt))^3
by zeroing its smallest-magnitude surviving weights (pruned weights never come back), and keep
training with those masks. s_i = 1 - `initial_density`, s_f = 1 - the layer's final density
(`density` everywhere with the uniform allocation, as in the paper; ERK also offered). Pruning
happens right after the optimizer step of an update step.

`start_step`/`end_step` are absolute; when unset they are `start_fraction`/`end_fraction` of the
run's `total_steps` (given to `prepare`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from sparsebench.checks import check_density, check_range
from sparsebench.data.base import Dataset
from sparsebench.methods.sparse_training.base import SparseTrainingMethod
from sparsebench.registry import register
from sparsebench.sparsity.allocation import Allocation, allocate
from sparsebench.sparsity.masked import MaskedWeights, prunable_weights
from sparsebench.sparsity.masks import keep_count, topk_mask
from sparsebench.sparsity.schedules import cubic_density, is_update_step, resolve_step


@dataclass(frozen=True)
class GmpParams:
    density: float = 0.1
    allocation: Allocation = "uniform"
    initial_density: float = 1.0
    interval: int = 50
    start_step: int | None = None
    end_step: int | None = None
    start_fraction: float = 0.1
    end_fraction: float = 0.75

    def __post_init__(self) -> None:
        check_density(self.density)
        check_range("initial_density", self.initial_density, self.density, 1.0)
        check_range("interval", self.interval, 1)
        check_range("start_fraction", self.start_fraction, 0.0, 1.0, high_open=True)
        check_range("end_fraction", self.end_fraction, self.start_fraction, 1.0, low_open=True)


@register("sparse_training", "gmp", params=GmpParams)
class Gmp(SparseTrainingMethod):
    """Dense to sparse: cubic schedule of layer-wise magnitude pruning."""

    checkpoint_attrs = ("prune_steps",)

    total_steps: int | None = None

    def setup(self, model: nn.Module, data: Dataset) -> None:
        weights = prunable_weights(model)
        self.final = allocate(
            {n: w.shape for n, w in weights.items()}, self.params.density, self.params.allocation
        )
        self.masked = MaskedWeights(
            model, {n: torch.ones_like(w, dtype=torch.bool) for n, w in weights.items()}
        )
        p = self.params
        self.start = resolve_step(p.start_step, p.start_fraction, self.total_steps, "start_step")
        self.end = resolve_step(p.end_step, p.end_fraction, self.total_steps, "end_step")
        if self.end <= self.start:
            raise ValueError(f"end_step ({self.end}) must be after start_step ({self.start})")
        self.prune_steps = 0

    def density_at(self, name: str, step: int) -> float:
        return cubic_density(
            step, self.final[name], self.start, self.end, self.params.initial_density
        )

    def after_step(self, step: int) -> None:
        if is_update_step(step, self.start, self.end, self.params.interval):
            self.prune(step)
        super().after_step(step)

    @torch.no_grad()
    def prune(self, step: int) -> None:
        """Keep the largest-|w| surviving weights of each layer at the schedule's density."""
        for name, weight in self.masked.params.items():
            mask = self.masked.masks[name]
            scores = weight.abs().masked_fill(~mask, -1.0)
            keep = keep_count(weight.numel(), self.density_at(name, step))
            self.masked.replace(name, topk_mask(scores, min(keep, int(mask.sum()))))
        self.prune_steps += 1

    def extra_metrics(self) -> dict[str, float]:
        return {"prune_steps": self.prune_steps}
