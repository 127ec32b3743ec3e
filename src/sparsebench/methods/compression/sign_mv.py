"""Signum with majority vote (Bernstein, Zhao, Azizzadenesheli, Anandkumar, "signSGD with
Majority Vote is Communication Efficient and Fault Tolerant", ICLR 2019, arXiv 1810.05291,
Algorithm 1; signSGD with majority vote: Bernstein, Wang, Azizzadenesheli, Anandkumar,
"signSGD: Compressed Optimisation for Non-Convex Problems", ICML 2018, arXiv 1802.04434).

Update rule: worker i keeps momentum v_i (zero at the start), v_i <- (1 - beta) g_i + beta v_i,
and sends sign(v_i); the server sends back sign(sum_i sign(v_i)); every worker applies
x <- x - lr * (sign(V) + weight_decay * x). Each coordinate moves by exactly lr (without weight
decay). beta = 0 is signSGD with majority vote; beta = 0.9 is the paper's default. `lr` is the
method's own (the paper's 1e-4 by default) because a sign step moves every coordinate by lr, a
scale unlike SGD's; `lr: null` takes the budget's. The method applies this update itself:
the budget's momentum is not used, as Signum's momentum lives on the workers, before the sign.

Bytes: one bit per coordinate each way, packed, no header (comm/majority.py, which also states
the tie rule: a zero or a tied vote is sent as +1).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from sparsebench.checks import check_range
from sparsebench.comm.majority import decode_signs, encode_signs, majority
from sparsebench.comm.payload import Payload
from sparsebench.methods.compression.base import (
    CompressionMethod,
    CompressionParams,
    StepOutcome,
    WorkerPool,
)
from sparsebench.registry import register
from sparsebench.spec import Regime


@dataclass(frozen=True)
class SignMVParams(CompressionParams):
    momentum: float = 0.9
    weight_decay: float = 0.0
    lr: float | None = 1e-4

    def __post_init__(self) -> None:
        super().__post_init__()
        check_range("momentum", self.momentum, 0.0, 1.0, high_open=True)
        check_range("weight_decay", self.weight_decay, 0.0)
        if self.lr is not None:
            check_range("lr", self.lr, 0.0, low_open=True)


class SignumWorker:
    """One worker's side: its momentum, and the sign of it as a packed-bit payload."""

    def __init__(self, beta: float) -> None:
        self.beta = beta
        self.momentum: torch.Tensor | None = None

    def compress(self, grad: torch.Tensor) -> Payload:
        previous = torch.zeros_like(grad) if self.momentum is None else self.momentum
        self.momentum = (1 - self.beta) * grad + self.beta * previous
        return encode_signs(self.momentum)


@register(
    "compression",
    "sign-mv",
    params=SignMVParams,
    regime=Regime("sgd", (), "Bernstein et al. 2019, Algorithm 1 (Signum with majority vote)"),
)
class SignMajorityVote(CompressionMethod):
    """1 bit up, 1 bit down: the majority of the workers' momentum signs, applied as lr."""

    drives_step = True

    def __init__(self, params: SignMVParams, seed: int) -> None:
        super().__init__(params, seed)
        self.workers = [SignumWorker(params.momentum) for _ in range(params.workers)]

    def step(self, pool: WorkerPool, step: int) -> StepOutcome:
        x = pool.flat()
        payloads, losses = [], []
        for w, worker in enumerate(self.workers):
            grad, loss = pool.grad(w)
            payloads.append(worker.compress(grad))
            losses.append(loss)
        vote = majority(payloads)
        direction = decode_signs(vote).to(x.device) + self.params.weight_decay * x
        lr = pool.lr if self.params.lr is None else self.params.lr
        pool.assign(x - lr * direction)
        return StepOutcome(losses, [p.nbytes for p in payloads], [vote.nbytes] * len(payloads))
