"""SparseLoCo (Sarfi, Therien, Lidin, Belilovsky, "Communication Efficient LLM Pre-training with
SparseLoCo", 2025, arXiv 2508.15706), following the authors' code in tplr-ai/templar:
src/tplr/neurons.py (`prepare_gradient_dict`, `outer_step`), src/tplr/compress.py
(`ChunkingTransformer`, `TopKCompressor.batch_decompress`), neurons/trainer.py (outer SGD).

Update rule, every H inner steps (x the global parameters, alpha the outer learning rate):
- each worker w runs H inner AdamW steps from x to x_w; pseudo-gradient D_w = x - x_w;
- error-feedback buffer e_w <- beta * e_w + alpha * D_w (templar scales D_w by alpha here);
- c_w = C(e_w): per tensor, 64 x 64 tiles, top-k per tile, the kept values 2-bit quantized
  with that tensor's statistics (comm.tiles); e_w <- e_w - decode(c_w);
- the server, per tensor, scales each worker's decoded values by min(1, median / norm), the
  median over the workers' norms of that tensor, and averages each coordinate over the
  workers that sent it (zero where none did): g;
- x <- x - alpha * g (templar's outer SGD at lr alpha), sent back to every worker.
Defaults are templar's hparams/hparams.json: inner_steps 30, momentum_decay 0.95,
outer_learning_rate 1, target_chunk 64, topk_compression 64 per tile, quantization_bins 4,
quantization_range 6, weight_decay 0.1.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from sparsebench.checks import check_density, check_range
from sparsebench.comm.payload import Payload
from sparsebench.comm.tiles import TileTopKQuant, scatter_mean
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
    """Kept share of a full chunk x chunk tile (templar: topk_compression / target_chunk**2)."""
    chunk: int = 64
    """Tile side (templar: target_chunk)."""
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


def median_clip(values: list[torch.Tensor]) -> list[torch.Tensor]:
    """Each sender's values of one tensor scaled down to the median of the senders' norms
    (torch.median: the lower middle one for an even count), as templar's batch_decompress."""
    norms = torch.stack([v.norm() for v in values])
    median = torch.median(norms)
    return [
        v * torch.clamp(median / (n + 1e-8), max=1.0) for v, n in zip(values, norms, strict=True)
    ]


@register("compression", "sparseloco", params=SparseLoCoParams)
class SparseLoCo(CompressionMethod):
    """DiLoCo rounds whose pseudo-gradients go through per-worker EF and tile-wise 2-bit
    top-k; the server median-clips and averages each coordinate over its senders."""

    drives_step = True

    local: LocalWorkers | None = None

    def bind(self, shapes: list[torch.Size]) -> None:
        """The codec needs the parameter shapes: tiles and statistics live within tensors."""
        p = self.params
        self.codec = TileTopKQuant(shapes, p.density, p.chunk, p.value_bits)

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
        payloads = [self._send(w, local) for w, local in enumerate(self.local.params)]
        self.global_ -= self.params.outer_lr * self._aggregate(payloads)
        pool.assign(self.global_)
        self.local.restart(self.global_)
        return StepOutcome(
            losses, [p.nbytes for p in payloads], gathered_or_dense(payloads, self.global_.numel())
        )

    def _send(self, worker: int, local: torch.Tensor) -> Payload:
        """Worker's EF update and message (templar's prepare_gradient_dict)."""
        delta = self.global_ - local
        error = self.params.decay * self.errors[worker] + self.params.outer_lr * delta
        payload = self.codec.compress(error)
        self.errors[worker] = error - self.codec.decompress(payload)
        return payload

    def _aggregate(self, payloads: list[Payload]) -> torch.Tensor:
        """Server's update, tensor by tensor (templar's outer_step / batch_decompress)."""
        per_tensor = zip(*(self.codec.sparse(p) for p in payloads), strict=True)
        parts = [
            scatter_mean(t, [i for i, _ in sent], median_clip([v for _, v in sent]))
            for t, sent in zip(self.codec.tilings, per_tensor, strict=True)
        ]
        return torch.cat(parts)
