"""Post-training magnitude pruning through the calibration loop: the baseline of SparseGPT
(Frantar & Alistarh, "SparseGPT: Massive Language Models Can Be Accurately Pruned in One-Shot",
ICML 2023, arXiv 2301.00774, `--gmp`) and of Wanda (Sun et al., arXiv 2306.11695).

Update rule: layer by layer, keep the largest |W_ij|: over the whole layer (`scope=layer`, as both
reference codes do), within each output row (`scope=row`), or the N largest of every M consecutive
inputs (`nm="2:4"`). No weight update, no fine-tuning by default (finetune_fraction=0).

It differs from the `magnitude` method only in running through the shared calibration loop, so it
reports what every post-training method reports: the held-out per-layer reconstruction error
||(W - W')X|| / ||WX|| and the time to prune. This module also holds the params and the base
class that the other post-training methods (wanda, sparsegpt, dsnot) extend.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn as nn

from sparsebench.data.base import Dataset
from sparsebench.methods.pruning.base import PruningMethod, PruningParams
from sparsebench.registry import register
from sparsebench.sparsity.calibration import (
    InputStats,
    LayerResult,
    prune_layerwise,
    split_calibration,
)
from sparsebench.sparsity.masks import NM, keep_count, nm_mask, parse_nm, topk_mask


@dataclass(frozen=True)
class PostTrainingParams(PruningParams):
    """Shared by post-training methods: target sparsity and the calibration sample."""

    density: float = 0.5
    finetune_fraction: float = 0.0
    nm: str | None = None
    calibration: int = 128
    heldout: int = 32
    batch: int = 64

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.nm is not None:
            parse_nm(self.nm)
        if self.calibration < 1:
            raise ValueError(f"calibration must be >= 1 sequences, got {self.calibration}")
        if self.heldout < 0:
            raise ValueError(f"heldout must be >= 0 sequences, got {self.heldout}")
        if self.batch < 1:
            raise ValueError(f"batch must be >= 1, got {self.batch}")

    @property
    def pattern(self) -> NM | None:
        return parse_nm(self.nm) if self.nm is not None else None

    @property
    def target_density(self) -> float:
        """N/M under an N:M pattern, `density` otherwise."""
        return self.pattern.density if self.pattern else self.density


def row_mask(scores: torch.Tensor, density: float, pattern: NM | None) -> torch.Tensor:
    """Keep the highest scores of each output row: N of every M inputs, or a `density` share."""
    if pattern is not None:
        return nm_mask(scores, pattern)
    k = keep_count(scores.shape[1], density)
    keep = torch.topk(scores, k, dim=1).indices
    return torch.zeros_like(scores, dtype=torch.bool).scatter_(1, keep, True)


class PostTrainingPruner(PruningMethod):
    """Runs the calibration loop with `layer_rule`; keeps its report for the engine."""

    params: PostTrainingParams

    def prune(self, model: nn.Module, data: Dataset) -> dict[str, torch.Tensor]:
        p = self.params
        calib, held = split_calibration(data.x_train, p.calibration, p.heldout, self.seed)
        masks, report = prune_layerwise(model, calib, held, self.layer_rule, p.batch)
        self.report = report.as_report()
        return masks

    def layer_rule(self, name: str, weight: torch.Tensor, stats: InputStats) -> LayerResult:
        raise NotImplementedError


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
