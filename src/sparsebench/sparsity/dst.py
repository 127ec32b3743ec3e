"""Dynamic sparse training mechanics shared by SET, RigL and Sparse-IFT: one drop/grow step on a
layer, the grow scores (random for SET, dense-gradient magnitude for RigL), and the Sparse
Architecture Divergence between two sets of masks.

A drop/grow step keeps the layer's active count exactly: drop the k active weights of smallest
magnitude, then grow k positions among those inactive after the drop (so a just-dropped position
may come back, as in google-research/rigl), chosen by the highest grow score.
"""

from __future__ import annotations

import torch


def drop_and_grow(
    weight: torch.Tensor, mask: torch.Tensor, k: int, grow_scores: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """New mask after dropping k smallest-|w| active weights and growing k top-score inactive.

    Returns (new_mask, grown): `grown` marks positions that became active in this step and whose
    weights the caller must set to zero.
    """
    flat_mask = mask.flatten()
    k = min(k, int(flat_mask.sum()), flat_mask.numel() - int(flat_mask.sum()))
    if k <= 0:
        return mask.clone(), torch.zeros_like(mask)
    magnitude = weight.detach().abs().flatten().masked_fill(~flat_mask, float("inf"))
    dropped = torch.topk(magnitude, k, largest=False).indices
    kept = flat_mask.clone()
    kept[dropped] = False
    candidates = grow_scores.detach().flatten().masked_fill(kept, float("-inf"))
    grown_idx = torch.topk(candidates, k).indices
    new_mask = kept.clone()
    new_mask[grown_idx] = True
    grown = torch.zeros_like(flat_mask)
    grown[grown_idx] = True
    return new_mask.view_as(mask), grown.view_as(mask)


def random_scores(shape: torch.Size, generator: torch.Generator) -> torch.Tensor:
    """SET's grow score: i.i.d. uniform, so the grown set is a uniform random k-subset."""
    return torch.rand(shape, generator=generator)


def gradient_scores(name: str, weight: torch.nn.Parameter) -> torch.Tensor:
    """RigL's grow score (Evci et al. 2020): |dense gradient| of the current minibatch."""
    if weight.grad is None:
        raise RuntimeError(f"RigL growth needs the dense gradient of {name}; none was computed")
    return weight.grad.abs()


def sparse_architecture_divergence(
    before: dict[str, torch.Tensor], after: dict[str, torch.Tensor]
) -> tuple[int, float]:
    """SAD (Zhou et al. 2021): how many mask entries differ, and that count over all entries."""
    changed = sum(int((before[n] != after[n]).sum()) for n in before)
    total = sum(before[n].numel() for n in before)
    return changed, changed / total


@torch.no_grad()
def zero_optimizer_state(optimizer: torch.optim.Optimizer | None, param, where) -> None:
    """Zero every per-element optimizer buffer (momentum, Adam moments) at `where`, so a grown
    weight starts from a clean state, as the RigL reference resets momentum of new connections."""
    if optimizer is None:
        return
    for value in optimizer.state.get(param, {}).values():
        if torch.is_tensor(value) and value.shape == param.shape:
            value.masked_fill_(where, 0.0)
