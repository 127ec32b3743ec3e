"""PowerSGD (Vogels, Karimireddy, Jaggi, "PowerSGD: Practical Low-Rank Gradient Compression for
Distributed Optimization", NeurIPS 2019, arXiv 1905.13727).

Update rule: per layer, M_i = reshape(g_i + e_i) to (rows, -1); with the warm-started shared Q,
all-reduce P = sum M_i Q, orthogonalise P, all-reduce Q = mean M_i^T P, decode M_hat = P Q^T
and keep e_i = M_i - M_hat. Layers that rank r would not shrink by 2x (all 1-D tensors) are
all-reduced in fp32. Bytes per worker each way: the fp32 P and Q factors plus those layers,
in two sequential all-reduces (four messages on the critical path per step).

`start_iter` has the semantics of the PyTorch DDP hook's `start_powerSGD_iter`: the first
`start_iter` steps all-reduce the uncompressed fp32 gradient (no error feedback builds up), and
compression starts after them. Its default 0 is the paper's algorithm; the hook defaults to 1000.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from sparsebench.checks import check_range
from sparsebench.comm.powersgd import PowerSGD
from sparsebench.methods.compression.base import (
    CompressionMethod,
    CompressionParams,
    Exchange,
    uncompressed_exchange,
)
from sparsebench.registry import register
from sparsebench.spec import Regime


@dataclass(frozen=True)
class PowerSGDParams(CompressionParams):
    rank: int = 2
    min_compression_rate: float = 2.0
    start_iter: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        check_range("rank", self.rank, 1)
        check_range("min_compression_rate", self.min_compression_rate, 1.0)
        check_range("start_iter", self.start_iter, 0)


@register(
    "compression",
    "powersgd",
    params=PowerSGDParams,
    regime=Regime("sgd", (), "Vogels et al. 2019 and the PowerSGD DDP hook: SGD with momentum 0.9"),
)
class PowerSGDMethod(CompressionMethod):
    """Rank-r power iteration per layer with error feedback and warm start."""

    codec: PowerSGD | None = None
    steps = 0
    """Exchanges so far (the warm-up counts them)."""

    def bind(self, shapes: list[torch.Size]) -> None:
        p = self.params
        self.codec = PowerSGD(shapes, p.rank, p.workers, self.seed, p.min_compression_rate)
        self.steps = 0

    def exchange(self, grads: list[torch.Tensor]) -> Exchange:
        if self.codec is None:
            raise RuntimeError("powersgd needs the parameter shapes: call bind() first")
        self.steps += 1
        if self.steps <= self.params.start_iter:
            return uncompressed_exchange(grads)
        mean, payloads = self.codec.reduce(grads)
        sizes = [p.nbytes for p in payloads]
        return Exchange(mean, sizes, sizes, messages=4)
