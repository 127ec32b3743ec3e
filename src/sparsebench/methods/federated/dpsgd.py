"""D-PSGD (Lian, Zhang, Zhang, Hsieh, Zhang, Liu, "Can Decentralized Algorithms Outperform
Centralized Algorithms? A Case Study for Decentralized Parallel Stochastic Gradient Descent",
NeurIPS 2017, arXiv 1705.09056), in its local-update form.

Update rule: no server. Each of the `clients` nodes keeps its own model x_i. Every round, every
node takes `local_steps` SGD steps on its own data, then the nodes gossip `gossip_steps` times:
X <- W X, with W a symmetric doubly stochastic matrix supported on a communication graph (ring,
2-D torus, or random d-regular). W is Metropolis-Hastings, W_ij = 1 / (1 + max(deg_i, deg_j))
for neighbours and W_ii = 1 - sum_j W_ij, or uniform, W_ij = 1 / (deg + 1) on a regular graph.
A doubly stochastic W keeps the nodes' average exactly, so only the disagreement (the consensus
distance) shrinks. Each gossip step, every node sends its fp32 model to each neighbour.
The engine evaluates the nodes' average model. Nodes start from one shared initialisation
(`init: shared`, D-PSGD's x_i = x_0) or each from its own (`independent`, the gossip-learning
setting in which averaging uncorrelated models shrinks their variance; see vcavg.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import torch

from sparsebench.methods.federated.base import FederatedParams, Strategy
from sparsebench.registry import register

if TYPE_CHECKING:
    import networkx as nx


@dataclass(frozen=True)
class DpsgdParams(FederatedParams):
    topology: Literal["ring", "torus", "random-regular"] = "ring"
    degree: int = 4
    weights: Literal["metropolis", "uniform"] = "metropolis"
    gossip_steps: int = 1
    init: Literal["shared", "independent"] = "shared"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.gossip_steps < 1:
            raise ValueError(f"gossip_steps must be >= 1, got {self.gossip_steps}")
        if not 1 <= self.degree < self.clients or (self.clients * self.degree) % 2:
            raise ValueError(
                f"degree must be in [1, clients) with clients * degree even, got {self.degree}"
            )


def topology_graph(kind: str, nodes: int, degree: int, seed: int) -> nx.Graph:
    """The communication graph: a cycle, a wrap-around grid as square as `nodes` allows, or a
    seeded random `degree`-regular graph. (networkx is imported here, not at module level, so
    loading the registry stays fast.)"""
    import networkx as nx

    if kind == "ring":
        return nx.cycle_graph(nodes)
    if kind == "torus":
        rows = max(r for r in range(1, math.isqrt(nodes) + 1) if nodes % r == 0)
        grid = nx.grid_2d_graph(rows, nodes // rows, periodic=True)
        return nx.convert_node_labels_to_integers(nx.Graph(grid), ordering="sorted")
    return nx.random_regular_graph(degree, nodes, seed=seed)


def mixing_matrix(graph: nx.Graph, weights: str) -> torch.Tensor:
    """Symmetric doubly stochastic W on `graph` (Metropolis-Hastings or uniform)."""
    n = graph.number_of_nodes()
    deg = dict(graph.degree())
    if weights == "uniform" and len(set(deg.values())) != 1:
        raise ValueError("uniform gossip weights need a regular graph; use metropolis")
    w = torch.zeros(n, n, dtype=torch.float64)
    for i, j in graph.edges():
        if i == j:
            continue
        value = 1.0 / (1 + (deg[i] if weights == "uniform" else max(deg[i], deg[j])))
        w[i, j] = w[j, i] = value
    w += torch.diag(1.0 - w.sum(1))
    return w


@register("federated", "dpsgd", params=DpsgdParams)
class Dpsgd(Strategy):
    """Decentralized local SGD with gossip averaging on a fixed graph (all nodes every round)."""

    execution = "gossip"

    def __init__(self, params: DpsgdParams, seed: int) -> None:
        super().__init__(params, seed)
        self.graph = topology_graph(params.topology, params.clients, params.degree, seed)
        self.w = mixing_matrix(self.graph, params.weights)

    def gossip(self, models: torch.Tensor, layout: list[int]) -> torch.Tensor:
        """`gossip_steps` rounds of neighbour averaging, X <- W X (in float64, then back).
        `layout` (the layers' sizes in the flat vector) is for strategies that work per layer."""
        x = models.double()
        for _ in range(self.params.gossip_steps):
            x = self.mix(x, layout)
        return x.to(models.dtype)

    def mix(self, models: torch.Tensor, layout: list[int]) -> torch.Tensor:
        """One gossip step."""
        return self.w @ models

    def messages_per_node(self) -> list[int]:
        """Model copies each node sends (= receives) per round: degree times gossip steps."""
        return [d * self.params.gossip_steps for _, d in sorted(self.graph.degree())]
