"""DSnoT: Zhang, Zhao, Lin, Shen, Lin, Yu & Ji, "Dynamic Sparse No Training: Training-Free
Fine-tuning for Sparse LLMs", ICLR 2024, arXiv 2310.08915 (reference code: zyxxmu/DSnoT
`lib/prune.py`, `prune_DSnoT`).

Update rule, per layer in the calibration loop, starting from a Wanda (or magnitude) mask at the
same density. Per output row i, the expected output change of pruning is the residual
r_i = sum over pruned j of W_ij * mean(x_j). DSnoT then swaps weights, one pair per row per
cycle, without touching any weight value:
- grow: among the initially pruned weights, ordered by W_ij mean(x_j) / var(x_j)^`var_power`,
  take the largest when r_i > 0 and the smallest when r_i < 0 (the one that most pulls r_i
  towards 0 per unit of input variance);
- prune: unstructured, among the initially kept weights ordered by Wanda score, the
  lowest-scoring one whose own contribution W_ij mean(x_j) has the sign opposite to r_i (so its
  removal also pulls r_i towards 0); N:M, the lowest-Wanda kept weight of the grown weight's
  group of M, so every group keeps N;
- the swap happens only while |r_i| > `update_threshold`; a row whose swap is refused stops for
  good. At most `max_cycles` cycles;
- sign stop: N:M swaps, and unstructured ones when `without_same_sign` is False, also need the
  new residual to keep the sign of the initial one. The reference's `main.py` sets
  `--without_same_sign` True by default, so its unstructured loop (`prune_DSnoT`) has no sign
  stop and may overshoot past 0 and come back; its N:M loop always has it. We follow both.
Each swap adds one weight and removes one from the same row (group), so the density is exact.

Scale of the threshold: our r_i uses the per-token mean of the inputs. The reference code sums
the inputs over each 2048-token sequence (its `sum_metric_row`), so its `--update_threshold 0.1`
is 0.1 / 2048 ~= 5e-5 on our scale: that is our default. The ordering keys are scale-free.
Refinement is applied to every layer (the reference's `--skip_layer` is not reproduced).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from sparsebench.checks import check_range
from sparsebench.methods.pruning.base import PostTrainingParams, PostTrainingPruner
from sparsebench.registry import register
from sparsebench.sparsity.calibration import InputStats, LayerResult, wanda_scores
from sparsebench.sparsity.masks import NM, row_mask


@dataclass(frozen=True)
class DsnotParams(PostTrainingParams):
    initial: Literal["wanda", "magnitude"] = "wanda"
    max_cycles: int = 50
    update_threshold: float = 5e-5
    var_power: float = 1.0
    without_same_sign: bool = True  # the reference main.py's default: no unstructured sign stop

    def __post_init__(self) -> None:
        super().__post_init__()
        check_range("max_cycles", self.max_cycles, 0)
        check_range("update_threshold", self.update_threshold, 0.0)


def residual(weight: torch.Tensor, keep: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
    """r_i = sum over pruned j of W_ij * mean(x_j), per row."""
    return (weight * mean[None, :] * ~keep).sum(1)


def _sorted_positions(candidates: torch.Tensor, key: torch.Tensor) -> torch.Tensor:
    """Per row, the column indices where `candidates` is set, ordered by ascending `key`.

    Every row must have the same number of candidates (true of per-row and N:M masks).
    """
    count = int(candidates[0].sum())
    if not (candidates.sum(1) == count).all():
        raise ValueError("DSnoT needs the same number of pruned weights in every row")
    key = torch.where(candidates, key, torch.inf)
    return torch.argsort(key, dim=1, stable=True)[:, :count]


class _Grow:
    """Two pointers into the pruned weights ordered by contribution / variance."""

    def __init__(self, contrib: torch.Tensor, keep: torch.Tensor, var: torch.Tensor, power: float):
        self.order = _sorted_positions(~keep, contrib / var.clamp_min(1e-12)[None, :] ** power)
        rows = keep.shape[0]
        self.lo = torch.zeros(rows, dtype=torch.long)
        self.hi = torch.full((rows,), self.order.shape[1] - 1, dtype=torch.long)

    def take(self, positive: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Next candidate per row (largest if r > 0, else smallest) and whether one was left."""
        left = self.lo <= self.hi
        ptr = torch.where(positive, self.hi, self.lo).clamp(0, max(self.order.shape[1] - 1, 0))
        self.hi -= positive.long()
        self.lo += (~positive).long()
        return self.order.gather(1, ptr[:, None]).squeeze(1), left


