"""SNIP (Lee, Ajanthan, Torr, "SNIP: Single-shot Network Pruning based on Connection
Sensitivity", ICLR 2019, arXiv 1810.02340).

Update rule: once, at initialization and before any training step, score every Linear/Conv
weight by its connection sensitivity |dL/dw * w| on one labelled minibatch (the first
`batch_size` training examples), keep the globally highest scores at the requested density
across all layers, and train with that mask fixed (pruned weights and their gradients stay zero).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn as nn

from sparsebench.checks import check_density, check_range
from sparsebench.data.base import Dataset
from sparsebench.methods.sparse_training.base import SparseTrainingMethod
from sparsebench.registry import register
from sparsebench.sparsity.masked import MaskedWeights
from sparsebench.sparsity.saliency import global_masks, snip_scores


@dataclass(frozen=True)
class SnipParams:
    density: float = 0.1
    batch_size: int = 100

    def __post_init__(self) -> None:
        check_density(self.density)
        check_range("batch_size", self.batch_size, 1)


@register("sparse_training", "snip", params=SnipParams)
class Snip(SparseTrainingMethod):
    """Fixed mask from |g * w| on one batch at init, global top-k."""

    def setup(self, model: nn.Module, data: Dataset) -> None:
        n = self.params.batch_size
        scores = snip_scores(model, data.x_train[:n], data.y_train[:n])
        self.masked = MaskedWeights(model, global_masks(scores, self.params.density))
