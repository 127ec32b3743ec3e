"""Unbiased random-k sparsification with independent masks per worker (Wangni, Wang, Liu,
Zhang, "Gradient Sparsification for Communication-Efficient Distributed Optimization", NeurIPS
2018, arXiv 1710.09854; the unbiased rand-k of Stich, Cordonnier, Jaggi, "Sparsified SGD with
Memory", NeurIPS 2018, arXiv 1809.07599, the scaled rand-k they compare with).

Update rule: at every step each worker i draws its own k = round(density * d) coordinates S_i
uniformly without replacement, from its own seeded stream, and sends the fp32 values g_i[S_i].
The server decodes Q(g_i) = (d/k) g_i on S_i, 0 elsewhere, so E[Q(g_i)] = g_i and each
coordinate's variance is (d/k - 1) g_ij^2; the update is the mean of the W estimates. Nothing is
remembered across steps.

Bytes: up, k fp32 values per worker; the indices cost nothing, as the server regenerates S_i
from the run seed shared before training, the worker's index and the step
(comm/worker_randk.py). Down, the mean lives on the union of the W masks, so each worker gets
the other workers' payloads or the mean's values on that union, whichever is smaller.
"""

from __future__ import annotations

import torch

from sparsebench.comm.feedback import NoFeedback
from sparsebench.comm.payload import Payload
from sparsebench.comm.worker_randk import WorkerRandK, downlink_nbytes
from sparsebench.methods.compression.base import CodecMethod, DensityParams
from sparsebench.registry import register
from sparsebench.spec import Regime


@register(
    "compression",
    "randk",
    params=DensityParams,
    regime=Regime("sgd", (), "Wangni et al. 2018 and Stich et al. 2018 (unbiased rand-k): SGD"),
)
class RandKMethod(CodecMethod):
    """Rand-k scaled by d/k, each worker on its own coordinates, memoryless."""

    def make_sender(self, worker: int) -> NoFeedback:
        return NoFeedback(WorkerRandK(self.params.density, self.seed, worker, scaled=True))

    def downlink(self, mean: torch.Tensor, payloads: list[Payload]) -> list[int]:
        return downlink_nbytes(mean, [s.compressor for s in self.senders], payloads)
