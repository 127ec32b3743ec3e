"""Top-k with EF21 (Richtarik, Sokolov, Fatkhullin, "EF21: A New, Simpler, Theoretically
Better, and Practically Faster Error Feedback", NeurIPS 2021, arXiv 2106.05203).

Update rule: worker i keeps a gradient estimate g_i (zero at start) and sends
c_i = topk(grad_i - g_i) as (fp32 value, int32 index) pairs, then g_i <- g_i + c_i. The server
keeps g = mean_i g_i by adding mean_i c_i, steps with g, and broadcasts mean_i c_i sparsely
(each worker adds it to its own copy of g).
"""

from __future__ import annotations

import torch

from sparsebench.comm.compressors import TopK, sparse_payload
from sparsebench.comm.feedback import EF21
from sparsebench.comm.payload import Payload
from sparsebench.methods.compression.base import CodecMethod, DensityParams
from sparsebench.registry import register
from sparsebench.spec import Regime


@register(
    "compression",
    "topk-ef21",
    params=DensityParams,
    regime=Regime("sgd", (), "Richtarik et al. 2021 (EF21): SGD"),
)
class TopKEF21(CodecMethod):
    """EF21 state recursion around top-k."""

    def __init__(self, params: DensityParams, seed: int) -> None:
        super().__init__(params, seed)
        self.estimate: torch.Tensor | None = None

    def make_sender(self, worker: int) -> EF21:
        return EF21(TopK(self.params.density))

    def server_update(self, mean: torch.Tensor) -> torch.Tensor:
        self.estimate = mean.clone() if self.estimate is None else self.estimate + mean
        return self.estimate.clone()

    def downlink(self, mean: torch.Tensor, payloads: list[Payload]) -> list[int]:
        return [sparse_payload(mean).nbytes] * len(payloads)
