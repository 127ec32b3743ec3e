"""SparseGPT: Frantar & Alistarh, "SparseGPT: Massive Language Models Can Be Accurately Pruned in
One-Shot", ICML 2023, arXiv 2301.00774 (reference code: IST-DASLab/sparsegpt `sparsegpt.py`).

Update rule, per layer in the calibration loop: H = X^T X over calibration tokens, plus
`percdamp` times its mean diagonal on the diagonal (dead inputs, H_jj = 0, get weight 0 and a unit
diagonal). Let U be the upper Cholesky factor of H^-1. Columns are swept left to right in blocks
of `blocksize`. Unstructured: at the start of a block, prune the weights of lowest w^2 / U_jj^2
over the whole block (the block's share of the layer's pruned count, so the layer lands exactly
on its density). N:M: at every group of M columns, prune per row the M - N lowest w^2 / U_jj^2.
Then, column by column, zero the pruned entries, form the error e = (w_j - q_j) / U_jj and
subtract e U_j,(j+1:) from the block's remaining columns (the optimal-brain-surgeon update that
lets the survivors absorb the error); after the block, propagate the accumulated errors to all
later columns through U. The survivors' new values are installed; no fine-tuning by default.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from sparsebench.checks import check_range
from sparsebench.methods.pruning.base import PostTrainingParams, PostTrainingPruner
from sparsebench.registry import register
from sparsebench.sparsity.calibration import InputStats, LayerResult
from sparsebench.sparsity.masks import NM, keep_count


@dataclass(frozen=True)
class SparseGptParams(PostTrainingParams):
    blocksize: int = 128
    percdamp: float = 0.01

    def __post_init__(self) -> None:
        super().__post_init__()
        check_range("blocksize", self.blocksize, 1)
        check_range("percdamp", self.percdamp, 0.0, 1.0, high_open=True)


def inverse_hessian_factor(
    gram: torch.Tensor, percdamp: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Upper Cholesky factor of (H + damp I)^-1, and the dead-input flags."""
    h = gram.clone()
    dead = h.diagonal() == 0
    h[dead, dead] = 1.0
    h.diagonal().add_(percdamp * h.diagonal().mean())
    inverse = torch.cholesky_inverse(torch.linalg.cholesky(h))
    return torch.linalg.cholesky(inverse, upper=True), dead


def _block_prune_counts(numel: int, cols: int, density: float, bounds: list[int]) -> list[int]:
    """How many weights each block prunes so that the layer total is exact."""
    total = numel - keep_count(numel, density)
    return [
        round(total * b / cols) - round(total * a / cols)
        for a, b in zip(bounds, bounds[1:], strict=False)
    ]


def sparsegpt_layer(
    weight: torch.Tensor,
    gram: torch.Tensor,
    density: float,
    pattern: NM | None,
    blocksize: int = 128,
    percdamp: float = 0.01,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Keep mask and updated weight of one layer (float64 inside, caller's dtype out)."""
    w = weight.to(torch.float64).clone()
    rows, cols = w.shape
    if pattern is not None:
        if cols % pattern.m:
            raise ValueError(f"N:M {pattern.n}:{pattern.m} needs inputs divisible by {pattern.m}")
        blocksize = max(pattern.m, blocksize - blocksize % pattern.m)
    u, dead = inverse_hessian_factor(gram.to(torch.float64), percdamp)
    w[:, dead] = 0.0
    pruned = torch.zeros_like(w, dtype=torch.bool)
    bounds = [*range(0, cols, blocksize), cols]
    counts = _block_prune_counts(w.numel(), cols, density, bounds)
    for (i1, i2), count in zip(zip(bounds, bounds[1:], strict=False), counts, strict=True):
        u1 = u[i1:i2, i1:i2]
        w1, err = w[:, i1:i2].clone(), torch.zeros(rows, i2 - i1, dtype=w.dtype)
        mask1 = torch.zeros_like(w1, dtype=torch.bool)
        if pattern is None and count:
            saliency = (w1**2 / u1.diagonal()[None, :] ** 2).flatten()
            mask1.view(-1)[torch.topk(saliency, count, largest=False).indices] = True
        for i in range(i2 - i1):
            if pattern is not None and i % pattern.m == 0:
                group = w1[:, i : i + pattern.m] ** 2 / u1.diagonal()[i : i + pattern.m] ** 2
                drop = torch.topk(group, pattern.m - pattern.n, dim=1, largest=False).indices
                mask1.scatter_(1, i + drop, True)
            q = torch.where(mask1[:, i], 0.0, w1[:, i])
            err[:, i] = (w1[:, i] - q) / u1[i, i]
            w1[:, i:] -= err[:, i : i + 1] @ u1[i : i + 1, i:]
            w1[:, i] = q
        w[:, i1:i2] = w1
        pruned[:, i1:i2] = mask1
        w[:, i2:] -= err @ u[i1:i2, i2:]
    return ~pruned, w.to(weight.dtype)


@register("pruning", "sparsegpt", params=SparseGptParams)
class SparseGpt(PostTrainingPruner):
    """Blockwise OBS pruning with weight reconstruction from the calibration Hessian."""

    params: SparseGptParams

    def layer_rule(self, name: str, weight: torch.Tensor, stats: InputStats) -> LayerResult:
        p = self.params
        keep, new = sparsegpt_layer(
            weight, stats.gram, p.density, p.pattern, p.blocksize, p.percdamp
        )
        return LayerResult(keep, new)
