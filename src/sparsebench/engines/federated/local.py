"""A run's local training, set up once: the training set laid out client after client, the
batched trainer (vmapped forward), the sequential trainer (the run's model with flat
parameters), and whether the model can be batched at all. Each round then only draws the
clients' minibatches, asks the strategy for the round's gradient correction, and trains into
the memory of the previous round's trained vectors when its caller gave them back (`recycle`).
"""

from __future__ import annotations

import torch

from sparsebench.engines.context import RunContext
from sparsebench.engines.federated.batched import BatchedTrainer
from sparsebench.engines.federated.plans import ClientData, client_seed
from sparsebench.engines.federated.sequential import SequentialTrainer
from sparsebench.engines.stacked import model_batchable
from sparsebench.methods.federated.base import LocalCorrection, StepCorrection

_KEY = "federated.local_training"


class LocalTraining:
    """Trains a round's sampled clients of one run, batched when the strategy asks for vmap,
    the model allows it and the clients share one batch size, else one after another."""

    def __init__(self, ctx: RunContext, parts: list[torch.Tensor]) -> None:
        self.ctx, self.parts = ctx, parts
        data = ctx.data
        self.clients = ClientData(data.x_train, data.y_train, parts, ctx.budget.batch_size)
        self.vmap = ctx.method.params.simulation == "vmap" and model_batchable(ctx.model)
        self._batched: BatchedTrainer | None = None
        self._sequential: SequentialTrainer | None = None
        self._spare: torch.Tensor | None = None

    def fits(self, ctx: RunContext, parts: list[torch.Tensor]) -> bool:
        """Whether this setup is the one for `ctx` and `parts` (the same objects)."""
        mine = (self.ctx.model, self.ctx.method, self.ctx.budget, self.ctx.data, self.parts)
        theirs = (ctx.model, ctx.method, ctx.budget, ctx.data, parts)
        return all(a is b for a, b in zip(mine, theirs, strict=True))

    def batched(self) -> BatchedTrainer:
        if self._batched is None:
            self._batched = BatchedTrainer(self.ctx.model, self.ctx.budget, self.ctx.method.sam_rho)
        return self._batched

    def sequential(self) -> SequentialTrainer:
        if self._sequential is None:
            ctx = self.ctx
            self._sequential = SequentialTrainer(
                ctx.model, ctx.budget, ctx.method.sam_rho, flat=True
            )
        return self._sequential

    def recycle(self, trained: torch.Tensor) -> None:
        """Take back a round's trained vectors [C, d] from a caller done with them (holding
        no reference to the tensor itself), so that the next round writes into the same memory
        rather than into fresh pages the system must fault in (6 MB at 100 clients of the
        common MLP: a few ms a round on a VM); it is not reused while any view of it lives."""
        self._spare = trained

    def _buffer(self, rows: int, cols: int, dtype: torch.dtype) -> torch.Tensor:
        """A [rows, cols] tensor for the round's trained vectors: the recycled one if it fits
        and nothing else shares its storage, else a new one."""
        spare, self._spare = self._spare, None
        fits = spare is not None and spare.shape == (rows, cols) and spare.dtype == dtype
        if fits and _unshared(spare):
            return spare
        return torch.empty(rows, cols, dtype=dtype)

    def train(
        self, sampled: list[int], rnd: int, start: torch.Tensor
    ) -> tuple[torch.Tensor, list[float]]:
        """Trained vectors [C, d] and mean losses of the sampled clients in round `rnd`.
        `start` is the global vector [d] or one start per client [C, d] (decentralized)."""
        ctx, steps = self.ctx, self.ctx.budget.local_steps
        seeds = [client_seed(ctx.seeds["root"], rnd, c) for c in sampled]
        correction = ctx.method.local_correction(sampled, start)
        clients = self.clients
        if self.vmap and len({clients.batch[c] for c in sampled}) == 1:
            rows = clients.round_rows(sampled, seeds, steps)
            every = None if correction is None else _rows(correction, slice(None))
            out = self._buffer(len(sampled), start.shape[-1], start.dtype)
            return self.batched().train(start, clients.x, clients.y, rows, every, out)
        trainer = self.sequential()
        trainer.model.train()
        starts = start.expand(len(sampled), -1)
        trained = self._buffer(len(sampled), starts.shape[1], starts.dtype)
        losses = []
        rows = zip(sampled, seeds, starts.unbind(), trained.unbind(), strict=True)
        for i, (client, seed, first, out) in enumerate(rows):
            x, y = clients.shards[client]
            plan = clients.local(client, seed, steps)
            mine = None if correction is None else _rows(correction, slice(i, i + 1))
            losses.append(trainer.client(first, x, y, plan, mine))
            out.copy_(trainer.vector())
        return trained, losses


def _unshared(t: torch.Tensor) -> bool:
    """Whether no tensor or view but `t` holds its storage: torch's use count of the storage
    (`t`'s reference and the temporary storage object's); False where torch has no count."""
    count = getattr(torch._C, "_storage_Use_Count", None)
    return count is not None and count(t.untyped_storage()._cdata) == 2


def _rows(correction: LocalCorrection, rows: slice) -> StepCorrection:
    """The round's correction for the clients `rows` of the round, as a function of their w."""
    return lambda w: correction(w, rows)


def local_training(ctx: RunContext, parts: list[torch.Tensor]) -> LocalTraining:
    """The run's `LocalTraining` for `parts`, built on first use and kept in `ctx.extra`."""
    setup = ctx.extra.get(_KEY)
    if setup is None or not setup.fits(ctx, parts):
        setup = LocalTraining(ctx, parts)
        ctx.extra[_KEY] = setup
    return setup