class _PruneUnstructured:
    """Kept weights by ascending Wanda score: negative contributions first, positives last."""

    def __init__(self, contrib: torch.Tensor, keep: torch.Tensor, wanda: torch.Tensor) -> None:
        by_score = _sorted_positions(keep, wanda)
        rank = torch.arange(by_score.shape[1]).expand_as(by_score)
        negative = contrib.gather(1, by_score) < 0
        key = torch.where(negative, rank, 2 * by_score.shape[1] - rank)
        self.order = by_score.gather(1, torch.argsort(key, dim=1, stable=True))
        rows = keep.shape[0]
        self.lo = torch.zeros(rows, dtype=torch.long)
        self.hi = torch.full((rows,), self.order.shape[1] - 1, dtype=torch.long)

    def take(self, negative_r: torch.Tensor, grown: torch.Tensor, keep: torch.Tensor):
        left = self.lo <= self.hi
        ptr = torch.where(negative_r, self.hi, self.lo).clamp(0, self.order.shape[1] - 1)
        self.hi -= negative_r.long()
        self.lo += (~negative_r).long()
        return self.order.gather(1, ptr[:, None]).squeeze(1), left


class _PruneInGroup:
    """The lowest-Wanda weight still kept from the initial mask, in the grown weight's group."""

    def __init__(self, keep: torch.Tensor, wanda: torch.Tensor, m: int) -> None:
        self.wanda, self.m = wanda, m
        self.original = keep.clone()

    def take(self, negative_r: torch.Tensor, grown: torch.Tensor, keep: torch.Tensor):
        start = grown - grown % self.m
        cols = start[:, None] + torch.arange(self.m)[None, :]
        live = (keep & self.original).gather(1, cols)
        scores = torch.where(live, self.wanda.gather(1, cols), torch.inf)
        best, local = scores.min(1)
        return start + local, torch.isfinite(best)


def dsnot_refine(
    weight: torch.Tensor,
    stats: InputStats,
    keep: torch.Tensor,
    pattern: NM | None,
    max_cycles: int = 50,
    update_threshold: float = 0.1,
    var_power: float = 1.0,
    without_same_sign: bool = True,
) -> torch.Tensor:
    """The refined keep mask (same count per row, or per N:M group, as `keep`).

    `without_same_sign` drops the sign stop of unstructured swaps; N:M swaps always keep it.
    """
    keep = keep.clone()
    if keep.all() or not keep.any():
        return keep
    mean = stats.mean
    contrib = weight * mean[None, :]
    wanda = wanda_scores(weight, stats)
    r = residual(weight, keep, mean)
    sign0 = torch.sign(r)
    grow = _Grow(contrib, keep, stats.var, var_power)
    prune = (
        _PruneInGroup(keep, wanda, pattern.m)
        if pattern is not None
        else _PruneUnstructured(contrib, keep, wanda)
    )
    same_sign = pattern is not None or not without_same_sign
    active = torch.ones(weight.shape[0], dtype=torch.bool)
    rows = torch.arange(weight.shape[0])
    for _ in range(max_cycles):
        if not active.any():
            break
        g_idx, g_ok = grow.take(r > 0)
        p_idx, p_ok = prune.take(r < 0, g_idx, keep)
        g_c, p_c = contrib[rows, g_idx], contrib[rows, p_idx]
        after = r + p_c - g_c
        active &= g_ok & p_ok & (r.abs() > update_threshold)
        if same_sign:
            active &= torch.sign(after) == sign0
        keep[rows[active], p_idx[active]] = False
        keep[rows[active], g_idx[active]] = True
        r = torch.where(active, after, r)
    return keep


@register("pruning", "dsnot", params=DsnotParams)
class Dsnot(PostTrainingPruner):
    """Training-free prune-and-grow refinement of a Wanda/magnitude mask at fixed density.

    Per row and cycle, grow the pruned weight and prune the kept one that most pull the residual
    r_i towards 0, while |r_i| > `update_threshold`, for at most `max_cycles` cycles; N:M swaps,
    and unstructured ones with `without_same_sign=False`, also stop when r_i would change sign
    (full rule in the module docstring).
    """

    params: DsnotParams

    def layer_rule(self, name: str, weight: torch.Tensor, stats: InputStats) -> LayerResult:
        p = self.params
        scores = wanda_scores(weight, stats) if p.initial == "wanda" else weight.abs()
        start = row_mask(scores, p.density, p.pattern)
        keep = dsnot_refine(
            weight,
            stats,
            start,
            p.pattern,
            p.max_cycles,
            p.update_threshold,
            p.var_power,
            p.without_same_sign,
        )
        return LayerResult(keep, weight)
