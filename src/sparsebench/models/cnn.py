"""Small CNNs: the MNIST-1D paper's 3-layer Conv1d net for 1-D inputs, a 2-layer Conv2d net
for images (digits)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from sparsebench.registry import register


@dataclass(frozen=True)
class CnnParams:
    channels: int = 25


class Conv1dNet(nn.Module):
    """conv(5, stride 2) -> conv(3, stride 2) -> conv(3, stride 2) -> linear, ReLU between."""

    def __init__(self, length: int, channels: int, num_classes: int) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv1d(1, channels, 5, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv1d(channels, channels, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv1d(channels, channels, 3, stride=2, padding=1),
            nn.ReLU(),
        )
        with torch.no_grad():
            flat = self.features(torch.zeros(1, 1, length)).numel()
        self.classifier = nn.Linear(flat, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.features(x.reshape(x.shape[0], 1, -1))
        return self.classifier(h.flatten(1))


class Conv2dNet(nn.Module):
    """conv(3) -> conv(3, stride 2) -> linear, ReLU between; sized for 8x8 images."""

    def __init__(self, shape: tuple[int, int, int], channels: int, num_classes: int) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(shape[0], channels, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(channels, channels, 3, stride=2, padding=1),
            nn.ReLU(),
        )
        with torch.no_grad():
            flat = self.features(torch.zeros(1, *shape)).numel()
        self.classifier = nn.Linear(flat, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).flatten(1))


@register("model", "cnn", params=CnnParams, accepts=("signal", "image"))
def build(params: CnnParams, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """Conv1dNet for (length,) inputs, Conv2dNet for (channels, height, width) images."""
    if len(input_shape) == 1:
        return Conv1dNet(input_shape[0], params.channels, num_classes)
    if len(input_shape) == 3:
        return Conv2dNet(input_shape, params.channels, num_classes)
    raise ValueError(f"cnn expects inputs shaped (L,) or (C, H, W), got {input_shape}")
