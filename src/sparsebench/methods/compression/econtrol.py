"""Top-k with EControl (Gao, Islamov, Stich, "EControl: Fast Distributed Optimization with
Compression and Error Control", ICLR 2024, arXiv 2311.05645, Algorithm 1 "EControl").

Update rule. Worker i keeps an error e_i and a gradient estimate h_i, both zero at the start.
Given its gradient g_i at the current x it sends one compressed message

    Delta_i = topk(eta * e_i + g_i - h_i)          (fp32 values, int32 indices)

and updates  e_i <- e_i + g_i - h_i - Delta_i  and  h_i <- h_i + Delta_i. The server keeps
h = mean_i h_i by adding mean_i Delta_i, steps with x <- x - gamma * h (gamma: the budget's
optimizer), and broadcasts mean_i Delta_i sparsely (each worker adds it to its copy of h).

eta sets how much of the accumulated error is fed back into the message. eta = 0 is EF21 on
the same compressor (topk-ef21 in this package, bit for bit: the error is kept but never
read). eta = 1 is EF14's error feedback applied to EF21's message g_i - h_i. Whatever eta,
e_i <- e_i + g_i - h_i' with h_i' the estimate the server steps with, so e_i is the sum of
what worker i's gradients asked for minus what was applied: EF14's memory, nothing lost.

Two choices here that a reader of the paper should know: the step uses the estimate that
already includes this round's Delta (as topk-ef21 does, so the gradient acts on the step it
was computed for), and h_i starts at zero rather than at an uncompressed first gradient, so
every message is compressed and counted and eta = 0 coincides with topk-ef21 from step 0.

Source caveat: the paper's algorithm box and experiment settings could not be read offline
(only its abstract); the rule above follows the abstract and two public third-party
implementations that cite it, and its tests check the properties the paper states (EF21 at
eta = 0, nothing lost). Defaults: density 0.01 (the family's); eta 0.1 is this package's
choice (between EF21 at 0 and EF14 on the difference at 1), not the paper's: check it against
arXiv 2311.05645 before quoting a result.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from sparsebench.checks import check_range
from sparsebench.comm.compressors import Compressor, TopK, sparse_payload
from sparsebench.comm.payload import Payload
from sparsebench.methods.compression.base import CodecMethod, DensityParams
from sparsebench.registry import register
from sparsebench.spec import Regime


@dataclass(frozen=True)
class EControlParams(DensityParams):
    """`eta` in [0, 1]: the share of the accumulated error fed back into each message
    (0: EF21; 1: EF14 on EF21's message)."""

    eta: float = 0.1

    def __post_init__(self) -> None:
        super().__post_init__()
        check_range("eta", self.eta, 0.0, 1.0)


class EControlSender:
    """One worker's EControl state: its error e_i and gradient estimate h_i (zero at start)."""

    def __init__(self, compressor: Compressor, eta: float) -> None:
        self.compressor = compressor
        self.eta = eta
        self.error: torch.Tensor | None = None
        self.estimate: torch.Tensor | None = None

    def compress(self, x: torch.Tensor) -> Payload:
        error = torch.zeros_like(x) if self.error is None else self.error
        estimate = torch.zeros_like(x) if self.estimate is None else self.estimate
        change = x - estimate
        # eta = 0 sends EF21's message itself (adding 0 * e would turn a -0.0 into +0.0)
        target = change if self.eta == 0 else change + self.eta * error
        payload = self.compressor.compress(target)
        sent = self.compressor.decompress(payload).view_as(x)
        self.error = error + (change - sent)
        self.estimate = estimate + sent
        return payload


@register(
    "compression",
    "econtrol",
    params=EControlParams,
    regime=Regime("sgd", (), "Gao, Islamov, Stich 2024 (EControl), Algorithm 1: SGD"),
)
class EControl(CodecMethod):
    """EControl's error and estimate recursion around top-k; the server steps with mean h_i."""

    def __init__(self, params: EControlParams, seed: int) -> None:
        super().__init__(params, seed)
        self.estimate: torch.Tensor | None = None

    def make_sender(self, worker: int) -> EControlSender:
        return EControlSender(TopK(self.params.density), self.params.eta)

    def server_update(self, mean: torch.Tensor) -> torch.Tensor:
        self.estimate = mean.clone() if self.estimate is None else self.estimate + mean
        return self.estimate.clone()

    def downlink(self, mean: torch.Tensor, payloads: list[Payload]) -> list[int]:
        return [sparse_payload(mean).nbytes] * len(payloads)
