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

from sparsebench.methods.federated.base import GossipParams, GossipStrategy
from sparsebench.registry import register


@register("federated", "dpsgd", params=GossipParams)
class Dpsgd(GossipStrategy):
    """Decentralized local SGD with gossip averaging on a fixed graph (all nodes every round)."""
