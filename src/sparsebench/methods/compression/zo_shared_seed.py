"""Zeroth-order training with shared randomness: one byte per worker per step (Zelikman, Huang,
Liang, Haber, Goodman, "Just One Byte (per gradient): A Note on Low-Bandwidth Decentralized
Language Model Finetuning Using Shared Randomness", 2023, arXiv 2306.10015; the SPSA estimate
of MeZO, Malladi et al., NeurIPS 2023, arXiv 2305.17333).

Update rule: at step t worker i draws z_i ~ N(0, I) from a seed every worker can derive from
(run seed, t, i), so seeds are never sent. On one minibatch it evaluates the projected gradient
g_i = [L_i(x + eps z_i) - L_i(x - eps z_i)] / (2 eps), quantizes it to one signed byte
(q_i = round(127 * clip(g_i, -c, c) / c)), and broadcasts that byte. Every worker regenerates
all z_j and applies x <- x - lr * mean_j (c q_j / 127) z_j. Bytes: 1 up, W - 1 down per worker.
No backward pass is run; the learning rate is the budget's `lr`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from sparsebench.checks import check_range
from sparsebench.comm.payload import Payload
from sparsebench.methods.compression.base import (
    CompressionMethod,
    CompressionParams,
    StepOutcome,
    WorkerPool,
)
from sparsebench.registry import register
from sparsebench.seeds import derive


@dataclass(frozen=True)
class ZOParams(CompressionParams):
    eps: float = 1e-3
    clip: float = 5.0

    def __post_init__(self) -> None:
        super().__post_init__()
        check_range("eps", self.eps, 0.0, low_open=True)
        check_range("clip", self.clip, 0.0, low_open=True)


@register("compression", "zo-shared-seed", params=ZOParams)
class ZOSharedSeed(CompressionMethod):
    """SPSA projected gradients as one int8 per worker; perturbations rebuilt from seeds."""

    drives_step = True

    def direction(self, step: int, worker: int, numel: int) -> torch.Tensor:
        """The perturbation z of `worker` at `step`, the same wherever it is regenerated."""
        seed = derive(self.seed, f"zo/step/{step}/worker/{worker}")
        return torch.randn(numel, generator=torch.Generator().manual_seed(seed))

    def quantize(self, value: float) -> Payload:
        clipped = max(-self.params.clip, min(self.params.clip, value))
        code = torch.tensor([round(127 * clipped / self.params.clip)], dtype=torch.int8)
        return Payload({"code": code}, torch.Size([1]))

    def dequantize(self, payload: Payload) -> float:
        return float(payload.tensors["code"][0]) * self.params.clip / 127

    def step(self, pool: WorkerPool, step: int) -> StepOutcome:
        x = pool.flat()
        update = torch.zeros_like(x)
        payloads, losses = [], []
        for w in range(pool.workers):
            z = self.direction(step, w, x.numel())
            batch = pool.batch(w)
            plus = pool.loss(w, batch, x + self.params.eps * z)
            minus = pool.loss(w, batch, x - self.params.eps * z)
            payloads.append(self.quantize((plus - minus) / (2 * self.params.eps)))
            losses.append((plus + minus) / 2)
            update += self.dequantize(payloads[-1]) * z
        pool.assign(x - pool.lr * update / pool.workers)
        total = sum(p.nbytes for p in payloads)
        return StepOutcome(
            losses, [p.nbytes for p in payloads], [total - p.nbytes for p in payloads]
        )
