"""Iterative magnitude pruning with rewinding: Frankle & Carbin, "The Lottery Ticket
Hypothesis: Finding Sparse, Trainable Neural Networks", ICLR 2019, arXiv 1803.03635; rewinding to
an early iterate: Frankle, Dziugaite, Roy & Carbin, "Linear Mode Connectivity and the Lottery
Ticket Hypothesis", ICML 2020, arXiv 1912.05671.

Update rule, as open_lth runs it (`lottery/runner.py`, `pruning/sparse_global.py`): train dense
for the budget's T steps, remembering the weights theta_k at step k = `rewind_step` (0: the
initialisation, the original lottery ticket). Then, level after level: remove the share
p = `pruning_fraction` (0.2) of the *remaining* weights by smallest |w| over all layers at once
(`scope=global`; `layer` prunes each layer alone), reset every parameter to theta_k, and retrain
with the mask fixed for the full schedule from step k to T, the learning-rate schedule resuming at
step k (it does not restart). Levels continue until `density` is reached; the last one stops
exactly at it. Every level's steps are charged, so the run costs T + levels * (T - k) steps.

`rounds`, when set, replaces p by the share that reaches `density` in exactly that many levels.
`rewind`: `weights` is the above; `lr` keeps the trained weights and only rewinds the schedule to
step k (learning-rate rewinding, Renda, Frankle & Carbin, ICLR 2020, arXiv 2003.02389); `none`
keeps the weights and fine-tunes on the budget's schedule. `retrain: split` (ours, for grids that
cannot afford full levels) spreads `finetune_fraction` of the budget evenly over the levels
instead. "After prune" is the rewound, pruned network of the last level.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn as nn

from sparsebench.checks import check_choice, check_range
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
    pruning_fraction: float = 0.2
    rounds: int | None = None
    scope: Literal["layer", "global"] = "global"
    rewind: Literal["weights", "lr", "none"] = "weights"
    rewind_step: int = 0
    retrain: Literal["full", "split"] = "full"
    finetune_fraction: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        check_range("pruning_fraction", self.pruning_fraction, 0.0, 1.0, low_open=True)
        if self.rounds is not None:
            check_range("rounds", self.rounds, 1)
        check_range("rewind_step", self.rewind_step, 0)
        check_choice("retrain", self.retrain, ("full", "split"))
        if (self.retrain == "full") != (self.finetune_fraction == 0.0):
            raise ValueError(
                "finetune_fraction must be 0 with retrain: full (each level retrains the whole "
                "schedule after the dense run) and above 0 with retrain: split, "
                f"got {self.finetune_fraction} with retrain: {self.retrain}"
            )

    def level_densities(self) -> list[float]:
        """Density after each level: (1 - p)^t until `density`, the last level clamped to it."""
        if self.rounds is not None:
            return round_densities(self.density, self.rounds)
        levels = max(
            1, math.ceil(math.log(self.density) / math.log(1 - self.pruning_fraction) - 1e-9)
        )
        return [max((1 - self.pruning_fraction) ** t, self.density) for t in range(1, levels + 1)]


class Checkpoint(TrainHooks):
    """Trainer hook that keeps a copy of the model's state at `step` (0: right away) and
    counts the dense steps (the schedule length T the levels retrain to)."""

    def __init__(self, model: nn.Module, step: int) -> None:
        self.model, self.step = model, step
        self.state = copy.deepcopy(model.state_dict()) if step == 0 else None
        self.steps_seen = 0

    def after_step(self, step: int) -> None:
        self.steps_seen = step
        if step == self.step:
            self.state = copy.deepcopy(self.model.state_dict())


@register("pruning", "imp", params=ImpParams)
class Imp(PruningMethod):
    """Iterative magnitude pruning, a fixed share per round, rewinding to an early iterate."""

    iterative = True
    seed_batchable = False
    """Its own rounds call the retrainer one at a time, which the engine cannot batch."""

    params: ImpParams

    def __init__(self, params: ImpParams, seed: int) -> None:
        super().__init__(params, seed)
        self.checkpoint: Checkpoint | None = None

    def dense_hooks(self, model: nn.Module) -> TrainHooks:
        self.checkpoint = Checkpoint(model, self.params.rewind_step)
        return self.checkpoint

    def rewind_to(self, model: nn.Module) -> None:
        if self.params.rewind != "weights":
            return
        if self.checkpoint is None or self.checkpoint.state is None:
            raise ValueError(
                f"rewind_step {self.params.rewind_step} was never reached in dense training"
            )
        model.load_state_dict(self.checkpoint.state)

    def prune_iteratively(
        self, model: nn.Module, data: Dataset, retrain: Retrain, steps: int
    ) -> dict[str, torch.Tensor]:
        p, masks = self.params, dense_masks(model)
        densities = p.level_densities()
        for t, (density, n) in enumerate(
            zip(densities, self.level_steps(steps, len(densities)), strict=True)
        ):
            masks = prune_survivors(model, masks, density, p.scope)
            self.rewind_to(model)
            retrain(model, masks, n, seed_offset=t, schedule_from=self.schedule_from())
        return masks

    def level_steps(self, steps: int, levels: int) -> list[int]:
        """Retraining steps of each level: the dense schedule from the rewind step to its end
        (`full`), or `steps` spread over the levels (`split`)."""
        if self.params.retrain == "split":
            return split_steps(steps, levels)
        dense_steps = self.checkpoint.steps_seen if self.checkpoint is not None else 0
        if dense_steps <= self.params.rewind_step:
            raise ValueError(
                f"rewind_step {self.params.rewind_step} leaves nothing to retrain in a "
                f"{dense_steps}-step schedule"
            )
        return [dense_steps - self.params.rewind_step] * levels

    def schedule_from(self) -> int:
        """The step of the dense schedule each level's learning rate resumes at."""
        return 0 if self.params.rewind == "none" else self.params.rewind_step
