"""FedFix (Fraboni, Vidal, Kameni, Lorenzi, "A General Theory for Federated Optimization with
Asynchronous and Heterogeneous Clients Updates", JMLR 2023, arXiv 2206.10189).

Update rule: a fixed set of `clients_per_round` clients (all of them in the paper) works without
pause; client i needs tau_i = speed_i * local_steps units of simulated time per local work.
The server aggregates at the fixed times n * dt (dt = interval * local_steps), not when clients
arrive: the clients that finished since the last aggregation, S_n, contribute
    x <- x + server_lr * sum_{i in S_n} ceil(tau_i / dt) * p_i * (y_i - x_(version i started on))
and receive the new model at that instant; the others keep working on their stale model. A
client therefore contributes once every ceil(tau_i / dt) aggregations, and the factor
ceil(tau_i / dt) makes its expected weight per aggregation p_i (the authors' "weight" policy):
FedFix optimises the federated objective sum_i p_i f_i despite the speed differences.
p_i is the client's share of the active set's samples (or 1 / |active| for `uniform`, the
authors' experiments). With equal speeds and interval = 1 (dt = one local work), every client
contributes each time with weight p_i: synchronous FedAvg. Speeds are drawn once per client:
`linear` is the authors' F-X scenario (speed_i = 1 - i * spread / (clients - 1), the fastest
100 * spread % faster than the slowest); `lognormal`, `exponential`, `constant` as in FedBuff.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch

from sparsebench.checks import check_range
from sparsebench.methods.federated.base import FederatedParams, Strategy
from sparsebench.registry import register


@dataclass(frozen=True)
class FedFixParams(FederatedParams):
    interval: float = 1.0
    server_lr: float = 1.0
    importance: Literal["samples", "uniform"] = "samples"
    speed_distribution: Literal["linear", "lognormal", "exponential", "constant"] = "linear"
    speed_spread: float = 0.5
    speed_sigma: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        check_range("interval", self.interval, 0.0, low_open=True)
        check_range("server_lr", self.server_lr, 0.0, low_open=True)
        check_range("speed_spread", self.speed_spread, 0.0, 1.0, high_open=True)
        check_range("speed_sigma", self.speed_sigma, 0.0)
        if self.aggregator != "mean":
            raise ValueError(f"aggregator must be 'mean' (weighted sum), got {self.aggregator}")


@register("federated", "fedfix", params=FedFixParams)
class FedFix(Strategy):
    """Aggregate at fixed time intervals whatever has arrived, weighted by ceil(tau_i / dt) p_i."""

    execution = "fixed-interval"

    def __init__(self, params: FedFixParams, seed: int) -> None:
        super().__init__(params, seed)
        self.speeds = torch.ones(params.clients, dtype=torch.float64)
        self.importance: dict[int, float] = {}

    def client_speeds(self, seed: int) -> torch.Tensor:
        """Time per local step of every client; kept for the aggregation weights."""
        p = self.params
        g = torch.Generator().manual_seed(seed)
        if p.speed_distribution == "linear":
            steps = torch.arange(p.clients, dtype=torch.float64) / max(p.clients - 1, 1)
            self.speeds = 1.0 - p.speed_spread * steps[torch.randperm(p.clients, generator=g)]
        elif p.speed_distribution == "exponential":
            self.speeds = -torch.log1p(-torch.rand(p.clients, generator=g, dtype=torch.float64))
        elif p.speed_distribution == "lognormal":
            z = torch.randn(p.clients, generator=g, dtype=torch.float64)
            self.speeds = torch.exp(p.speed_sigma * z)
        else:
            self.speeds = torch.ones(p.clients, dtype=torch.float64)
        return self.speeds

    def interval_length(self, local_steps: int) -> float:
        return self.params.interval * local_steps

    def set_population(self, clients: list[int], sizes: list[int]) -> None:
        """The active clients and their importance p_i (sample share, or uniform)."""
        w = self.weights(sizes) if self.params.importance == "samples" else None
        for k, client in enumerate(clients):
            self.importance[client] = float(w[k]) if w is not None else 1.0 / len(clients)

    def period(self, client: int, local_steps: int) -> int:
        """ceil(tau_i / dt): how many aggregations one local work of the client spans."""
        tau = float(self.speeds[client]) * local_steps
        return max(1, math.ceil(tau / self.interval_length(local_steps) - 1e-9))

    def aggregate_interval(
        self,
        global_vec: torch.Tensor,
        deltas: list[torch.Tensor],
        clients: list[int],
        local_steps: int,
    ) -> torch.Tensor:
        """x + server_lr * sum_i ceil(tau_i / dt) p_i D_i over the clients that arrived."""
        step = torch.zeros_like(global_vec)
        for delta, client in zip(deltas, clients, strict=True):
            step += self.period(client, local_steps) * self.importance[client] * delta
        return global_vec + self.params.server_lr * step
