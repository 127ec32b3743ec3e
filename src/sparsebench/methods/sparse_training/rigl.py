"""RigL (Evci, Gale, Menick, Castro, Elsen, "Rigging the Lottery: Making All Tickets Winners",
ICML 2020, arXiv 1911.11134).

Update rule: start from a random mask at the ERK (or uniform) layer densities. Every
`update_interval` steps while t < T_end, in every layer drop the k = floor(f(t) * active) active
weights of smallest magnitude and grow the k inactive positions (after the drop) with the largest
|dense gradient| of the current minibatch; grown weights and their optimizer state start at zero.
f(t) = alpha/2 (1 + cos(pi t / T_end)) with alpha = `drop_fraction` (defaults of the reference
code: alpha 0.3, every 100 steps, T_end at 75% of training, ERK). Density per layer is constant.
Mechanics are shared with SET (DynamicSparse in the family base); only the grow score differs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from sparsebench.methods.sparse_training.base import DstParams, DynamicSparse
from sparsebench.registry import register
from sparsebench.sparsity.dst import gradient_scores
from sparsebench.spec import Regime


@dataclass(frozen=True)
class RiglParams(DstParams):
    step_on_update: bool = False
    """Also take the optimizer step on mask-update steps (the reference does not)."""


@register(
    "sparse_training",
    "rigl",
    params=RiglParams,
    regime=Regime(
        "sgd",
        ("step",),
        "Evci et al. 2020 and google-research/rigl: SGD momentum 0.9, piecewise-constant lr",
    ),
)
class Rigl(DynamicSparse):
    """RigL: magnitude drop, regrow where the dense gradient is largest."""

    grows_by_gradient = True

    def grow_scores(self, name: str, weight: nn.Parameter) -> torch.Tensor:
        return gradient_scores(name, weight)

    def skips_optimizer_step(self, step: int) -> bool:
        return self.is_update_step(step) and not self.params.step_on_update
