"""Top-k sparsification without error feedback (Aji & Heafield, "Sparse Communication for
Distributed Gradient Descent", EMNLP 2017, arXiv 1704.05021), the biased baseline that shows
what error feedback buys.

Update rule: each worker sends the k = density * d largest |g_i| as (fp32 value, int32 index)
pairs and drops the rest for good; the server averages the sparse vectors and broadcasts the
average sparsely (densely when that is smaller).
"""

from __future__ import annotations

import torch

from sparsebench.comm.compressors import TopK, sparse_payload
from sparsebench.comm.feedback import NoFeedback
from sparsebench.comm.payload import Payload
from sparsebench.methods.compression.base import CodecMethod, DensityParams
from sparsebench.registry import register
from sparsebench.spec import Regime


@register(
    "compression",
    "topk",
    params=DensityParams,
    regime=Regime("sgd", (), "Stich et al. 2018, Aji and Heafield 2017, GRACE: SGD with momentum"),
)
class TopKPlain(CodecMethod):
    """Top-k of the raw gradient; what is not sent is lost."""

    def make_sender(self, worker: int) -> NoFeedback:
        return NoFeedback(TopK(self.params.density))

    def downlink(self, mean: torch.Tensor, payloads: list[Payload]) -> list[int]:
        return [sparse_payload(mean).nbytes] * len(payloads)
