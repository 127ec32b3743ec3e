"""Scaled sign compression without error feedback (signSGD, Bernstein et al., ICML 2018, arXiv
1802.04434, with the L1 scale of Karimireddy et al. 2019), the baseline for sign-ef.

Update rule: each worker sends sign(g_i) as packed bits plus one fp32 scale ||g_i||_1 / d; the
server averages the scaled sign vectors and forwards the payloads (or the fp32 mean, whichever
is smaller).
"""

from __future__ import annotations

from sparsebench.comm.compressors import ScaledSign
from sparsebench.comm.feedback import NoFeedback
from sparsebench.methods.compression.base import CodecMethod, CompressionParams
from sparsebench.registry import register
from sparsebench.spec import Regime


@register(
    "compression",
    "sign",
    params=CompressionParams,
    regime=Regime("sgd", (), "Bernstein et al. 2018 (signSGD/Signum): SGD with momentum"),
)
class SignMethod(CodecMethod):
    """1 bit per coordinate plus one scale; biased, nothing carried over."""

    def make_sender(self, worker: int) -> NoFeedback:
        return NoFeedback(ScaledSign())
