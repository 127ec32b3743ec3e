"""The training loop's hooks: the only way a method acts inside a training step.

Declared here, on the ground floor, with no-op defaults, so a method overrides what it needs and
an engine calls every hook unconditionally (no probing with `hasattr`). `state_dict` and
`load_state_dict` carry whatever the method changes during training into a checkpoint.
"""

from __future__ import annotations

from typing import Any

import torch


class TrainHooks:
    """No-op hooks; methods override what they need."""

    def bind_optimizer(self, optimizer: torch.optim.Optimizer) -> None:
        """Called once with the optimizer before the first step (e.g. to reset its state for
        weights a method regrows)."""

    def after_backward(self, step: int) -> None:
        """Called after loss.backward(), before the optimizer step."""

    def after_step(self, step: int) -> None:
        """Called after the optimizer step."""

    def skips_optimizer_step(self, step: int) -> bool:
        """Whether this step's optimizer update is left out (RigL's mask-update steps change the
        mask instead of the weights). The step still counts and is charged its FLOPs."""
        return False

    def dense_weight_grad(self, step: int) -> bool:
        """Whether this step needs the dense weight gradient (a straight-through estimator,
        or RigL's growth criterion at a mask update), so its FLOPs are charged dense."""
        return False

    def state_dict(self) -> dict[str, Any]:
        """The hooks' training-time state (tensors and plain values) for a checkpoint."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what `state_dict` returned."""
