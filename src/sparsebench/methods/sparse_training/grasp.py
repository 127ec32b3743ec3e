"""GraSP (Wang, Zhang, Grosse, "Picking Winning Tickets Before Training by Preserving Gradient
Flow", ICLR 2020, arXiv 2002.07376).

Update rule: once, at initialization, take a class-balanced batch (`samples_per_class` of every
class, from the start of the training set), compute the gradient g of the loss on logits divided
by `temperature` (200 in the authors' code) and the Hessian-gradient product Hg by a double
backward of g . stopgrad(g); score each Linear/Conv weight by S = -w * Hg and remove the globally
highest scores (those whose removal least reduces gradient flow), keeping the rest at the
requested density. The mask is then fixed for training.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn as nn

from sparsebench.checks import check_density, check_range
from sparsebench.data.base import Dataset
from sparsebench.methods.sparse_training.base import SparseTrainingMethod
from sparsebench.registry import register
from sparsebench.sparsity.masked import MaskedWeights
from sparsebench.sparsity.saliency import class_balanced, global_masks, grasp_scores


@dataclass(frozen=True)
class GraspParams:
    density: float = 0.1
    samples_per_class: int = 10
    temperature: float = 200.0

    def __post_init__(self) -> None:
        check_density(self.density)
        check_range("samples_per_class", self.samples_per_class, 1)
        check_range("temperature", self.temperature, 0.0, low_open=True)


@register("sparse_training", "grasp", params=GraspParams)
class Grasp(SparseTrainingMethod):
    """Fixed mask at init that removes the weights with the highest -w * Hg."""

    def setup(self, model: nn.Module, data: Dataset) -> None:
        if data.y_train.dim() != 1:
            raise ValueError("grasp needs one class label per example for its balanced batch")
        x, y = class_balanced(data.x_train, data.y_train, self.params.samples_per_class)
        scores = grasp_scores(model, x, y, self.params.temperature)
        self.masked = MaskedWeights(model, global_masks(scores, self.params.density))
