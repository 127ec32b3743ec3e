"""Checkpoints of every federated loop: save every `budget.checkpoint_every` rounds, resume a
killed run from a verified checkpoint of the same run, remove it when the run ends.

A loop keeps what its future depends on, beyond the model and the strategy, in one `Progress`
(a dataclass per loop adding its vectors, generators, event queue and clock to the rounds done,
curves and traffic shared by all). A checkpoint holds that progress, the strategy's
`state_dict` (control variates, server moments, client states, its own generators), the model's
state (buffers that client training carries from one client to the next) and the global RNG;
per-round data seeds are derived from the run's seeds, so they need nothing. The progress is
walked by `checkpoint.capture`, so tensors shared inside it (the start vector several queued
clients hold) stay shared after a resume.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from sparsebench import checkpoint as checkpoints
from sparsebench.engines.context import RunContext


@dataclass(kw_only=True)
class Progress:
    """What every federated loop has done so far: budget rounds completed (server steps for
    the buffered loop, intervals for the fixed-interval one), curves, per-round traffic, each
    logged round's client compute seconds (since the previous logged round), and what the
    rounds since the last logged one have counted but not logged yet (`record.log_round`)."""

    rounds_done: int = 0
    curves: dict[str, list]
    traffic: list[tuple] = field(default_factory=list)
    compute_s: list[float] = field(default_factory=list)
    unlogged_rounds: int = 0
    unlogged_losses: list[float] = field(default_factory=list)
    unlogged_up: int = 0
    unlogged_down: int = 0
    unlogged_compute_s: float = 0.0


def _identity(ctx: RunContext) -> dict[str, Any]:
    """What a checkpoint must have been written for: this run (its key leaves out
    bookkeeping such as checkpoint_every) and this round budget."""
    return {"run": ctx.spec.key(), "total_rounds": ctx.budget.rounds}


class Checkpoints:
    """The run's checkpoint file, `ctx.extra["checkpoint"]`; without one, or with
    budget.checkpoint_every = 0, nothing is read or written."""

    def __init__(self, ctx: RunContext) -> None:
        self.ctx = ctx
        self.every = ctx.budget.checkpoint_every
        self.path: Path | None = ctx.extra.get("checkpoint") if self.every else None

    def resume(self, progress: Progress) -> bool:
        """Put a verified checkpoint of this run back into `progress` (in place), the
        strategy, the model and the global RNG; False (and everything left as it is) when
        there is none, so the loop starts from round 0."""
        state = checkpoints.load_matching(self.path, **_identity(self.ctx)) if self.path else None
        if state is None:
            return False
        self.ctx.model.load_state_dict(state["model"])
        self.ctx.method.load_state_dict(state["strategy"])
        checkpoints.restore(progress, state["progress"])
        torch.set_rng_state(state["torch_rng"])
        return True

    def reached(self, progress: Progress) -> None:
        """Save after every `checkpoint_every`-th round (never after the last: the run ends)."""
        done = progress.rounds_done
        if self.path is None or done % self.every or done >= self.ctx.budget.rounds:
            return
        state = {
            **_identity(self.ctx),
            "model": self.ctx.model.state_dict(),
            "strategy": self.ctx.method.state_dict(),
            "progress": checkpoints.capture(progress),
            "torch_rng": torch.get_rng_state(),
        }
        checkpoints.save(state, self.path)

    def finish(self) -> None:
        """Remove the checkpoint: the run has ended."""
        if self.path is not None:
            checkpoints.remove(self.path)
