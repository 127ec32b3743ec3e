"""EF-signSGD (Karimireddy, Rebjock, Stich, Jaggi, "Error Feedback Fixes SignSGD and other
Gradient Compression Schemes", ICML 2019, arXiv 1901.09847).

Update rule: each worker forms p_i = g_i + e_i, sends C(p_i) = (||p_i||_1 / d) * sign(p_i) as
packed sign bits plus one fp32 scale, and keeps e_i <- p_i - C(p_i). The server averages and
forwards the payloads (or the fp32 mean, whichever is smaller).

`block: B` (a power of two >= 32) applies the same rule per block of B values, one scale each
(comm/blockquant.py; the Triton quant_pack kernel on CUDA tensors); 0, the default, is the
paper's single scale.
"""

from __future__ import annotations

from dataclasses import dataclass

from sparsebench.comm.blockquant import BlockQuant, check_layout
from sparsebench.comm.compressors import ScaledSign
from sparsebench.comm.feedback import ErrorFeedback
from sparsebench.methods.compression.base import CodecMethod, CompressionParams
from sparsebench.registry import register
from sparsebench.spec import Regime


@dataclass(frozen=True)
class SignEFParams(CompressionParams):
    block: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.block:
            try:
                check_layout(1, self.block)
            except ValueError as err:
                raise ValueError(f"block: {err}, or 0 for one scale per vector") from None


@register(
    "compression",
    "sign-ef",
    params=SignEFParams,
    regime=Regime("sgd", (), "Karimireddy et al. 2019 (EF-signSGD): SGD with momentum"),
)
class SignEF(CodecMethod):
    """Scaled sign of the error-corrected gradient; the residual is kept for the next step."""

    def make_sender(self, worker: int) -> ErrorFeedback:
        block = self.params.block
        return ErrorFeedback(BlockQuant(1, block) if block else ScaledSign())
