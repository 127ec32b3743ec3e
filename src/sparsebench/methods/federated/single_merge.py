"""Single global merge (Zhu, Zhang, Wang, Zhou, Wang, "A Single Merging Suffices: Recovering
Server-based Learning Performance in Decentralized Learning", arXiv 2507.06542, 2025; ICLR 2026
as "On the Surprising Effectiveness of a Single Global Merging in Decentralized Learning";
authors' code Raiden-Zhu/ICLR-2026-Grokking-in-Decentralized-Learning, core/gossip_matrix.py).

Update rule: no server. Every round all nodes take `local_steps` SGD steps, then gossip with a
fresh random row-stochastic matrix: node i draws floor(r) distinct other nodes, plus one more
with probability r - floor(r), and replaces its model by the uniform average of its own and
theirs (the authors' `random` topology; r = `neighbors` counts peers beyond oneself, their
Figure 1 uses r = 0.2). Such sparse, row-stochastic mixing does not preserve the nodes' mean.
In the last round the sparse gossip is replaced by one fully connected exchange, the global
merge: every node sets x_i <- (1/N) sum_j x_j (the authors' truncate schedule with r_end =
N - 1 switched on for the final communication). Bytes: a node receiving the models of k peers
costs k fp32 models each way; the merge costs N - 1 per node.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch

from sparsebench.checks import check_range
from sparsebench.methods.federated.base import FederatedParams, Strategy
from sparsebench.registry import register
from sparsebench.seeds import derive


@dataclass(frozen=True)
class SingleMergeParams(FederatedParams):
    neighbors: float = 0.2
    init: Literal["shared", "independent"] = "shared"

    def __post_init__(self) -> None:
        super().__post_init__()
        check_range("neighbors", self.neighbors, 0, self.clients - 1)


@register("federated", "single-merge", params=SingleMergeParams)
class SingleMerge(Strategy):
    """Sparse random gossip during training, one global average after the last round."""

    execution = "gossip"
    merges_at_end = True

    def __init__(self, params: SingleMergeParams, seed: int) -> None:
        super().__init__(params, seed)
        self.generator = torch.Generator().manual_seed(derive(seed, "gossip-peers"))
        self.received = [0] * params.clients

    def mixing(self) -> torch.Tensor:
        """This round's row-stochastic W: row i is uniform over i and its drawn peers."""
        n, r = self.params.clients, self.params.neighbors
        w = torch.zeros(n, n, dtype=torch.float64)
        for i in range(n):
            extra = math.floor(r) + int(torch.rand(1, generator=self.generator) < r - math.floor(r))
            others = torch.tensor([j for j in range(n) if j != i])
            peers = others[torch.randperm(n - 1, generator=self.generator)[:extra]]
            w[i, torch.cat([torch.tensor([i]), peers])] = 1.0 / (extra + 1)
        return w

    def gossip(self, models: torch.Tensor, layout: list[int]) -> torch.Tensor:
        w = self.mixing()
        self.received = [int(row.count_nonzero()) - 1 for row in w]
        return (w @ models.double()).to(models.dtype)

    def merge(self, models: torch.Tensor) -> torch.Tensor:
        """The global merge: every node takes the uniform average of all nodes' models."""
        self.received = [self.params.clients - 1] * self.params.clients
        return models.mean(0, keepdim=True).expand_as(models).clone()

    def messages_per_node(self) -> list[int]:
        """Models each node received in the last exchange (gossip or merge)."""
        return self.received
