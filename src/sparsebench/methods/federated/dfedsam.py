"""DFedSAM (Shi, Shen, Wei, Sun, Yuan, Wang, Tao, "Improving the Model Consistency of
Decentralized Federated Learning", ICML 2023, arXiv 2302.04083).

Update rule: D-PSGD (see dpsgd.py) whose local steps are sharpness-aware (Foret et al., SAM,
ICLR 2021): at each local step a node computes its minibatch gradient g at w, then the gradient
at the perturbed point w + rho g / ||g|| on the same minibatch, and steps with that second
gradient from w. The flatter local models this favours are meant to stay closer to each other
(better consensus) before the nodes gossip with a doubly stochastic W. Two gradient evaluations
per local step; communication as in D-PSGD. gossip_steps > 1 is the paper's DFedSAM-MGS
(multiple gossip steps).
"""

from __future__ import annotations

from dataclasses import dataclass

from sparsebench.checks import check_range
from sparsebench.methods.federated.base import GossipParams, GossipStrategy
from sparsebench.registry import register


@dataclass(frozen=True)
class DfedsamParams(GossipParams):
    rho: float = 0.05

    def __post_init__(self) -> None:
        super().__post_init__()
        check_range("rho", self.rho, 0.0, low_open=True)


@register("federated", "dfedsam", params=DfedsamParams)
class Dfedsam(GossipStrategy):
    """Decentralized gossip with SAM local steps."""

    def __init__(self, params: DfedsamParams, seed: int) -> None:
        super().__init__(params, seed)
        self.sam_rho = params.rho
