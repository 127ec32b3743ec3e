"""The contract of a sparse-training method: choose masks in `setup`, then act through hooks.

Also the dynamic sparse training that SET, RigL and Sparse-IFT share: `DynamicSparse` keeps each
layer's density constant while it drops and regrows weights; a method chooses the grow score.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn as nn

from sparsebench.checkpoint import from_state, to_state
from sparsebench.checks import check_density, check_range
from sparsebench.data.base import Dataset
from sparsebench.hooks import TrainHooks
from sparsebench.sparsity.allocation import Allocation, allocate
from sparsebench.sparsity.dst import (
    drop_and_grow,
    random_scores,
    sparse_architecture_divergence,
    zero_optimizer_state,
)
from sparsebench.sparsity.masked import MaskedWeights, prunable_weights
from sparsebench.sparsity.masks import random_mask
from sparsebench.sparsity.schedules import cosine_drop_fraction, resolve_step


class SparseTrainingMethod(TrainHooks):
    """Holds the masks; by default keeps pruned weights (and their gradients) at zero."""

    total_steps: int | None = None
    """The run's step budget, known from `prepare` on (schedules need the horizon)."""

    seed_batchable: bool = True
    """Whether several seeds can train as one batched computation (`engines.trainer.
    train_seeds`): true for every method that acts on the weights and gradients in place
    through its hooks (masks, per-seed top-k, mask updates); false for one that changes the
    forward pass itself (a parametrization)."""

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


@dataclass(frozen=True)
class DstParams:
    """Shared by dynamic sparse training methods: target density, its layer allocation, and
    when and how much to drop and regrow. Defaults are google-research/rigl's: one cosine
    drop-fraction flag for SET and RigL alike (`drop_fraction_anneal`), and the first layer
    kept dense (imagenet `first_layer_sparsity=0`, cifar `prune_first_layer=False`)."""

    density: float = 0.1
    allocation: Allocation = "erk"
    update_interval: int = 100
    drop_fraction: float = 0.3
    drop_schedule: Literal["constant", "cosine"] = "cosine"
    end_step: int | None = None
    end_fraction: float = 0.75
    dense_first_layer: bool = True

    def __post_init__(self) -> None:
        check_density(self.density)
        check_range("update_interval", self.update_interval, 1)
        check_range("drop_fraction", self.drop_fraction, 0.0, 1.0)
        if self.end_step is not None:
            check_range("end_step", self.end_step, 1)
        check_range("end_fraction", self.end_fraction, 0.0, 1.0, low_open=True)


class DynamicSparse(SparseTrainingMethod):
    """Constant-density drop/grow training from a random mask at the allocated densities.

    Every `update_interval` steps before T_end, each sparse layer drops its k = floor(f * active)
    smallest-|w| active weights and grows k positions of highest `grow_scores` among those not
    kept (random by default, as in SET). A position that was inactive before the update starts
    at zero with a zeroed optimizer state; one dropped and regrown in the same update keeps its
    value and state (the reference's `reinit_when_same=False`). f is `drop_fraction`, constant or
    cosine-decayed. Layers in `dense_layers` carry no mask and are outside the density budget,
    as the reference's custom-sparsity layers are, so the measured density exceeds `density`.
    """

    checkpoint_attrs = ("generator", "updates")
    grows_by_gradient = False
    """True where `grow_scores` reads the dense gradient (RigL), charged at every update."""

    optimizer: torch.optim.Optimizer | None = None

    def setup(self, model: nn.Module, data: Dataset) -> None:
        dense = self.dense_layers(list(prunable_weights(model)))
        weights = {n: w for n, w in prunable_weights(model).items() if n not in dense}
        densities = allocate(
            {n: w.shape for n, w in weights.items()}, self.params.density, self.params.allocation
        )
        self.generator = torch.Generator().manual_seed(self.seed)
        masks = {n: random_mask(weights[n].shape, densities[n], self.generator) for n in weights}
        self.masked = MaskedWeights(model, masks)
        self.initial_masks = {n: m.clone() for n, m in self.masked.masks.items()}
        self.end_step = self.last_update_step()
        self.updates = 0

    def dense_layers(self, names: list[str]) -> set[str]:
        """Prunable layers (in model order) left dense: the first one unless told otherwise."""
        return {names[0]} if self.params.dense_first_layer else set()

    def last_update_step(self) -> int:
        """T_end: mask updates happen at multiples of update_interval strictly before it."""
        return resolve_step(
            self.params.end_step, self.params.end_fraction, self.total_steps, "end_step"
        )

    def bind_optimizer(self, optimizer: torch.optim.Optimizer) -> None:
        """Proposed trainer hook: with the optimizer known, grown weights also get their
        momentum/Adam state zeroed, as google-research/rigl does for new connections."""
        self.optimizer = optimizer

    def drop_fraction(self, step: int) -> float:
        if self.params.drop_schedule == "cosine":
            return cosine_drop_fraction(step, self.params.drop_fraction, self.end_step)
        return self.params.drop_fraction if step < self.end_step else 0.0

    def grow_scores(self, name: str, weight: nn.Parameter) -> torch.Tensor:
        """SET grows at uniformly random inactive positions."""
        return random_scores(weight.shape, self.generator)

    def is_update_step(self, step: int) -> bool:
        return step % self.params.update_interval == 0 and step < self.end_step

    def after_backward(self, step: int) -> None:
        if self.is_update_step(step):
            self.update_masks(self.drop_fraction(step))
        super().after_backward(step)

    def dense_weight_grad(self, step: int) -> bool:
        """A gradient-grown method needs the dense gradient at each mask update."""
        return self.grows_by_gradient and self.is_update_step(step)

    @torch.no_grad()
    def update_masks(self, fraction: float) -> None:
        """One drop/grow step in every sparse layer; newly active weights and their optimizer
        state start at 0, regrown ones keep theirs."""
        for name, weight in self.masked.params.items():
            mask = self.masked.masks[name]
            k = int(int(mask.sum()) * fraction)
            new_mask, grown = drop_and_grow(weight, mask, k, self.grow_scores(name, weight))
            fresh = grown & ~mask
            self.masked.replace(name, new_mask)
            weight.masked_fill_(fresh | ~new_mask, 0.0)
            zero_optimizer_state(self.optimizer, weight, fresh)
        self.updates += 1

    def extra_metrics(self) -> dict[str, float]:
        changed, fraction = sparse_architecture_divergence(self.initial_masks, self.masked.masks)
        return {"sad": float(changed), "sad_fraction": fraction, "mask_updates": self.updates}
