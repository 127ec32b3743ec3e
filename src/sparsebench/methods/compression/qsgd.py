"""QSGD (Alistarh, Grubic, Li, Tomioka, Vojnovic, "QSGD: Communication-Efficient SGD via
Gradient Quantization and Encoding", NeurIPS 2017, arXiv 1610.02132).

Update rule: each worker splits its gradient into buckets; per bucket it sends the fp32 L2 norm
and, per value, sign(v) * l with l in {0..s}, where l is floor(s|v|/norm) rounded up with
probability equal to the remainder (so the estimate is unbiased). The 2s + 1 codes are
bit-packed in ceil(log2(2s + 1)) bits. The server averages the decoded vectors and forwards the
workers' payloads (or the fp32 mean, whichever is smaller). We use fixed-width codes, not the
paper's Elias coding.
"""

from __future__ import annotations

from dataclasses import dataclass

from sparsebench.checks import check_range
from sparsebench.comm.compressors import QSGD
from sparsebench.comm.feedback import NoFeedback
from sparsebench.methods.compression.base import CodecMethod, CompressionParams
from sparsebench.registry import register
from sparsebench.seeds import derive
from sparsebench.spec import Regime


@dataclass(frozen=True)
class QSGDParams(CompressionParams):
    levels: int = 7
    bucket: int = 512

    def __post_init__(self) -> None:
        super().__post_init__()
        check_range("levels", self.levels, 1)
        check_range("bucket", self.bucket, 1)


@register(
    "compression",
    "qsgd",
    params=QSGDParams,
    regime=Regime("sgd", (), "Alistarh et al. 2017: SGD"),
)
class QSGDMethod(CodecMethod):
    """Unbiased stochastic quantization to s levels per bucket norm."""

    def make_sender(self, worker: int) -> NoFeedback:
        seed = derive(self.seed, f"qsgd/worker/{worker}")
        return NoFeedback(QSGD(self.params.levels, self.params.bucket, seed))
