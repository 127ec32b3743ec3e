"""Mask construction: magnitude, random, per-row and N:M masks, plus a parsed sparsity pattern.

A pattern is a short string (JaxPruner style): `"0.1"` keeps a 10% density, unstructured;
`"2:4"` keeps N=2 of every M=4 consecutive weights along the input dimension.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch

from sparsebench.checks import check_density

_NM = re.compile(r"^(\d+):(\d+)$")


@dataclass(frozen=True)
class NM:
    """Keep n of every m consecutive input weights."""

    n: int
    m: int

    @property
    def density(self) -> float:
        return self.n / self.m


def parse_nm(pattern: str) -> NM:
    match = _NM.match(pattern.strip())
    if not match:
        raise ValueError(f"N:M pattern must look like '2:4', got {pattern!r}")
    n, m = int(match[1]), int(match[2])
    if not 0 < n <= m:
        raise ValueError(f"N:M pattern needs 0 < N <= M, got {pattern!r}")
    return NM(n, m)


def keep_count(numel: int, density: float) -> int:
    """How many weights a layer keeps at `density`: the nearest integer, at least one."""
    check_density(density)
    return max(1, min(numel, round(density * numel)))


def topk_mask(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Boolean mask of the k largest scores (ties broken by index order, deterministic)."""
    flat = scores.flatten()
    mask = torch.zeros_like(flat, dtype=torch.bool)
    mask[torch.topk(flat, k, sorted=False).indices] = True
    return mask.view_as(scores)


def magnitude_mask(weight: torch.Tensor, density: float) -> torch.Tensor:
    """Keep the largest-|w| weights of one tensor at `density`."""
    return topk_mask(weight.detach().abs(), keep_count(weight.numel(), density))


def random_mask(shape: torch.Size, density: float, generator: torch.Generator) -> torch.Tensor:
    """Exactly keep_count(numel, density) ones at uniformly random positions."""
    numel = int(torch.Size(shape).numel())
    order = torch.randperm(numel, generator=generator)
    mask = torch.zeros(numel, dtype=torch.bool)
    mask[order[: keep_count(numel, density)]] = True
    return mask.view(shape)


def nm_mask(scores: torch.Tensor, nm: NM) -> torch.Tensor:
    """Keep the n highest scores in each group of m consecutive inputs of every output row.

    Rows are the first dimension (output units/channels). Linear weights group along their
    input features; convolution weights group along input channels at each kernel position
    (the layout sparse tensor cores use), so the input channel count must be divisible by m.
    """
    rows = scores.shape[0]
    channels_last = scores.detach().movedim(1, -1) if scores.dim() > 2 else scores.detach()
    if channels_last.shape[-1] % nm.m:
        raise ValueError(
            f"N:M {nm.n}:{nm.m} needs an input dimension divisible by {nm.m}, "
            f"got {channels_last.shape[-1]} for a tensor of shape {tuple(scores.shape)}"
        )
    groups = channels_last.reshape(rows, -1, nm.m)
    keep = torch.topk(groups, nm.n, dim=-1).indices
    mask = torch.zeros_like(groups, dtype=torch.bool).scatter_(-1, keep, True)
    mask = mask.reshape(channels_last.shape)
    return mask.movedim(-1, 1) if scores.dim() > 2 else mask


def row_mask(scores: torch.Tensor, density: float, pattern: NM | None) -> torch.Tensor:
    """Keep the highest scores of each output row: N of every M inputs, or a `density` share."""
    if pattern is not None:
        return nm_mask(scores, pattern)
    k = keep_count(scores.shape[1], density)
    keep = torch.topk(scores, k, dim=1).indices
    return torch.zeros_like(scores, dtype=torch.bool).scatter_(1, keep, True)


def fits_nm(weight: torch.Tensor, nm: NM) -> bool:
    """True when every output row splits into whole groups of M inputs."""
    return (weight.numel() // weight.shape[0]) % nm.m == 0
