"""Iterative magnitude pruning with rewinding: Frankle & Carbin, "The Lottery Ticket
Hypothesis: Finding Sparse, Trainable Neural Networks", ICLR 2019, arXiv 1803.03635; rewinding to
an early iterate: Frankle, Dziugaite, Roy & Carbin, "Linear Mode Connectivity and the Lottery
Ticket Hypothesis", ICML 2020, arXiv 1912.05671.

Update rule: train dense, remembering the weights theta_k at step `rewind_step` (0 = the
initialisation, the original lottery ticket). Then for `rounds` rounds: remove the same fraction
p = 1 - density^(1/rounds) of the *remaining* weights by smallest |w| (per layer, or over all
layers with `scope=global`), reset the survivors (and every other parameter) to theta_k, and
retrain with the mask fixed. After r rounds the density is (1 - p)^r; after the last round it is
`density`. `rewind=none` keeps the trained weights instead of rewinding (plain iterative
pruning with fine-tuning). The retraining budget (finetune_fraction of the steps) is split
evenly over the rounds; "after prune" is the rewound, pruned network of the last round.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn as nn

from sparsebench.checks import check_range
from sparsebench.data.base import Dataset
from sparsebench.hooks import TrainHooks
from sparsebench.methods.pruning.base import (
    PruningMethod,
    PruningParams,
    Retrain,
    dense_masks,
    prune_survivors,
    round_densities,
    split_steps,
)
from sparsebench.registry import register


@dataclass(frozen=True)
class ImpParams(PruningParams):
    rounds: int = 3
    scope: Literal["layer", "global"] = "layer"
    rewind: Literal["weights", "none"] = "weights"
    rewind_step: int = 0
    finetune_fraction: float = 0.6

    def __post_init__(self) -> None:
        super().__post_init__()
        check_range("rounds", self.rounds, 1)
        check_range("rewind_step", self.rewind_step, 0)

    @property
    def round_fraction(self) -> float:
        """p, the share of the remaining weights removed in every round."""
        return 1.0 - self.density ** (1.0 / self.rounds)


class Checkpoint(TrainHooks):
    """Trainer hook that keeps a copy of the model's state at `step` (0: right away)."""

    def __init__(self, model: nn.Module, step: int) -> None:
        self.model, self.step = model, step
        self.state = copy.deepcopy(model.state_dict()) if step == 0 else None

    def after_step(self, step: int) -> None:
        if step == self.step:
            self.state = copy.deepcopy(self.model.state_dict())


@register("pruning", "imp", params=ImpParams)
class Imp(PruningMethod):
    """Iterative magnitude pruning, a fixed share per round, rewinding to an early iterate."""

    iterative = True

    params: ImpParams

    def __init__(self, params: ImpParams, seed: int) -> None:
        super().__init__(params, seed)
        self.checkpoint: Checkpoint | None = None

    def dense_hooks(self, model: nn.Module) -> TrainHooks:
        self.checkpoint = Checkpoint(model, self.params.rewind_step)
        return self.checkpoint

    def rewind_to(self, model: nn.Module) -> None:
        if self.params.rewind == "none":
            return
        if self.checkpoint is None or self.checkpoint.state is None:
            raise ValueError(
                f"rewind_step {self.params.rewind_step} was never reached in dense training"
            )
        model.load_state_dict(self.checkpoint.state)

    def prune_iteratively(
        self, model: nn.Module, data: Dataset, retrain: Retrain, steps: int
    ) -> dict[str, torch.Tensor]:
        p = self.params
        masks = dense_masks(model)
        for t, (density, n) in enumerate(
            zip(round_densities(p.density, p.rounds), split_steps(steps, p.rounds), strict=True)
        ):
            masks = prune_survivors(model, masks, density, p.scope)
            self.rewind_to(model)
            retrain(model, masks, n, seed_offset=t)
        return masks
