"""A plain ReLU MLP: the MNIST-1D paper's fully connected baseline shape (hidden 256)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn

from sparsebench.registry import register


@dataclass(frozen=True)
class MlpParams:
    hidden: int = 256
    depth: int = 2

    def __post_init__(self) -> None:
        if self.hidden < 1 or self.depth < 1:
            raise ValueError("hidden and depth must be >= 1")


class MLP(nn.Module):
    def __init__(self, in_features: int, hidden: int, depth: int, num_classes: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = in_features
        for _ in range(depth):
            layers += [nn.Linear(width, hidden), nn.ReLU()]
            width = hidden
        layers.append(nn.Linear(width, num_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.flatten(1))


@register("model", "mlp", params=MlpParams, accepts=("features", "signal", "image"))
def build(params: MlpParams, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """Flatten, `depth` hidden ReLU layers of width `hidden`, linear classifier."""
    return MLP(math.prod(input_shape), params.hidden, params.depth, num_classes)
