"""SCAFCOM (Huang, Li, Li, "Stochastic Controlled Averaging for Federated Learning with
Communication Compression", ICLR 2024, arXiv 2308.08165): single-uplink SCAFFOLD for biased
compressors (top-k, scaled sign), made robust to the bias by a local momentum.

Update rule. Local steps are SCAFFOLD's (y <- y - lr (g_i(y) - c_i + c), K steps from x). The
client keeps a momentum v_i (zero at start) of its mean local gradient, which it reads off its
trajectory as (x - y_i) / (K lr) + c_i - c:
    v_i <- (1 - beta) v_i + beta ((x - y_i) / (K lr) + c_i - c)
    d_i = C(v_i - c_i),  c_i <- c_i + d_i                           (client; uploads d_i)
    x <- x - server_lr * K * lr * (c + (1/|S|) sum_{i in S} d_i)      (server, as SCALLION)
    c <- c + (1/N) sum_{i in S} d_i
Compressing the gap between the momentum and the control (not the raw update) is what lets a
biased C work: c_i chases v_i, so the compressed quantity shrinks as training settles. With
beta = 1 and C = identity this is SCAFFOLD (option II) at half its uplink.

Provenance: the paper's algorithm box could not be read here; this rule is the one in a public
third-party Flower implementation of SCAFCOM (Dawitkiros/SA-PEF, sapef_main/sapef/client_app.py:
momentum on the round's mean gradient, payload C(v_i - c_i), c_i += payload, SCALLION's server
step with alpha = 1; beta = 0.2 hard-coded there, our default, not confirmed from the paper; v_i
starts at zero there and here). At beta = 1 with C = identity it is exactly SCAFFOLD (checked by
its test, iterate for iterate). Plain SGD local steps only, as SCALLION."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from sparsebench.checks import check_range
from sparsebench.methods.federated.base import (
    CompressedControlParams,
    SingleUplinkScaffold,
    Uploads,
)
from sparsebench.registry import register


@dataclass(frozen=True)
class ScafcomParams(CompressedControlParams):
    compressor: Literal["identity", "topk", "sign"] = "topk"
    beta: float = 0.2

    def __post_init__(self) -> None:
        super().__post_init__()
        check_range("beta", self.beta, 0.0, 1.0, low_open=True)


@register("federated", "scafcom", params=ScafcomParams)
class Scafcom(SingleUplinkScaffold):
    """d_i = C(v_i - c_i) with v_i a momentum of the client's mean local gradient."""

    def __init__(self, params: ScafcomParams, seed: int) -> None:
        super().__init__(params, seed)
        self.momentum: dict[int, torch.Tensor] = {}

    def innovation(
        self, client: int, global_vec: torch.Tensor, local: torch.Tensor, steps: int, lr: float
    ) -> torch.Tensor:
        c, c_i = self._control(global_vec), self._client_control(client, global_vec)
        mean_grad = (global_vec - local) / (steps * lr) + c_i - c
        beta = self.params.beta
        v = (1 - beta) * self.momentum.get(client, torch.zeros_like(global_vec)) + beta * mean_grad
        self.momentum[client] = v
        return v - c_i

    def innovations(self, up: Uploads, global_vec: torch.Tensor) -> torch.Tensor:
        """`innovation` of every client at once, in `up.trained`'s storage: the mean gradients
        together ((x - y) / (K lr) is exactly (y - x) / -(K lr): IEEE rounding is symmetric in
        sign), then each client's momentum row by row (each its own new tensor)."""
        c, (c_i, _) = self._control(global_vec), self._round_controls(up.clients, global_vec)
        beta = self.params.beta
        mean_grads = up.trained.sub_(global_vec).div_(-(up.steps * up.lr))
        scaled = mean_grads.add_(c_i).sub_(c).mul_(beta)
        zero = torch.zeros_like(global_vec)
        for client, row, control in zip(up.clients, scaled, c_i, strict=True):
            v = self.momentum.get(client, zero).mul(1 - beta).add_(row)
            self.momentum[client] = v
            torch.sub(v, control, out=row)
        return scaled
