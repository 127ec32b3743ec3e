"""Variance-corrected gossip averaging (Tian, Al-Ars, Kitsak, Hofstee, "Vanishing Variance
Problem in Fully Decentralized Neural-Network Systems", arXiv 2404.04616, 2024).

Update rule: D-PSGD (local steps, then gossip on a doubly stochastic W), except that after each
gossip step every node rescales each layer of its mixed model about the layer's mean so that the
layer's variance matches the variance the mixed-in models had: for node i and layer l, with
m = mean(x_i[l]), v = var(x_i[l]) after mixing and t = sum_j W_ij var(x_j[l]) before it,
x_i[l] <- m + (x_i[l] - m) * sqrt((t + eps) / (v + eps)), eps = 1e-4 (the authors' "follow
others" rule; their plain mean of received variances is the uniform-W case). Averaging
uncorrelated models shrinks the weights' spread below the initialisation scale; the rescaling
undoes that. Single-element layers are left alone. Unlike plain gossip, the nodes' average is
not preserved.
"""

from __future__ import annotations

import torch

from sparsebench.methods.federated.base import GossipParams, GossipStrategy
from sparsebench.registry import register

EPS = 1e-4


@register("federated", "vc-avg", params=GossipParams)
class VarianceCorrectedGossip(GossipStrategy):
    """Gossip averaging that restores each layer's pre-mixing variance."""

    def mix(self, models: torch.Tensor, layout: list[int]) -> torch.Tensor:
        pieces = torch.split(models, layout, dim=1)
        out = []
        for piece, mixed in zip(pieces, torch.split(self.w @ models, layout, dim=1), strict=True):
            if piece.shape[1] < 2:
                out.append(mixed)
                continue
            target = self.w @ piece.var(dim=1)
            mean = mixed.mean(dim=1, keepdim=True)
            scale = ((target + EPS) / (mixed.var(dim=1) + EPS)).sqrt()[:, None]
            out.append(mean + (mixed - mean) * scale)
        return torch.cat(out, dim=1)
