"""1-bit Adam (Tang, Gan, Awan, Rajbhandari, Li, Lian, Liu, Zhang, He, "1-bit Adam:
Communication Efficient Large-Scale Training with Adam's Convergence Speed", ICML 2021, arXiv
2102.02888).

Update rule: for the first `freeze_step` steps, plain Adam on the fp32-averaged gradient
(m <- b1 m + (1 - b1) g, v <- b2 v + (1 - b2) g^2, x <- x - lr m / (sqrt(v) + eps)). Then v is
frozen; each worker updates its own momentum m_i = b1 m + (1 - b1) g_i and the momenta are
averaged by an error-compensated 1-bit all-reduce (worker EF, packed signs plus an L2 scale;
server EF per chunk, same compression back), which gives the shared m for the same step rule.
As in DeepSpeed, each parameter tensor is compressed on its own (its own scales), there is no
bias correction unless `bias_correction` is set (then the frozen v keeps its correction at
freeze time), and coordinates whose frozen v is exactly zero get zero momentum (DeepSpeed asks
the user for such an `exp_avg_mask`; 1-bit codes cannot say zero). Bytes: 4d each way in
warm-up; afterwards, per tensor of n values, n/8 + 4 up and n/8 + 4W down per worker. The
learning rate is the budget's `lr`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from sparsebench.checks import check_range
from sparsebench.comm.onebit import OneBitAllReduce
from sparsebench.methods.compression.base import (
    CompressionMethod,
    CompressionParams,
    StepOutcome,
    WorkerPool,
)
from sparsebench.registry import register


@dataclass(frozen=True)
class OneBitAdamParams(CompressionParams):
    freeze_step: int = 100
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    bias_correction: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        check_range("freeze_step", self.freeze_step, 1)
        check_range("beta1", self.beta1, 0.0, 1.0, high_open=True)
        check_range("beta2", self.beta2, 0.0, 1.0, high_open=True)
        check_range("eps", self.eps, 0.0, low_open=True)


@register("compression", "onebit-adam", params=OneBitAdamParams)
class OneBitAdam(CompressionMethod):
    """Adam warm-up, then frozen variance and 1-bit error-compensated momentum all-reduce."""

    drives_step = True

    allreduce: list[OneBitAllReduce] | None = None
    sizes: list[int] | None = None

    def bind(self, shapes: list[torch.Size]) -> None:
        self.sizes = [s.numel() for s in shapes]

    def _start(self, numel: int, workers: int) -> None:
        self.m = torch.zeros(numel)
        self.v = torch.zeros(numel)
        self.sizes = self.sizes or [numel]
        self.allreduce = [OneBitAllReduce(n, workers) for n in self.sizes]

    def _compressed_mean(self, momenta: list[torch.Tensor]) -> tuple[torch.Tensor, list, list]:
        """1-bit all-reduce tensor by tensor (each its own scales, as DeepSpeed does per
        parameter), summing the bytes over tensors."""
        parts = [m.split(self.sizes) for m in momenta]
        out, up, down = [], [0] * len(momenta), [0] * len(momenta)
        for t, reducer in enumerate(self.allreduce):
            mean, u, d = reducer.reduce([p[t] for p in parts])
            out.append(mean)
            up = [a + b for a, b in zip(up, u, strict=True)]
            down = [a + b for a, b in zip(down, d, strict=True)]
        return torch.cat(out), up, down

    def step(self, pool: WorkerPool, step: int) -> StepOutcome:
        grads, losses = zip(*(pool.grad(w) for w in range(pool.workers)), strict=True)
        if self.allreduce is None:
            self._start(grads[0].numel(), pool.workers)
        p = self.params
        if step <= p.freeze_step:
            mean = torch.stack(grads).mean(0)
            self.m = p.beta1 * self.m + (1 - p.beta1) * mean
            self.v = p.beta2 * self.v + (1 - p.beta2) * mean * mean
            up = down = [4 * mean.numel()] * pool.workers
        else:
            momenta = [p.beta1 * self.m + (1 - p.beta1) * g for g in grads]
            self.m, up, down = self._compressed_mean(momenta)
            self.m = self.m * (self.v > 0)
        pool.assign(pool.flat() - pool.lr * self._direction(step))
        return StepOutcome(list(losses), list(up), list(down))

    def _direction(self, step: int) -> torch.Tensor:
        p = self.params
        if not p.bias_correction:
            return self.m / (self.v.sqrt() + p.eps)
        m_hat = self.m / (1 - p.beta1**step)
        v_hat = self.v / (1 - p.beta2 ** min(step, p.freeze_step))
        return m_hat / (v_hat.sqrt() + p.eps)
