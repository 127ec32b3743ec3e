"""SCALLION (Huang, Li, Li, "Stochastic Controlled Averaging for Federated Learning with
Communication Compression", ICLR 2024, arXiv 2308.08165): SCAFFOLD with ONE compressed uplink
vector per client, for unbiased compressors (rand-k, QSGD).

Update rule. Local steps are SCAFFOLD's: a sampled client i downloads (x, c) and takes K steps
y <- y - lr (g_i(y) - c_i + c). The paper's observation is that option II's two uplink vectors
are redundant: with D_i = (x - y_i) / (K lr) - c (= the mean local gradient minus c_i),
SCAFFOLD's control change is c_i+ - c_i = D_i and its model change is y_i - x = -K lr (c + D_i),
so one vector D_i suffices. SCALLION compresses it:
    d_i = C(alpha * D_i),  c_i <- c_i + d_i                         (client; uploads d_i)
    x <- x - server_lr * K * lr * (c + (1/|S|) sum_{i in S} d_i)      (server)
    c <- c + (1/N) sum_{i in S} d_i
so c stays the mean of all N client controls. With C = identity and alpha = 1 this is exactly
SCAFFOLD (option II) at half its uplink (checked by its test, iterate for iterate). alpha < 1
damps the compression noise entering the controls. The paper's alpha is the `control_alpha` param
(`alpha` is the Dirichlet partition's); the default 0.1 is the third-party implementation's.

Provenance: the paper's algorithm box could not be read here. The rule above is the exact
algebra of SCAFFOLD option II plus the placement of C and alpha in a public third-party Flower
implementation (Dawitkiros/SA-PEF, sapef_main/sapef/client_app.py and
strategies/scaffold_like.py: client `delta = alpha * ((x - y_K) / (lr K) - c)`, compressed,
added to c_i; server `x -= gamma * (mean(d) + c)`, `c += (|S|/N) mean(d)`); their global rate
gamma is server_lr * K * lr here. Unverified against the paper: whether alpha also scales the
model step (as here) or only the control updates (a DIANA-style reading, x stepped by c + mean
C(D_i)); both coincide at alpha = 1. For the unbiased compressors allowed, C(alpha D) and alpha
C(D) coincide (same randomness), so where alpha sits inside the message does not matter. The
rule reads the mean gradient off the trajectory, so it needs plain SGD local steps: a grid with
another optimizer or momentum is refused when it loads. Messages are combined by a plain mean
(no robust aggregator, no Byzantine clients: the server needs every client's exact compressed
innovation)."""

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
class ScallionParams(CompressedControlParams):
    compressor: Literal["identity", "randk", "qsgd"] = "randk"
    control_alpha: float = 0.1

    def __post_init__(self) -> None:
        super().__post_init__()
        check_range("control_alpha", self.control_alpha, 0.0, 1.0, low_open=True)


@register("federated", "scallion", params=ScallionParams)
class Scallion(SingleUplinkScaffold):
    """d_i = C(alpha ((x - y_i) / (K lr) - c)) with an unbiased compressor C."""

    def innovation(
        self, client: int, global_vec: torch.Tensor, local: torch.Tensor, steps: int, lr: float
    ) -> torch.Tensor:
        c = self._control(global_vec)
        return self.params.control_alpha * ((global_vec - local) / (steps * lr) - c)

    def innovations(self, up: Uploads, global_vec: torch.Tensor) -> torch.Tensor:
        """`innovation` of every client at once, in `up.trained`'s storage: (x - y) / (K lr) is
        exactly (y - x) / -(K lr) (IEEE rounding is symmetric in sign)."""
        c = self._control(global_vec)
        scaled = up.trained.sub_(global_vec).div_(-(up.steps * up.lr)).sub_(c)
        return scaled.mul_(self.params.control_alpha)
