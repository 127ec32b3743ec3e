"""SynFlow (Tanaka, Kunin, Yamins, Ganguli, "Pruning neural networks without any data by
iteratively conserving synaptic flow", NeurIPS 2020, arXiv 2006.05467).

Update rule: on a float64 copy of the model whose parameters are replaced by their absolute
values (so every ReLU is the identity on the positive signal), feed one all-ones input and let R
be the sum of the outputs. For k = 1..n (`iterations`, 100 in the paper), score each surviving
Linear/Conv weight by |dR/dw * w| with the current mask applied, and keep the globally highest
scores at density d^(k/n) (the exponential schedule). No data is used. The original model keeps
its signed weights; only the final mask is applied to it and held fixed during training.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn as nn

from sparsebench.checks import check_density, check_range
from sparsebench.data.base import Dataset
from sparsebench.methods.sparse_training.base import SparseTrainingMethod
from sparsebench.registry import register
from sparsebench.sparsity.masked import MaskedWeights, prunable_weights
from sparsebench.sparsity.saliency import global_masks, synflow_scores


@dataclass(frozen=True)
class SynflowParams:
    density: float = 0.1
    iterations: int = 100

    def __post_init__(self) -> None:
        check_density(self.density)
        check_range("iterations", self.iterations, 1)


def synflow_masks(model: nn.Module, input_shape: torch.Size, density: float, iterations: int):
    """Iterative SynFlow masks on an absolute-valued float64 copy of `model`."""
    linear = copy.deepcopy(model).double().eval()
    with torch.no_grad():
        for param in linear.parameters():
            param.abs_()
    weights = prunable_weights(linear)
    original = {n: w.detach().clone() for n, w in weights.items()}
    masks = {n: torch.ones_like(w, dtype=torch.bool) for n, w in weights.items()}
    for k in range(1, iterations + 1):
        with torch.no_grad():
            for name, weight in weights.items():
                weight.copy_(original[name] * masks[name])
        scores = synflow_scores(linear, input_shape)
        scores = {n: s.masked_fill(~masks[n], -1.0) for n, s in scores.items()}
        masks = global_masks(scores, density ** (k / iterations))
    return masks


@register("sparse_training", "synflow", params=SynflowParams)
class Synflow(SparseTrainingMethod):
    """Data-free fixed mask at init from iterative synaptic-flow scores."""

    def setup(self, model: nn.Module, data: Dataset) -> None:
        if not data.x_train.is_floating_point():
            raise ValueError(
                "synflow feeds an all-ones float input; token inputs are not supported"
            )
        masks = synflow_masks(
            model, data.x_train.shape[1:], self.params.density, self.params.iterations
        )
        self.masked = MaskedWeights(model, masks)
