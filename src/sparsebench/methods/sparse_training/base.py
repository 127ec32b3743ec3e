"""The contract of a sparse-training method: choose masks in `setup`, then act through hooks."""

from __future__ import annotations

from typing import Any

import torch.nn as nn

from sparsebench.checkpoint import from_state, to_state
from sparsebench.data.base import Dataset
from sparsebench.hooks import TrainHooks
from sparsebench.sparsity.masked import MaskedWeights


class SparseTrainingMethod(TrainHooks):
    """Holds the masks; by default keeps pruned weights (and their gradients) at zero."""

    total_steps: int | None = None
    """The run's step budget, known from `prepare` on (schedules need the horizon)."""

    checkpoint_attrs: tuple[str, ...] = ()
    """Attributes besides the masks that change during training (a generator, an update count)
    and so must be checkpointed for a resumed run to match an uninterrupted one."""

    def __init__(self, params, seed: int) -> None:
        self.params = params
        self.seed = seed
        self.masked: MaskedWeights | None = None

    def prepare(self, model: nn.Module, data: Dataset, total_steps: int) -> None:
        """What the engine calls before training: record the horizon, then `setup`."""
        self.total_steps = total_steps
        self.setup(model, data)

    def setup(self, model: nn.Module, data: Dataset) -> None:
        """Choose the initial masks for `model` (called once, before training)."""

    def after_backward(self, step: int) -> None:
        if self.masked is not None:
            self.masked.mask_grads()

    def after_step(self, step: int) -> None:
        if self.masked is not None:
            self.masked.apply()

    def extra_metrics(self) -> dict[str, float]:
        return {}

    def state_dict(self) -> dict[str, Any]:
        """The training-time state, as tensors and plain values (see sparsebench.checkpoint)."""
        state = {name: to_state(getattr(self, name)) for name in self.checkpoint_attrs}
        if self.masked is not None:
            state["masks"] = to_state(self.masked.masks)
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore `state_dict()` after `setup` (which rebuilt the masks) and re-apply masks."""
        for name in self.checkpoint_attrs:
            setattr(self, name, from_state(getattr(self, name), state[name]))
        if self.masked is not None:
            for name, mask in state["masks"].items():
                self.masked.replace(name, mask)
            self.masked.apply()
