"""The contract of a federated strategy: what a client downloads, how its local gradient is
corrected, what it uploads, and how the server merges the uploads.

The engine owns rounds, client sampling, local minibatch steps, Byzantine attacks and byte
counting; a strategy only maps vectors to vectors, so the same strategy runs in the sequential
and the batched (vmap) simulator and can be checked on toy objectives without a model.
Messages are dicts of flat fp32 tensors; the uplink "delta" entry is the client's model change
y_i - x, the quantity robust aggregators and Byzantine attacks act on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch

from sparsebench.comm.aggregation import combine

Message = dict[str, torch.Tensor]


@dataclass(frozen=True)
class FederatedParams:
    """Shared by federated strategies: population, sample per round, partition, aggregation rule,
    the simulated Byzantine clients, and how clients are simulated (`vmap` batches a round's
    clients when the model allows it, else falls back to `sequential`; both give the same client
    models up to float rounding)."""

    clients: int = 100
    clients_per_round: int = 10
    partition: Literal["iid", "dirichlet", "shards", "natural"] = "dirichlet"
    alpha: float = 0.5
    classes_per_client: int = 2
    aggregator: Literal["mean", "median", "trimmed-mean", "krum"] = "mean"
    trim_fraction: float = 0.1
    byzantine_fraction: float = 0.0
    attack: Literal["sign-flip", "gaussian", "scaled"] = "sign-flip"
    attack_scale: float = 10.0
    simulation: Literal["vmap", "sequential"] = "vmap"

    def __post_init__(self) -> None:
        if not 1 <= self.clients_per_round <= self.clients:
            raise ValueError(
                f"clients_per_round must be in [1, clients={self.clients}], "
                f"got {self.clients_per_round}"
            )
        if self.alpha <= 0:
            raise ValueError(f"alpha must be > 0, got {self.alpha}")
        if self.classes_per_client < 1:
            raise ValueError(f"classes_per_client must be >= 1, got {self.classes_per_client}")
        if not 0.0 <= self.trim_fraction < 0.5:
            raise ValueError(f"trim_fraction must be in [0, 0.5), got {self.trim_fraction}")
        if not 0.0 <= self.byzantine_fraction < 1.0:
            raise ValueError(f"byzantine_fraction must be in [0, 1), got {self.byzantine_fraction}")
        if self.attack_scale < 0:
            raise ValueError(f"attack_scale must be >= 0, got {self.attack_scale}")


class Strategy:
    """FedAvg-shaped defaults: download x, no gradient correction, upload y_i - x, and set
    x <- x + aggregate(deltas) with sample-size weights (exactly the weighted model average)."""

    execution: Literal["synchronous", "buffered", "fixed-interval", "gossip", "sampled-gossip"] = (
        "synchronous"
    )
    """Which engine loop runs the strategy (see sparsebench.engines.federated)."""
    merges_at_end = False
    """Gossip strategies only: replace the last round's gossip by one global `merge`."""
    sam_rho = 0.0
    corrects_gradient = False  # True where gradient_correction returns a tensor
    # Budget fields the update rule depends on (checked when a grid is loaded), and why.
    budget_requirements: dict[str, Any] = {}
    budget_reason = ""

    def __init__(self, params: FederatedParams, seed: int) -> None:
        self.params = params
        self.seed = seed

    def broadcast(self, global_vec: torch.Tensor) -> Message:
        """What every sampled client downloads this round."""
        return {"model": global_vec}

    def gradient_correction(
        self, clients: list[int], local: torch.Tensor, global_vec: torch.Tensor
    ) -> torch.Tensor | None:
        """A term added to the clients' minibatch gradients ([C, d] for `local` of [C, d]).
        None means plain local SGD; a strategy that returns a tensor sets `corrects_gradient`."""
        return None

    def client_message(
        self, client: int, global_vec: torch.Tensor, local: torch.Tensor, steps: int, lr: float
    ) -> Message:
        """What client `client` uploads after `steps` local steps of rate `lr` ended at `local`."""
        return {"delta": local - global_vec}

    def weights(self, sizes: list[int]) -> torch.Tensor:
        """Aggregation weights for the mean: proportional to the clients' sample counts."""
        w = torch.tensor(sizes, dtype=torch.float32)
        return w / w.sum()

    def combine_deltas(self, messages: list[Message], sizes: list[int]) -> torch.Tensor:
        """The server's estimate of the mean update, through the configured (robust) rule."""
        deltas = torch.stack([m["delta"] for m in messages])
        return combine(
            deltas, self.weights(sizes), self.params.aggregator, self._robust_options(len(sizes))
        )

    def _robust_options(self, n: int) -> dict[str, float | int]:
        byzantine = int(self.params.byzantine_fraction * n)
        return {"trim_fraction": self.params.trim_fraction, "byzantine": byzantine}

    def aggregate(
        self, global_vec: torch.Tensor, messages: list[Message], sizes: list[int]
    ) -> torch.Tensor:
        """The next global parameter vector from the sampled clients' messages."""
        return global_vec + self.combine_deltas(messages, sizes)
