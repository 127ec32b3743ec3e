"""Post-training magnitude pruning through the calibration loop: the baseline of SparseGPT
(Frantar & Alistarh, "SparseGPT: Massive Language Models Can Be Accurately Pruned in One-Shot",
ICML 2023, arXiv 2301.00774, `--gmp`) and of Wanda (Sun et al., arXiv 2306.11695).

Update rule: layer by layer, keep the largest |W_ij|: over the whole layer (`scope=layer`, as both
reference codes do), within each output row (`scope=row`), or the N largest of every M consecutive
inputs (`nm="2:4"`). No weight update, no fine-tuning by default (finetune_fraction=0).

It differs from the `magnitude` method only in running through the shared calibration loop, so it
reports what every post-training method reports: the held-out per-layer reconstruction error
||(W - W')X|| / ||WX|| and the time to prune.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from sparsebench.methods.pruning.base import PostTrainingParams, PostTrainingPruner
from sparsebench.registry import register
from sparsebench.sparsity.calibration import InputStats, LayerResult
from sparsebench.sparsity.masks import keep_count, row_mask, topk_mask


@dataclass(frozen=True)
class PtqMagnitudeParams(PostTrainingParams):
    scope: Literal["layer", "row"] = "layer"


@register("pruning", "ptq-magnitude", params=PtqMagnitudeParams)
class PtqMagnitude(PostTrainingPruner):
    """Layer-by-layer |w| pruning (per layer, per row or N:M) with reconstruction report."""

    def layer_rule(self, name: str, weight: torch.Tensor, stats: InputStats) -> LayerResult:
        p = self.params
        scores = weight.abs()
        if p.pattern is None and p.scope == "layer":
            mask = topk_mask(scores, keep_count(scores.numel(), p.density))
        else:
            mask = row_mask(scores, p.density, p.pattern)
        return LayerResult(mask, weight)
