"""Which samples each client trains on in a round: its own seeded minibatch stream, drawn at
once, as rows of the training set.

A client's stream in a round is `trainer.batches` on a generator seeded by `client_seed`, so any
process can rebuild it and the sequential and batched paths draw the same minibatches. The
clients' shards are laid out once per run (the training set copied client after client), so a
client's data is a slice and a whole round's minibatches one [C, steps, B] tensor of rows,
without gathering or concatenating any client's data per round.
"""

from __future__ import annotations

import torch

from sparsebench.seeds import derive


def client_seed(root: int, rnd: int, client: int) -> int:
    """The seed of a client's minibatch order in a round (any process can rebuild it)."""
    return derive(root, "data", rnd, client)


def draws(n: int, batch: int, steps: int, generator: torch.Generator) -> torch.Tensor:
    """The first `steps` minibatches [steps, batch] of `trainer.batches(n, batch, generator)`,
    drawn at once: the same permutations, cut the same way."""
    per_epoch = n // batch
    epochs = -(-steps // per_epoch)
    if epochs == 0:
        return torch.empty(0, batch, dtype=torch.int64)
    perms = [torch.randperm(n, generator=generator)[: per_epoch * batch] for _ in range(epochs)]
    order = perms[0] if epochs == 1 else torch.cat(perms)
    return order.view(-1, batch)[:steps]


class ClientData:
    """The training set laid out client after client (one copy, made once per run, so a
    client's shard is a slice and its minibatches gather from its own block), each client's
    batch size (`batch_size`, or its whole shard if smaller), and a round's minibatches."""

    def __init__(
        self, x: torch.Tensor, y: torch.Tensor, parts: list[torch.Tensor], batch_size: int
    ) -> None:
        order = torch.cat(parts) if parts else torch.empty(0, dtype=torch.int64)
        self.x, self.y = x[order], y[order]
        self.sizes = [len(p) for p in parts]
        self.batch = [min(batch_size, n) for n in self.sizes]
        starts = torch.tensor([0, *self.sizes[:-1]], dtype=torch.int64).cumsum(0)
        self.offsets = starts.tolist()
        self.shards = list(
            zip(self.x.split(self.sizes), self.y.split(self.sizes), strict=True)
        )  # every client's samples and targets (views)
        self._generator = torch.Generator()

    def local(self, client: int, seed: int, steps: int) -> torch.Tensor:
        """Client `client`'s minibatches [steps, B] as indices into its own shard."""
        gen = self._generator.manual_seed(seed)
        return draws(self.sizes[client], self.batch[client], steps, gen)

    def round_rows(self, clients: list[int], seeds: list[int], steps: int) -> torch.Tensor:
        """The minibatches [C, steps, B] of clients sharing one batch size, as rows of `x`."""
        return torch.stack(
            [
                self.local(c, s, steps).add_(self.offsets[c])
                for c, s in zip(clients, seeds, strict=True)
            ]
        )
