"""Random-k sparsification with shared randomness (Stich, Cordonnier, Jaggi, "Sparsified SGD
with Memory", NeurIPS 2018, arXiv 1809.07599; the GRACE benchmark's rand-k, Xu et al. 2021).

Update rule: every worker draws the same k = density * d coordinates from a seed they share
(fresh each step), sends only the k fp32 values (no indices), and the server averages them;
the average lives on the same k coordinates, so it goes back as k values too. Values are scaled
by d/k on decoding, which makes the estimate unbiased: E[update] = mean gradient.
"""

from __future__ import annotations

import torch

from sparsebench.comm.compressors import RandK
from sparsebench.comm.feedback import NoFeedback
from sparsebench.comm.payload import Payload
from sparsebench.methods.compression.base import CodecMethod, DensityParams
from sparsebench.registry import register
from sparsebench.spec import Regime


@register(
    "compression",
    "randk",
    params=DensityParams,
    regime=Regime("sgd", (), "Stich et al. 2018 and Wangni et al. 2018: SGD"),
)
class RandKMethod(CodecMethod):
    """Shared-seed rand-k: values only, scaled d/k, all-reduce compatible."""

    def make_sender(self, worker: int) -> NoFeedback:
        return NoFeedback(RandK(self.params.density, self.seed))

    def downlink(self, mean: torch.Tensor, payloads: list[Payload]) -> list[int]:
        codec = self.senders[0].compressor
        chosen = codec.indices(mean.numel(), int(payloads[0].meta["round"]))
        return [Payload({"values": mean[chosen]}, mean.shape).nbytes] * len(payloads)
