"""FedProx (Li, Sahu, Zaheer, Sanjabi, Talwalkar, Smith, "Federated Optimization in
Heterogeneous Networks", MLSys 2020, arXiv 1812.06127).

Update rule: client k minimises its loss plus a proximal term, f_k(w) + (mu/2)||w - x||^2, with x
the global model it downloaded, so every local gradient gains mu (w - x), which pulls local
models back towards x on heterogeneous data. The server aggregates like FedAvg (sample-size
weighted mean of the models). mu = 0 is FedAvg exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from sparsebench.checks import check_range
from sparsebench.methods.federated.base import FederatedParams, Strategy
from sparsebench.registry import register


@dataclass(frozen=True)
class FedProxParams(FederatedParams):
    mu: float = 0.01

    def __post_init__(self) -> None:
        super().__post_init__()
        check_range("mu", self.mu, 0.0)


@register("federated", "fedprox", params=FedProxParams)
class FedProx(Strategy):
    """FedAvg with a proximal term mu/2 ||w - x||^2 in every client's local objective."""

    def __init__(self, params: FedProxParams, seed: int) -> None:
        super().__init__(params, seed)
        self.corrects_gradient = params.mu > 0

    def gradient_correction(
        self, clients: list[int], local: torch.Tensor, global_vec: torch.Tensor
    ) -> torch.Tensor:
        return torch.sub(local, global_vec).mul_(self.params.mu)  # mu (w - x), one buffer
