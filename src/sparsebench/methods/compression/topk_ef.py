"""Top-k sparsification with error feedback (Stich et al., "Sparsified SGD with Memory",
NeurIPS 2018; Aji & Heafield 2017).

Update rule, per worker i: p_i = g_i + e_i; send the k = density * d largest |p_i| as (fp32
value, int32 index) pairs; e_i <- p_i - topk(p_i). The server averages the decoded sparse
vectors and broadcasts the average in sparse form (dense if that is smaller).

`selection: sampled` swaps the exact top-k for Deep Gradient Compression's sampled threshold
(Lin et al. 2018): about k values, selected in one pass (the Triton kernel on CUDA tensors).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from sparsebench.checks import check_choice
from sparsebench.comm.compressors import TopK, decode_any, sparse_payload
from sparsebench.comm.feedback import ErrorFeedback
from sparsebench.comm.sampled_topk import SampledTopK
from sparsebench.methods.compression.base import CompressionMethod, DensityParams, Exchange
from sparsebench.registry import register
from sparsebench.spec import Regime

SELECTIONS = {"exact": TopK, "sampled": SampledTopK}


@dataclass(frozen=True)
class TopKEFParams(DensityParams):
    selection: str = "exact"

    def __post_init__(self) -> None:
        super().__post_init__()
        check_choice("selection", self.selection, sorted(SELECTIONS))


@register(
    "compression",
    "topk-ef",
    params=TopKEFParams,
    regime=Regime(
        "sgd", (), "Stich et al. 2018 and Karimireddy et al. 2019 (EF): SGD with momentum"
    ),
)
class TopKEF(CompressionMethod):
    """Top-k of the error-corrected gradient; the remainder is kept for the next step."""

    def __init__(self, params: TopKEFParams, seed: int) -> None:
        super().__init__(params, seed)
        self.compressor = SELECTIONS[params.selection](params.density)
        self.workers = [ErrorFeedback(self.compressor) for _ in range(params.workers)]

    def exchange(self, grads: list[torch.Tensor]) -> Exchange:
        payloads = [ef.compress(g) for ef, g in zip(self.workers, grads, strict=True)]
        mean = torch.stack([self.compressor.decompress(p) for p in payloads]).mean(0)
        down = sparse_payload(mean)
        return Exchange(decode_any(down), [p.nbytes for p in payloads], [down.nbytes] * len(grads))
