"""What an engine receives: the built parts of one run, and the cost helpers they all share."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn as nn

from sparsebench.data.base import Dataset
from sparsebench.metrics import flop_costs
from sparsebench.seeds import derive
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
    hardware: dict[str, Any] = field(default_factory=dict)


def slowdowns(ctx: RunContext, participants: int) -> torch.Tensor:
    """Each worker's or client's compute slowdown on the profile's devices: exp(spread * z),
    z ~ N(0, 1) per participant from the run's seed (lognormal with median 1, the usual model
    of a device fleet's spread); all ones when the profile sets no `compute_spread`."""
    spread = float(ctx.hardware.get("compute_spread", 0.0))
    if spread == 0.0:
        return torch.ones(participants, dtype=torch.float64)
    g = torch.Generator().manual_seed(derive(ctx.seeds["root"], "compute-spread"))
    return torch.exp(spread * torch.randn(participants, generator=g, dtype=torch.float64))


def parallel_compute(measured_s: list[float], slowdown: list[float]) -> float:
    """Seconds of a step or round whose participants compute in parallel: the slowest one's
    measured time scaled by its device's slowdown."""
    return max(s * f for s, f in zip(measured_s, slowdown, strict=True))


def model_costs(
    ctx: RunContext, train_samples: int, train_executed: float | None = None
) -> dict[str, Any]:
    """Measured density (global, per layer) of the model as it ends, its inference FLOPs, and
    the training FLOPs: `train_dense` the dense-equivalent of all `train_samples`,
    `train_sparse` what the steps executed (`train_executed`, counted step by step by the
    trainer); engines whose model is dense throughout (compression, federated) leave it None."""
    density, per_layer = measured_density(ctx.model)
    return {
        "density": density,
        "density_per_layer": per_layer,
        "flops": flop_costs(ctx.model, ctx.data.x_train, per_layer, train_samples, train_executed),
        "bytes": {"up": 0, "down": 0},
    }
