"""Layer-wise density allocation: uniform, or Erdős–Rényi-Kernel (ERK).

ERK (Evci et al. 2020, after Mocanu et al.'s ER) gives layer l a density proportional to
sum(shape_l) / prod(shape_l), scaled so that the kept count over all layers equals the global
density; a layer that would exceed density 1 is made dense and the rest re-scaled, as in
google-research/rigl `sparse_utils.get_sparsities`.
"""

from __future__ import annotations

from typing import Literal, get_args

import torch

from sparsebench.checks import check_choice

Allocation = Literal["uniform", "erk"]


def allocate(
    shapes: dict[str, torch.Size], density: float, allocation: Allocation
) -> dict[str, float]:
    """Density per layer (by name) whose kept counts add up to `density` of all weights."""
    check_choice("allocation", allocation, get_args(Allocation))
    if allocation == "uniform":
        return {name: density for name in shapes}
    return erk_densities(shapes, density)


def erk_densities(shapes: dict[str, torch.Size], density: float) -> dict[str, float]:
    numels = {name: int(torch.Size(s).numel()) for name, s in shapes.items()}
    raw = {name: sum(s) / numels[name] for name, s in shapes.items()}
    total = sum(numels.values())
    dense: set[str] = set()
    while True:
        budget = density * total - sum(numels[n] for n in dense)
        weighted = sum(raw[n] * numels[n] for n in shapes if n not in dense)
        scale = budget / weighted
        over = {n for n in shapes if n not in dense and scale * raw[n] > 1.0}
        if not over:
            break
        dense |= over
    return {n: 1.0 if n in dense else scale * raw[n] for n in shapes}
