"""What an engine receives: the built parts of one run, and the cost helpers they all share."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch.nn as nn

from sparsebench.data.base import Dataset
from sparsebench.metrics import flop_costs
from sparsebench.sparsity.masked import measured_density
from sparsebench.spec import Budget, RunSpec


@dataclass
class RunContext:
    spec: RunSpec
    data: Dataset
    model: nn.Module
    method: Any
    budget: Budget
    seeds: dict[str, int]
    extra: dict[str, Any] = field(default_factory=dict)


def model_costs(ctx: RunContext, train_samples: int) -> dict[str, Any]:
    """Measured density (global, per layer) and dense/sparse FLOPs of the model as it ends."""
    density, per_layer = measured_density(ctx.model)
    return {
        "density": density,
        "density_per_layer": per_layer,
        "flops": flop_costs(ctx.model, ctx.data.x_train, per_layer, train_samples),
        "bytes": {"up": 0, "down": 0},
    }
