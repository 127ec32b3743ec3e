"""One-shot magnitude pruning, then fine-tuning with the mask fixed (Han et al. 2015; the
baseline of Blalock et al., "What is the State of Neural Network Pruning?", 2020).

Update rule: after dense training, keep the weights of largest |w|: per layer (`scope=layer`,
each layer at `density`), over all layers at once (`scope=global`), or the N largest of every M
consecutive inputs (`nm="2:4"`, density N/M). Fine-tune the survivors; pruned weights stay 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn as nn

from sparsebench.data.base import Dataset
from sparsebench.methods.pruning.base import PruningMethod, PruningParams
from sparsebench.registry import register
from sparsebench.sparsity.masked import prunable_weights
from sparsebench.sparsity.masks import magnitude_mask, nm_mask, parse_nm
from sparsebench.sparsity.saliency import global_masks


@dataclass(frozen=True)
class MagnitudeParams(PruningParams):
    scope: Literal["layer", "global"] = "layer"
    nm: str | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.nm is not None:
            parse_nm(self.nm)


@register("pruning", "magnitude", params=MagnitudeParams)
class Magnitude(PruningMethod):
    """One-shot |w| pruning, layer-wise, global or N:M, then fine-tune."""

    def prune(self, model: nn.Module, data: Dataset) -> dict[str, torch.Tensor]:
        weights = {n: w.detach() for n, w in prunable_weights(model).items()}
        if self.params.nm is not None:
            pattern = parse_nm(self.params.nm)
            return {n: nm_mask(w.abs(), pattern) for n, w in weights.items()}
        if self.params.scope == "layer":
            return {n: magnitude_mask(w, self.params.density) for n, w in weights.items()}
        return global_masks({n: w.abs() for n, w in weights.items()}, self.params.density)
