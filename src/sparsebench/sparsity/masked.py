"""Masks held beside a model's weights, re-applied so pruned weights stay exactly zero.

The engine calls `mask_grads()` after backward and `apply()` after every optimizer step: the
first keeps momentum buffers from accumulating on pruned weights, the second undoes what weight
decay or momentum still moved. Density is always counted from the weights, never copied from
the request.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from sparsebench.hooks import TrainHooks

PRUNABLE = (nn.Linear, nn.Conv1d, nn.Conv2d)


def prunable_layers(model: nn.Module) -> dict[str, nn.Module]:
    """Every Linear and Conv layer, by the name of its weight."""
    return {
        f"{name}.weight" if name else "weight": module
        for name, module in model.named_modules()
        if isinstance(module, PRUNABLE)
    }


def prunable_weights(model: nn.Module) -> dict[str, nn.Parameter]:
    """Weights of every Linear and Conv layer, by parameter name (biases stay dense)."""
    return {name: module.weight for name, module in prunable_layers(model).items()}


class MaskedWeights(TrainHooks):
    """Boolean masks keyed by parameter name, bound to one model's parameters."""

    def __init__(self, model: nn.Module, masks: dict[str, torch.Tensor]) -> None:
        weights = prunable_weights(model)
        unknown = set(masks) - set(weights)
        if unknown:
            raise KeyError(f"masks for unknown weights: {sorted(unknown)}")
        self.params = {name: weights[name] for name in masks}
        self.masks = {name: m.to(torch.bool) for name, m in masks.items()}
        self.apply()

    @torch.no_grad()
    def apply(self) -> None:
        for name, param in self.params.items():
            param.mul_(self.masks[name])

    @torch.no_grad()
    def mask_grads(self) -> None:
        for name, param in self.params.items():
            if param.grad is not None:
                param.grad.mul_(self.masks[name])

    def after_backward(self, step: int) -> None:
        """Trainer hook: pruned weights get no gradient."""
        self.mask_grads()

    def after_step(self, step: int) -> None:
        """Trainer hook: undo whatever the optimizer moved on pruned weights."""
        self.apply()

    def replace(self, name: str, mask: torch.Tensor) -> None:
        self.masks[name] = mask.to(torch.bool)


def measured_density(model: nn.Module) -> tuple[float, dict[str, float]]:
    """Global and per-layer fraction of nonzero prunable weights, counted from the tensors."""
    per_layer: dict[str, float] = {}
    nonzero = total = 0
    for name, weight in prunable_weights(model).items():
        nz = int(torch.count_nonzero(weight.detach()))
        per_layer[name] = nz / weight.numel()
        nonzero += nz
        total += weight.numel()
    return nonzero / total, per_layer
