"""FedAdam (Reddi, Charles, Zaheer, Garrett, Rush, Konecny, Kumar, McMahan, "Adaptive Federated
Optimization", ICLR 2021, arXiv 2003.00295, Algorithm 2).

Update rule: clients train as in FedAvg; the server treats the mean change of the round's
clients, D = (1/|S|) sum_{i in S} (y_i - x) (the paper's unweighted mean; `weighting: samples`
weights client i by its n_i instead), as a pseudo-gradient and takes an Adam step with
adaptivity tau: m <- b1 m + (1 - b1) D; v <- b2 v + (1 - b2) D^2;
x <- x + server_lr * m / (sqrt(v) + tau), with m starting at 0, v at tau^2 (Algorithm 2's
v_{-1} >= tau^2) and no bias correction. Defaults follow the paper: b1 = 0.9, b2 = 0.99,
tau = 1e-3.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from sparsebench.checks import check_choice, check_range
from sparsebench.methods.federated.base import FederatedParams, Message, Strategy
from sparsebench.registry import register


@dataclass(frozen=True)
class FedAdamParams(FederatedParams):
    server_lr: float = 0.01
    beta1: float = 0.9
    beta2: float = 0.99
    tau: float = 1e-3
    weighting: Literal["uniform", "samples"] = "uniform"

    def __post_init__(self) -> None:
        super().__post_init__()
        check_range("server_lr", self.server_lr, 0.0, low_open=True)
        for name in ("beta1", "beta2"):
            check_range(name, getattr(self, name), 0.0, 1.0, high_open=True)
        check_range("tau", self.tau, 0.0, low_open=True)
        check_choice("weighting", self.weighting, ("uniform", "samples"))


@register("federated", "fedadam", params=FedAdamParams)
class FedAdam(Strategy):
    """Server-side Adam on the averaged client change (the pseudo-gradient)."""

    def __init__(self, params: FedAdamParams, seed: int) -> None:
        super().__init__(params, seed)
        self.m: torch.Tensor | None = None
        self.v: torch.Tensor | None = None

    def aggregate(
        self, global_vec: torch.Tensor, messages: list[Message], sizes: list[int]
    ) -> torch.Tensor:
        p = self.params
        weights = sizes if p.weighting == "samples" else [1] * len(sizes)
        delta = self.combine_deltas(messages, weights)
        if self.m is None or self.v is None:
            self.m = torch.zeros_like(delta)
            self.v = torch.full_like(delta, p.tau**2)
        self.m = p.beta1 * self.m + (1 - p.beta1) * delta
        self.v = p.beta2 * self.v + (1 - p.beta2) * delta.square()
        return global_vec + p.server_lr * self.m / (self.v.sqrt() + p.tau)
