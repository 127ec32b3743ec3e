"""The contract of a compression method: turn W workers' gradients into one update, and say
how many bytes crossed the wire each way.

Two shapes: `exchange(grads) -> Exchange` (the engine computes the gradients and applies the
update with the budget's optimizer), or `step(pool, step) -> StepOutcome` for methods that run
local steps, own their optimizer or use no gradients (the engine lends a `WorkerPool`).
`CodecMethod` is the shared aggregation for per-worker compressors: a sender per worker, the
server averages the decoded payloads and sends back what `downlink` says. `LocalWorkers` is the
local inner training of the infrequent-communication methods (DiLoCo, SparseLoCo).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Protocol

import torch

from sparsebench import checkpoint
from sparsebench.checks import check_density, check_range
from sparsebench.comm.compressors import Compressor, Identity
from sparsebench.comm.payload import Payload


@dataclass(frozen=True)
class CompressionParams:
    """Shared by compression methods: the number of simulated workers."""

    workers: int = 4

    def __post_init__(self) -> None:
        check_range("workers", self.workers, 1)


@dataclass(frozen=True)
class DensityParams(CompressionParams):
    """Shared by the sparsifying methods (top-k, rand-k and their error-feedback forms): the
    share of coordinates each worker sends."""

    density: float = 0.01

    def __post_init__(self) -> None:
        super().__post_init__()
        check_density(self.density)


@dataclass
class Exchange:
    """One step's outcome: the averaged update and the bytes each worker sent and received."""

    update: torch.Tensor
    bytes_up: list[int]
    bytes_down: list[int]
    messages: int = 2
    """Sequential sends on the critical path (one up, one down; PowerSGD's two rounds: 4)."""


class Sender(Protocol):
    """A worker's side of a compressor: NoFeedback, ErrorFeedback or EF21 from comm.feedback."""

    compressor: Compressor

    def compress(self, x: torch.Tensor) -> Payload: ...


@dataclass
class StepOutcome:
    """One step of a method that drives the step itself: the workers' training losses, the
    bytes each worker sent and received, and how many messages lie on the critical path."""

    losses: list[float]
    bytes_up: list[int]
    bytes_down: list[int]
    messages: int = 2


class WorkerPool(Protocol):
    """What the engine lends a method that owns the step (local steps, its own optimizer, or
    no gradients at all): per-worker batches, losses and gradients at any flat parameter
    vector, and the shared parameters. Gradient and loss calls are timed as compute."""

    workers: int
    lr: float

    def flat(self) -> torch.Tensor: ...

    def assign(self, flat: torch.Tensor) -> None: ...

    def batch(self, worker: int) -> torch.Tensor: ...

    def grad(
        self, worker: int, at: torch.Tensor | None = None, batch: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, float]: ...

    def loss(self, worker: int, batch: torch.Tensor, at: torch.Tensor) -> float: ...


class LocalWorkers:
    """Each worker's own copy of the parameters and its own inner optimizer, for methods that
    run local steps between communications (DiLoCo, SparseLoCo): the optimizer states persist
    across outer rounds while the parameters restart from the global ones every round."""

    def __init__(
        self,
        start: torch.Tensor,
        workers: int,
        optimizer: Literal["adamw", "sgd"],
        lr: float,
        weight_decay: float,
    ) -> None:
        self.params = [start.detach().clone() for _ in range(workers)]
        self.optimizers = [self._optimizer(p, optimizer, lr, weight_decay) for p in self.params]

    @staticmethod
    def _optimizer(
        param: torch.Tensor, kind: str, lr: float, weight_decay: float
    ) -> torch.optim.Optimizer:
        if kind == "adamw":
            return torch.optim.AdamW([param], lr=lr, weight_decay=weight_decay)
        return torch.optim.SGD([param], lr=lr, weight_decay=weight_decay)

    def inner_step(self, pool: WorkerPool) -> list[float]:
        """One inner step on every worker, each on its own next minibatch."""
        losses = []
        for w, (param, optimizer) in enumerate(zip(self.params, self.optimizers, strict=True)):
            grad, loss = pool.grad(w, at=param)
            param.grad = grad
            optimizer.step()
            losses.append(loss)
        return losses

    def restart(self, start: torch.Tensor) -> None:
        """Every worker's parameters back to `start`; inner optimizer states are kept."""
        for param in self.params:
            param.copy_(start)


class CompressionMethod:
    """A gradient-exchange method by default; one that sets `drives_step` runs each step
    itself through `step` (local steps, its own optimizer, or no gradients)."""

    drives_step = False

    def __init__(self, params: CompressionParams, seed: int) -> None:
        self.params = params
        self.seed = seed

    def bind(self, shapes: list[torch.Size]) -> None:
        """Told once, before training, the shapes of the parameters the flat vectors
        concatenate (in order); methods that work per layer (PowerSGD) need them."""

    def exchange(self, grads: list[torch.Tensor]) -> Exchange:
        """Combine the workers' flat gradients (one per worker) into the update all apply."""
        raise NotImplementedError

    def step(self, pool: WorkerPool, step: int) -> StepOutcome:
        """One whole step of a method that `drives_step`, on the engine's worker pool."""
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        """Everything the method changes while training (error memories, generators, factors,
        its own optimizers and local copies), walked from its attributes by
        `checkpoint.capture`, so a resumed run continues exactly; override only for state the
        walker refuses."""
        return checkpoint.capture(self)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore `state_dict()` in place, after `bind` (called before training, as always)."""
        checkpoint.restore(self, state)


def uncompressed_exchange(grads: list[torch.Tensor]) -> Exchange:
    """Plain data-parallel SGD: fp32 gradients up, their fp32 mean down (no compression, the
    reference point of every ratio, and PowerSGD's warm-up)."""
    codec = Identity()
    payloads = [codec.compress(g) for g in grads]
    mean = torch.stack([codec.decompress(p) for p in payloads]).mean(0)
    down = codec.compress(mean)
    return Exchange(mean, [p.nbytes for p in payloads], [down.nbytes] * len(grads))


def gathered_or_dense(payloads: list[Payload], numel: int) -> list[int]:
    """Downlink bytes per worker when the server can either forward the other workers'
    payloads (all-gather) or broadcast the fp32 mean: whichever is smaller for that worker."""
    total = sum(p.nbytes for p in payloads)
    return [min(total - p.nbytes, 4 * numel) for p in payloads]


class CodecMethod(CompressionMethod):
    """Each worker sends C(its gradient) through its own sender (plain, EF or EF21); the server
    averages the decoded payloads, `server_update` turns that mean into the step, and
    `downlink` says what the server sends back. Subclasses choose the sender and compressor."""

    def __init__(self, params: CompressionParams, seed: int) -> None:
        super().__init__(params, seed)
        self.senders = [self.make_sender(w) for w in range(params.workers)]

    def make_sender(self, worker: int) -> Sender:
        raise NotImplementedError

    def server_update(self, mean: torch.Tensor) -> torch.Tensor:
        return mean

    def downlink(self, mean: torch.Tensor, payloads: list[Payload]) -> list[int]:
        return gathered_or_dense(payloads, mean.numel())

    def exchange(self, grads: list[torch.Tensor]) -> Exchange:
        payloads = [s.compress(g) for s, g in zip(self.senders, grads, strict=True)]
        decoded = [
            s.compressor.decompress(p).flatten()
            for s, p in zip(self.senders, payloads, strict=True)
        ]
        mean = torch.stack(decoded).mean(0)
        return Exchange(
            self.server_update(mean), [p.nbytes for p in payloads], self.downlink(mean, payloads)
        )
