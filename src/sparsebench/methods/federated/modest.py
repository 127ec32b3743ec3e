"""MoDeST (de Vos, Dhasade, Kermarrec, Lavoie, Pouwelse, Sharma, "MoDeST: Bridging the Gap
between Federated and Decentralized Learning with Decentralized Sampling", arXiv 2302.13837,
later "Decentralized Learning Made Practical with Client Sampling"; authors' code
devos50/decentralized-learning, accdfl/dfl).

Update rule: no server. Every node ranks all nodes for round r by the hash of (seed, node id,
r) and takes the first `clients_per_round` (s) as the round's sample and the first
`aggregators` (a) as its aggregators; since the ranking depends only on shared values, every
node derives the same sample without talking to anyone (the authors hash "peer-round" with md5;
we add the run seed). The sample of round r trains from the model it received and sends its
trained model to the a aggregators of round r + 1 (themselves members of sample r + 1); each
aggregator averages the s models uniformly (the authors' FedAvg with equal weights) and sends
the average to the s members of sample r + 1, which train from it. All aggregators compute the
same average, so one model per round is evaluated. Bytes count each node-to-node transfer of
the fp32 model; a node handing a model to itself sends nothing. All nodes are online here
(the authors' churn handling, pings and aggregation timeouts are not simulated), so every
aggregator receives all s models (success_fraction = 1).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import torch

from sparsebench.checks import check_range
from sparsebench.methods.federated.base import FederatedParams, Strategy
from sparsebench.registry import register


@dataclass(frozen=True)
class ModestParams(FederatedParams):
    aggregators: int = 1

    def __post_init__(self) -> None:
        super().__post_init__()
        check_range("aggregators", self.aggregators, 1, self.clients_per_round)
        if self.aggregator != "mean":
            raise ValueError(f"aggregator must be 'mean' (uniform average), got {self.aggregator}")
        if self.byzantine_fraction != 0.0:
            raise ValueError(f"byzantine_fraction must be 0, got {self.byzantine_fraction}")


def ranking(nodes: list[int], round_: int, seed: int) -> list[int]:
    """The nodes ordered by md5(seed-node-round): the same list for any node computing it."""

    def key(node: int) -> bytes:
        return hashlib.md5(f"{seed}-{node}-{round_}".encode()).digest()

    return sorted(sorted(nodes), key=key)


@register("federated", "modest", params=ModestParams)
class Modest(Strategy):
    """Hash-derived sample trains; a few hash-derived aggregators average and forward."""

    execution = "sampled-gossip"

    def sample(self, round_: int, nodes: list[int] | None = None) -> list[int]:
        """Round `round_`'s training sample, as any node derives it from its view `nodes`."""
        view = list(range(self.params.clients)) if nodes is None else nodes
        return ranking(view, round_, self.seed)[: self.params.clients_per_round]

    def aggregators_of(self, round_: int) -> list[int]:
        """The nodes that average the models trained for round `round_` (sample's head)."""
        return self.sample(round_)[: self.params.aggregators]

    def average(self, trained: torch.Tensor) -> torch.Tensor:
        """The aggregators' model: the uniform mean of the sample's trained models [s, d]."""
        return trained.mean(0)

    @staticmethod
    def transfers(senders: list[int], receivers: list[int]) -> int:
        """Model transfers from every sender to every receiver, self-deliveries excluded."""
        return sum(s != r for s in senders for r in receivers)
