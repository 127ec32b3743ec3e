"""Robust aggregation rules any server-based strategy can use on its clients' updates.

- mean: the weighted mean (the non-robust default).
- median: coordinate-wise median (Yin et al., "Byzantine-Robust Distributed Learning: Towards
  Optimal Statistical Rates", ICML 2018, arXiv 1803.01498).
- trimmed-mean: per coordinate, drop the floor(beta * n) largest and smallest values and average
  the rest (same paper).
- krum: pick the single update whose summed squared distance to its n - f - 2 nearest other
  updates is smallest (Blanchard et al., "Machine Learning with Adversaries: Byzantine Tolerant
  Gradient Descent", NeurIPS 2017), with f the number of Byzantine clients assumed among n.
- flag: the Flag Aggregator (Almasi et al., ICLR 2024; comm/flag.py), rescaled to the median
  norm of the updates. The authors hand FA's direction (norm up to n / m, whatever the
  updates' size) to SGD in place of a mean gradient; a server adding it to the model needs a
  step length, and the median norm is one a Byzantine minority cannot inflate (ours).

Median, trimmed mean, Krum and flag ignore the sample-size weights: a weight is something a
Byzantine client could lie about.
"""

from __future__ import annotations

import torch

from sparsebench.comm.flag import flag_aggregate


def trimmed_mean(updates: torch.Tensor, trim_fraction: float) -> torch.Tensor:
    n = updates.shape[0]
    cut = int(trim_fraction * n)
    if n - 2 * cut < 1:
        raise ValueError(f"trimmed-mean: trim_fraction={trim_fraction} leaves no update of {n}")
    ordered = updates.sort(dim=0).values
    return ordered[cut : n - cut].mean(0)


def krum_index(updates: torch.Tensor, byzantine: int) -> int:
    """Index of the update with the smallest Krum score (n - f - 2 nearest neighbours)."""
    n = updates.shape[0]
    neighbours = n - byzantine - 2
    if neighbours < 1:
        raise ValueError(f"krum needs n - f - 2 >= 1, got n={n}, f={byzantine}")
    dist = torch.cdist(updates[None].double(), updates[None].double())[0] ** 2
    dist.fill_diagonal_(float("inf"))
    scores = dist.sort(dim=1).values[:, :neighbours].sum(1)
    return int(scores.argmin())


def combine(
    updates: torch.Tensor, weights: torch.Tensor, rule: str, options: dict[str, float | int]
) -> torch.Tensor:
    """Aggregate stacked updates [n, d] into one [d] with `rule`."""
    if rule == "mean":
        return (updates * weights[:, None].to(updates.dtype)).sum(0)
    if rule == "median":
        return updates.median(dim=0).values if updates.shape[0] % 2 else _mid_median(updates)
    if rule == "trimmed-mean":
        return trimmed_mean(updates, float(options["trim_fraction"]))
    if rule == "krum":
        return updates[krum_index(updates, int(options["byzantine"]))]
    if rule == "flag":
        return flag_step(updates, int(options["subspace_dim"]), float(options["lam"]))
    raise ValueError(
        f"aggregator must be one of mean, median, trimmed-mean, krum, flag; got {rule!r}"
    )


def flag_step(updates: torch.Tensor, subspace_dim: int, lam: float) -> torch.Tensor:
    """The Flag Aggregator's direction at the median norm of the updates (zero if it is zero)."""
    direction = flag_aggregate(updates, subspace_dim=subspace_dim, lam=lam)
    size = direction.norm()
    if size == 0:
        return direction
    return direction * (updates.norm(dim=1).median() / size)


def _mid_median(updates: torch.Tensor) -> torch.Tensor:
    """Median of an even count: the mean of the two middle values (torch gives the lower one)."""
    n = updates.shape[0]
    ordered = updates.sort(dim=0).values
    return 0.5 * (ordered[n // 2 - 1] + ordered[n // 2])
