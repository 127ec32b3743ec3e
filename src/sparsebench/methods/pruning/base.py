"""The contract of a pruning method: given a trained model (and data), return masks.

Also the code its methods share: the rounds of iterative magnitude pruning (IMP, SMS) and the
post-training pruner that runs a per-layer rule through the calibration loop (ptq-magnitude,
Wanda, SparseGPT, DSnoT).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn

from sparsebench import checkpoint
from sparsebench.checks import check_density, check_range
from sparsebench.data.base import Dataset
from sparsebench.hooks import TrainHooks
from sparsebench.sparsity.calibration import (
    InputStats,
    LayerResult,
    prune_layerwise,
    split_calibration,
)
from sparsebench.sparsity.masked import prunable_weights
from sparsebench.sparsity.masks import NM, keep_count, parse_nm, topk_mask
from sparsebench.sparsity.saliency import global_masks


@dataclass(frozen=True)
class PruningParams:
    """Shared by pruning methods: when to prune and how long to fine-tune after."""

    density: float = 0.1
    finetune_fraction: float = 0.3

    def __post_init__(self) -> None:
        check_density(self.density)
        check_range("finetune_fraction", self.finetune_fraction, 0.0, 1.0, high_open=True)


Retrain = Callable[..., object]
"""The engine's retrainer: `retrain(model, masks, steps, seed_offset=0, weight_decay=None,
lr_factor=None, data=None, schedule_from=0)`; `lr_factor(step, steps)` scales budget.lr in place
of the budget's schedule, `schedule_from` resumes the budget's schedule at that step, `data`
replaces the run's training samples (its test set is still the run's)."""


class PruningMethod:
    """One-shot by default (`prune`, then the engine fine-tunes with the masks fixed); a method
    that sets `iterative` drives its own prune/retrain rounds in `prune_iteratively`.
    `report` lands in the run's costs, except its `metrics` entry, which joins the metrics."""

    iterative = False

    seed_batchable = True
    """Whether several seeds can run as one batched computation (`engines.pruning.run_seeds`:
    the dense and fine-tuning phases batched, each seed pruned on its own)."""

    def __init__(self, params: PruningParams, seed: int) -> None:
        self.params = params
        self.seed = seed
        self.report: dict[str, Any] = {}

    def dense_hooks(self, model: nn.Module) -> TrainHooks:
        """Hooks for the dense phase (for example to keep an early iterate for rewinding)."""
        return TrainHooks()

    def prune(self, model: nn.Module, data: Dataset) -> dict[str, torch.Tensor]:
        """Masks (True = keep) for the model's prunable weights."""
        raise NotImplementedError

    def prune_iteratively(
        self, model: nn.Module, data: Dataset, retrain: Retrain, steps: int
    ) -> dict[str, torch.Tensor]:
        """An iterative method's masks, after its own rounds of pruning and `retrain` calls
        that together take `steps` retraining steps."""
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        """What the method keeps between phases (IMP's rewind iterate, its report), walked
        from its attributes by `checkpoint.capture`; override only for state the walker
        refuses. Its pruning decisions are recomputed from the weights on resume."""
        return checkpoint.capture(self)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore `state_dict()` in place, after `dense_hooks` (which the engine always calls)."""
        checkpoint.restore(self, state)


def round_densities(density: float, rounds: int) -> list[float]:
    """Density after each of `rounds` rounds that remove the same share p of the remaining
    weights: (1 - p)^t = density^(t / rounds)."""
    return [density ** (t / rounds) for t in range(1, rounds + 1)]


def split_steps(total: int, parts: int) -> list[int]:
    """`total` steps in `parts` near-equal shares (the first ones get the remainder)."""
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def dense_masks(model: nn.Module) -> dict[str, torch.Tensor]:
    """All-True masks for the prunable weights: where iterative pruning starts."""
    return {n: torch.ones_like(w, dtype=torch.bool) for n, w in prunable_weights(model).items()}


@torch.no_grad()
def prune_survivors(
    model: nn.Module, masks: dict[str, torch.Tensor], density: float, scope: str
) -> dict[str, torch.Tensor]:
    """Keep the largest |w| among current survivors, down to `density` of each layer (or all)."""
    scores = {n: w.detach().abs() * masks[n] for n, w in prunable_weights(model).items()}
    if scope == "layer":
        return {n: topk_mask(s, keep_count(s.numel(), density)) for n, s in scores.items()}
    return global_masks(scores, density)


@dataclass(frozen=True)
class PostTrainingParams(PruningParams):
    """Shared by post-training methods: target sparsity and the calibration sample."""

    density: float = 0.5
    finetune_fraction: float = 0.0
    nm: str | None = None
    calibration: int = 128
    heldout: int = 32
    batch: int = 64

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.nm is not None:
            parse_nm(self.nm)
        check_range("calibration", self.calibration, 1)
        check_range("heldout", self.heldout, 0)
        check_range("batch", self.batch, 1)

    @property
    def pattern(self) -> NM | None:
        return parse_nm(self.nm) if self.nm is not None else None


class PostTrainingPruner(PruningMethod):
    """Runs the calibration loop with `layer_rule`; keeps its report for the engine."""

    params: PostTrainingParams

    def prune(self, model: nn.Module, data: Dataset) -> dict[str, torch.Tensor]:
        p = self.params
        calib, held = split_calibration(data.x_train, p.calibration, p.heldout, self.seed)
        masks, report = prune_layerwise(model, calib, held, self.layer_rule, p.batch)
        self.report = report.as_report()
        return masks

    def layer_rule(self, name: str, weight: torch.Tensor, stats: InputStats) -> LayerResult:
        raise NotImplementedError
