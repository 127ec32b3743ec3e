"""The contract of a pruning method: given a trained model (and data), return masks."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn

from sparsebench.data.base import Dataset
from sparsebench.hooks import TrainHooks


@dataclass(frozen=True)
class PruningParams:
    """Shared by pruning methods: when to prune and how long to fine-tune after."""

    density: float = 0.1
    finetune_fraction: float = 0.3

    def __post_init__(self) -> None:
        if not 0.0 < self.density <= 1.0:
            raise ValueError(f"density must be in (0, 1], got {self.density}")
        if not 0.0 <= self.finetune_fraction < 1.0:
            raise ValueError(f"finetune_fraction must be in [0, 1), got {self.finetune_fraction}")


Retrain = Callable[..., object]
"""The engine's retrainer: `retrain(model, masks, steps, seed_offset=0, weight_decay=None)`."""


class PruningMethod:
    """One-shot by default (`prune`, then the engine fine-tunes with the masks fixed); a method
    that sets `iterative` drives its own prune/retrain rounds in `prune_iteratively`.
    `report` lands in the run's costs, except its `metrics` entry, which joins the metrics."""

    iterative = False

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
