"""Checkpoints for long runs: written atomically, verified by SHA-256, loaded safely.

A run killed mid-training resumes from its last checkpoint instead of starting over, and must
end bit-identical to an uninterrupted run, so a checkpoint holds everything the loop's future
depends on (weights, optimizer moments, RNG states, curves so far, the method's masks). Saving
writes a temporary file and renames it, so a crash leaves the previous checkpoint intact; the
SHA-256 sidecar catches a truncated or corrupt file, which is then reported and ignored (the
run restarts) rather than silently used. Loading uses `torch.load(weights_only=True)`, which
refuses arbitrary pickled objects: checkpoints hold only tensors, numbers, strings, lists and
dicts (generator states are ByteTensors).
"""

from __future__ import annotations

import io
import logging
import warnings
from pathlib import Path
from typing import Any

import torch

from sparsebench import atomic

log = logging.getLogger(__name__)


class CorruptCheckpointWarning(UserWarning):
    """A checkpoint exists but fails verification; training restarts from step 0."""


def save(state: dict[str, Any], path: Path) -> None:
    """Write `state` to `path` and its digest to `path`.sha256, each atomically.

    A crash between the two renames leaves a file and a digest that disagree: detected on load.
    """
    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic.write_with_digest(Path(path), buffer.getvalue())


def _reject(path: Path, why: str) -> None:
    message = f"ignoring checkpoint {path}: {why}; training restarts from step 0"
    log.warning(message)
    warnings.warn(message, CorruptCheckpointWarning, stacklevel=3)


def load(path: Path) -> dict[str, Any] | None:
    """The verified state at `path`, or None when there is none or it fails verification."""
    path = Path(path)
    if not path.exists():
        return None
    data = path.read_bytes()
    if not atomic.sidecar(path).exists():
        _reject(path, "its .sha256 sidecar is missing")
        return None
    if not atomic.digest_ok(path, data):
        _reject(path, "SHA-256 mismatch (truncated or corrupt)")
        return None
    try:
        return torch.load(io.BytesIO(data), weights_only=True)
    except Exception as err:  # a verified but unreadable file (e.g. from another torch)
        _reject(path, f"unreadable ({err})")
        return None


def remove(path: Path) -> None:
    """Delete a checkpoint and its sidecar once the run it belongs to has finished."""
    for target in (Path(path), atomic.sidecar(path)):
        target.unlink(missing_ok=True)


def to_state(value: Any) -> Any:
    """A method attribute in checkpointable form: a generator becomes its ByteTensor state,
    tensors are cloned (so later in-place updates cannot alter a saved state)."""
    if isinstance(value, torch.Generator):
        return value.get_state()
    if isinstance(value, torch.Tensor):
        return value.detach().clone()
    if isinstance(value, dict):
        return {k: to_state(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_state(v) for v in value]
    return value


def from_state(current: Any, saved: Any) -> Any:
    """Restore `saved` into the shape of `current`: generators get their state set in place,
    tensors are copied into (so references held elsewhere stay valid), the rest is replaced."""
    if isinstance(current, torch.Generator):
        current.set_state(saved)
        return current
    if isinstance(current, torch.Tensor):
        with torch.no_grad():
            current.copy_(saved)
        return current
    if isinstance(current, dict):
        return {k: from_state(current.get(k), v) for k, v in saved.items()}
    return saved


class CheckpointMismatch(RuntimeError):
    """A verified checkpoint that does not fit the run resuming from it (another data order)."""


def training_state(
    *,
    step: int,
    total_steps: int,
    running: float,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    hooks: Any,
    data_generator: torch.Generator,
    curves: dict[str, list],
) -> dict[str, Any]:
    """Everything a training loop needs to continue after `step` exactly as if never stopped."""
    return {
        "step": step,
        "total_steps": total_steps,
        "running": running,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "hooks": hooks.state_dict(),
        "data_generator": data_generator.get_state(),
        "torch_rng": torch.get_rng_state(),
        "curves": {name: list(values) for name, values in curves.items()},
    }


def load_training(path: Path, total_steps: int) -> dict[str, Any] | None:
    """A verified training state for a run of `total_steps` steps, or None (start from 0)."""
    state = load(path)
    if state is None:
        return None
    if state.get("total_steps") != total_steps:
        _reject(path, f"written for {state.get('total_steps')} steps, not {total_steps}")
        return None
    return state


def restore_training(
    state: dict[str, Any],
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    hooks: Any,
    curves: dict[str, list],
) -> None:
    """Load weights, optimizer moments, the method's state, the global RNG and the curves.
    The data order is restored by the caller replaying `state['step']` batches."""
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    hooks.load_state_dict(state["hooks"])
    torch.set_rng_state(state["torch_rng"])
    curves.clear()
    curves.update(state["curves"])


def check_data_order(state: dict[str, Any], data_generator: torch.Generator) -> None:
    """After replaying the batches, the data generator must be where the checkpoint left it."""
    if not torch.equal(data_generator.get_state(), state["data_generator"]):
        raise CheckpointMismatch(
            f"checkpoint at step {state['step']} was written with another data order "
            "(dataset, batch size or data seed changed); delete it to restart"
        )
