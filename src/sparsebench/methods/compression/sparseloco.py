"""SparseLoCo (Sarfi, Therien, Lidin, Belilovsky, "Communication Efficient LLM
Pre-training with SparseLoCo", 2025, arXiv 2508.15706).

Update rule: as DiLoCo, every worker runs H inner AdamW steps from the global x and forms its
pseudo-gradient D_i = x - x_i. Instead of outer momentum each worker keeps an error-feedback
buffer e_i <- beta * e_i + D_i, sends c_i = C(e_i) with C = chunk-wise top-k (density 1-3%)
and 2-bit quantized values, and keeps e_i <- e_i - D(c_i). Only the sparse entries travel: the
server averages the W decoded sparse vectors and x <- x - outer_lr * mean_i D(c_i). Defaults
follow tplr-ai/templar's hparams (H = 30, beta = 0.95, outer lr 1, 64 of 4096 per chunk). We
average over all W workers (templar also clips each contribution to the median norm).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from sparsebench.checks import check_density, check_range
from sparsebench.comm.chunked import ChunkTopKQuant
from sparsebench.methods.compression.base import (
    CompressionMethod,
    CompressionParams,
    LocalWorkers,
    StepOutcome,
    WorkerPool,
    gathered_or_dense,
)
from sparsebench.registry import register


@dataclass(frozen=True)
class SparseLoCoParams(CompressionParams):
    inner_steps: int = 30
    inner_weight_decay: float = 0.1
    density: float = 64 / 4096
    chunk: int = 4096
    value_bits: int = 2
    decay: float = 0.95
    outer_lr: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        check_density(self.density)
        check_range("inner_steps", self.inner_steps, 1)
        check_range("inner_weight_decay", self.inner_weight_decay, 0.0)
        check_range("chunk", self.chunk, 2)
        check_range("value_bits", self.value_bits, 1, 8)
        check_range("decay", self.decay, 0.0, 1.0)
        check_range("outer_lr", self.outer_lr, 0.0, low_open=True)


@register("compression", "sparseloco", params=SparseLoCoParams)
class SparseLoCo(CompressionMethod):
    """DiLoCo rounds whose pseudo-gradients go through per-worker EF and sparse 2-bit top-k."""

    drives_step = True

    local: LocalWorkers | None = None

    def __init__(self, params: SparseLoCoParams, seed: int) -> None:
        super().__init__(params, seed)
        self.codec = ChunkTopKQuant(params.density, params.chunk, params.value_bits)

    def _start(self, pool: WorkerPool) -> None:
        self.global_ = pool.flat().clone()
        self.local = LocalWorkers(
            self.global_, pool.workers, "adamw", pool.lr, self.params.inner_weight_decay
        )
        self.errors = [torch.zeros_like(self.global_) for _ in range(pool.workers)]

    def step(self, pool: WorkerPool, step: int) -> StepOutcome:
        if self.local is None:
            self._start(pool)
        losses = self.local.inner_step(pool)
        if step % self.params.inner_steps:
            return StepOutcome(losses, [0] * pool.workers, [0] * pool.workers)
        payloads, decoded = [], []
        for w, local in enumerate(self.local.params):
            self.errors[w] = self.params.decay * self.errors[w] + (self.global_ - local)
            payloads.append(self.codec.compress(self.errors[w]))
            decoded.append(self.codec.decompress(payloads[-1]))
            self.errors[w] = self.errors[w] - decoded[-1]
        mean = torch.stack(decoded).mean(0)
        self.global_ -= self.params.outer_lr * mean
        pool.assign(self.global_)
        self.local.restart(self.global_)
        return StepOutcome(
            losses, [p.nbytes for p in payloads], gathered_or_dense(payloads, mean.numel())
        )
