"""DiLoCo (Douillard, Feng, Rusu, Chhaparia, Donchev, Kuncoro, Ranzato, Szlam, Shen,
"DiLoCo: Distributed Low-Communication Training of Language Models", 2023, arXiv 2311.08105).

Update rule: every worker starts an outer round from the global parameters x and runs H inner
steps of its own optimizer (AdamW in the paper; its state persists across rounds) on its own
shard. The pseudo-gradient D = x - mean_i x_i (one fp32 all-reduce) drives an outer Nesterov
SGD step on x, and the workers restart from the new x. Bytes: the fp32 pseudo-gradient up and
the fp32 average down, once per H steps; inner steps send nothing. The inner learning rate is
the budget's `lr`; defaults follow the paper and OpenDiLoCo (outer lr 0.7, momentum 0.9).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from sparsebench.checks import check_range
from sparsebench.comm.compressors import Identity
from sparsebench.methods.compression.base import (
    CompressionMethod,
    CompressionParams,
    LocalWorkers,
    StepOutcome,
    WorkerPool,
)
from sparsebench.registry import register


@dataclass(frozen=True)
class DiLoCoParams(CompressionParams):
    inner_steps: int = 50
    inner_optimizer: Literal["adamw", "sgd"] = "adamw"
    inner_weight_decay: float = 0.1
    outer_lr: float = 0.7
    outer_momentum: float = 0.9

    def __post_init__(self) -> None:
        super().__post_init__()
        check_range("inner_steps", self.inner_steps, 1)
        check_range("inner_weight_decay", self.inner_weight_decay, 0.0)
        check_range("outer_lr", self.outer_lr, 0.0, low_open=True)
        check_range("outer_momentum", self.outer_momentum, 0.0, 1.0, high_open=True)


@register("compression", "diloco", params=DiLoCoParams)
class DiLoCo(CompressionMethod):
    """H local steps per worker, then an outer Nesterov step on the averaged pseudo-gradient."""

    drives_step = True

    local: LocalWorkers | None = None

    def _start(self, pool: WorkerPool) -> None:
        p = self.params
        self.global_ = pool.flat().clone()
        self.local = LocalWorkers(
            self.global_, p.workers, p.inner_optimizer, pool.lr, p.inner_weight_decay
        )
        self.outer = torch.optim.SGD(
            [self.global_],
            lr=p.outer_lr,
            momentum=p.outer_momentum,
            nesterov=p.outer_momentum > 0,
        )

    def step(self, pool: WorkerPool, step: int) -> StepOutcome:
        if self.local is None:
            self._start(pool)
        losses = self.local.inner_step(pool)
        if step % self.params.inner_steps:
            return StepOutcome(losses, [0] * pool.workers, [0] * pool.workers)
        codec = Identity()
        payloads = [codec.compress(self.global_ - x) for x in self.local.params]
        self.global_.grad = torch.stack([codec.decompress(q) for q in payloads]).mean(0)
        self.outer.step()
        pool.assign(self.global_)
        self.local.restart(self.global_)
        down = codec.compress(self.global_.grad).nbytes
        return StepOutcome(losses, [q.nbytes for q in payloads], [down] * pool.workers)
