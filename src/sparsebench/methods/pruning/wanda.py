"""Wanda: Sun, Liu, Bair & Kolter, "A Simple and Effective Pruning Approach for Large Language
Models", ICLR 2024, arXiv 2306.11695 (reference code: locuslab/wanda `lib/prune.py`).

Update rule: for each layer, in the calibration loop, score every weight by
S_ij = |W_ij| * ||X_j||_2, the weight's magnitude times the L2 norm of its input feature over all
calibration tokens. Compare scores within each output row: keep the highest `density` share of
the row (unstructured), or the N highest of every M consecutive inputs (`nm`). The surviving
weights are not changed; no fine-tuning by default.
"""

from __future__ import annotations

import torch

from sparsebench.methods.pruning.base import PostTrainingParams, PostTrainingPruner
from sparsebench.registry import register
from sparsebench.sparsity.calibration import InputStats, LayerResult, wanda_scores
from sparsebench.sparsity.masks import row_mask


@register("pruning", "wanda", params=PostTrainingParams)
class Wanda(PostTrainingPruner):
    """Per-row pruning by |weight| x input-feature norm from calibration data."""

    def layer_rule(self, name: str, weight: torch.Tensor, stats: InputStats) -> LayerResult:
        p = self.params
        return LayerResult(row_mask(wanda_scores(weight, stats), p.density, p.pattern), weight)
