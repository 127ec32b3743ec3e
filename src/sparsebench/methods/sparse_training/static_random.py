"""Static random sparsity (Liu et al., "The Unreasonable Effectiveness of Random Pruning",
ICLR 2022).

Update rule: at initialization, draw for every Linear/Conv weight a uniformly random mask with
exactly round(d_l * numel_l) ones, where d_l is the layer density from the allocation (uniform:
d_l = d; ERK: d_l proportional to sum(shape_l)/prod(shape_l), scaled to the global density d).
The mask never changes; pruned weights and their gradients stay zero for the whole run.
`dense_first_layer` leaves the first layer dense and outside the budget, as the RigL reference
does for all its methods, so that a static baseline is compared with RigL at the same measured
density.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from sparsebench.checks import check_density
from sparsebench.data.base import Dataset
from sparsebench.methods.sparse_training.base import SparseTrainingMethod
from sparsebench.registry import register
from sparsebench.sparsity.allocation import Allocation, allocate
from sparsebench.sparsity.masked import MaskedWeights, prunable_weights
from sparsebench.sparsity.masks import random_mask
from sparsebench.spec import Regime


@dataclass(frozen=True)
class StaticRandomParams:
    density: float = 0.1
    allocation: Allocation = "erk"
    dense_first_layer: bool = False

    def __post_init__(self) -> None:
        check_density(self.density)


@register(
    "sparse_training",
    "static-random",
    params=StaticRandomParams,
    regime=Regime("sgd", (), "Liu et al. 2022 appendix: SGD with momentum 0.9"),
)
class StaticRandom(SparseTrainingMethod):
    """Random fixed mask at init, uniform or ERK layer densities."""

    def setup(self, model: nn.Module, data: Dataset) -> None:
        weights = prunable_weights(model)
        if self.params.dense_first_layer:
            weights = dict(list(weights.items())[1:])
        densities = allocate(
            {n: w.shape for n, w in weights.items()}, self.params.density, self.params.allocation
        )
        generator = torch.Generator().manual_seed(self.seed)
        masks = {n: random_mask(weights[n].shape, densities[n], generator) for n in weights}
        self.masked = MaskedWeights(model, masks)
