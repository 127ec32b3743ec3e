"""FedBuff (Nguyen, Malik, Zhan, Yousefpour, Rabbat, Malek, Huba, "Federated Learning with
Buffered Asynchronous Aggregation", AISTATS 2022, arXiv 2106.06639).

Update rule: `clients_per_round` clients train at once, each on the model version it downloaded.
Whenever one finishes, its update D_i = y_i - x_(its version) enters a buffer with weight
s(tau) = 1 / sqrt(1 + tau), tau its staleness (server versions since its download), and an idle
client is started on the current model. Once `buffer_size` (K) updates are in, the server sets
x <- x + server_lr * (1/K) sum_i s(tau_i) D_i and empties the buffer. Time is simulated: client i
needs speed_i * local_steps time units, speed_i drawn once per client from the configured
distribution (all 1 for `constant`, so with K = clients_per_round every update has staleness 0
and FedBuff is FedAvg with equal weights). Clients that finish at the same instant are all
buffered before new ones start.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from sparsebench.checks import check_range
from sparsebench.comm.aggregation import combine
from sparsebench.comm.attacks import OMNISCIENT, PER_CLIENT
from sparsebench.methods.federated.base import FederatedParams, Strategy
from sparsebench.registry import register


@dataclass(frozen=True)
class FedBuffParams(FederatedParams):
    buffer_size: int = 10
    server_lr: float = 1.0
    speed_distribution: Literal["constant", "lognormal", "exponential"] = "lognormal"
    speed_sigma: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        check_range("buffer_size", self.buffer_size, 1)
        check_range("server_lr", self.server_lr, 0.0, low_open=True)
        if self.attack in OMNISCIENT and self.byzantine_fraction > 0:
            raise ValueError(
                f"attack {self.attack!r} needs a round of uploads to see; FedBuff aggregates "
                f"one client at a time (valid attacks: {', '.join(PER_CLIENT)})"
            )
        check_range("speed_sigma", self.speed_sigma, 0.0)


def staleness_weight(staleness: int) -> float:
    return 1.0 / (1.0 + staleness) ** 0.5


@register("federated", "fedbuff", params=FedBuffParams)
class FedBuff(Strategy):
    """Asynchronous clients, staleness-weighted buffer of K updates per server step."""

    execution = "buffered"

    def client_speeds(self, seed: int) -> torch.Tensor:
        """Time per local step of every client (lognormal(0, sigma), exponential(1) or 1)."""
        p = self.params
        g = torch.Generator().manual_seed(seed)
        if p.speed_distribution == "constant":
            return torch.ones(p.clients, dtype=torch.float64)
        if p.speed_distribution == "exponential":
            u = torch.rand(p.clients, generator=g, dtype=torch.float64)
            return -torch.log1p(-u)
        z = torch.randn(p.clients, generator=g, dtype=torch.float64)
        return torch.exp(p.speed_sigma * z)

    def aggregate_buffer(
        self, global_vec: torch.Tensor, deltas: list[torch.Tensor], staleness: list[int]
    ) -> torch.Tensor:
        """x + server_lr * (1/K) sum_i s(tau_i) D_i, through the configured aggregator."""
        weights = [staleness_weight(s) for s in staleness]
        scaled = torch.stack([w * d for w, d in zip(weights, deltas, strict=True)])
        uniform = torch.full((len(deltas),), 1.0 / len(deltas))
        options = self._robust_options(len(deltas))
        step = combine(scaled, uniform, self.params.aggregator, options)
        return global_vec + self.params.server_lr * step
