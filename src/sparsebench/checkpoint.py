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

import dataclasses
import importlib
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
    """Delete a checkpoint, its sidecar and the temp files of writes a kill interrupted, once
    the run it belongs to has finished."""
    path = Path(path)
    for target in (path, atomic.sidecar(path)):
        for leftover in (target, *atomic.abandoned(target)):
            leftover.unlink(missing_ok=True)


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
    run: str,
    step: int,
    total_steps: int,
    running: float,
    train_flops: float,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    hooks: Any,
    data_generator: torch.Generator,
    curves: dict[str, list],
) -> dict[str, Any]:
    """Everything a training loop needs to continue after `step` exactly as if never stopped."""
    return {
        "run": run,
        "step": step,
        "total_steps": total_steps,
        "running": running,
        "train_flops": train_flops,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "hooks": hooks.state_dict(),
        "data_generator": data_generator.get_state(),
        "torch_rng": torch.get_rng_state(),
        "curves": {name: list(values) for name, values in curves.items()},
    }


def load_matching(path: Path, **expected: Any) -> dict[str, Any] | None:
    """The verified state at `path` if each `expected` entry (run key, step budget) matches
    the one it was written with, else None: a checkpoint of another run is reported and
    ignored like a corrupt one, never resumed from."""
    state = load(path)
    if state is None:
        return None
    for key, want in expected.items():
        if state.get(key) != want:
            _reject(path, f"written for {key}={state.get(key)!r}, not {want!r}")
            return None
    return state


def load_training(path: Path, total_steps: int, run: str) -> dict[str, Any] | None:
    """A verified training state of run `run` with `total_steps` steps, or None (start from 0)."""
    return load_matching(path, total_steps=total_steps, run=run)


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


PLAIN = (type(None), bool, int, float, complex, str, bytes, torch.Size, torch.dtype, torch.device)
"""Values a checkpoint keeps as they are (immutable, and readable with weights_only=True)."""


def capture(obj: Any, skip: frozenset[str] = frozenset()) -> dict[str, Any]:
    """The mutable state of `obj`, walked from its instance attributes into plain nodes that
    `torch.load(weights_only=True)` reads back and `restore` puts back in place. Attributes
    named in `skip` are left out (and left as they are by `restore`): what `obj`'s constructor
    rebuilds from its arguments.

    Walked: tensors (cloned, so later in-place updates cannot alter the snapshot), generators
    (their state), optimizers (their parameters and state_dict), modules (their state_dict
    entries), lists, tuples, dicts, frozen dataclasses (their fields) and objects of sparsebench
    classes (their attributes, recursively); plain values are kept. Something met twice (a
    tensor an optimizer also holds, a compressor several senders share) is saved once and
    restored as one object. Anything else raises TypeError naming where it was found: its
    owner must then override state_dict/load_state_dict.
    """
    return _Capture().attributes(obj, type(obj).__name__, skip)


def restore(obj: Any, state: dict[str, Any]) -> None:
    """Put `capture(obj)`'s state back into `obj`: into the tensors, generators, optimizers,
    containers and objects it already has where they fit (so references held elsewhere stay
    valid), building those it lacks (state created lazily during training)."""
    _Restore().attributes(obj, state)


def _qualname(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def _resolve(name: str) -> type:
    """The class `module:qualname` names, if it is one a checkpoint may build: a sparsebench
    class or a torch optimizer (never an arbitrary callable)."""
    module, _, qualname = name.partition(":")
    if not (module.split(".")[0] == "sparsebench" or module.startswith("torch.optim")):
        raise CheckpointMismatch(f"checkpoint names a class outside sparsebench: {name}")
    cls: Any = importlib.import_module(module)
    for part in qualname.split("."):
        cls = getattr(cls, part)
    if not isinstance(cls, type):
        raise CheckpointMismatch(f"checkpoint names {name}, which is not a class")
    return cls


def _detached_copy(tensor: torch.Tensor) -> torch.Tensor:
    """A copy no later in-place update of `tensor` reaches (and vice versa), still a leaf."""
    return tensor.detach().clone().requires_grad_(tensor.requires_grad)


def _fits(current: Any, saved: torch.Tensor) -> bool:
    """Whether `saved` can be copied into the live tensor `current`."""
    return isinstance(current, torch.Tensor) and (
        (current.shape, current.dtype, current.device) == (saved.shape, saved.dtype, saved.device)
    )


def _is_frozen_dataclass(value: Any) -> bool:
    params = getattr(type(value), "__dataclass_params__", None)
    return params is not None and params.frozen


def _is_sparsebench_object(value: Any) -> bool:
    return hasattr(value, "__dict__") and type(value).__module__.split(".")[0] == "sparsebench"


class _Capture:
    """One walk; remembers what it has met (by id) so that shared things are saved once."""

    def __init__(self) -> None:
        self.seen: dict[int, int] = {}
        self.alive: list[Any] = []  # keeps temporaries (state_dicts) alive, so ids stay unique

    def attributes(
        self, obj: Any, path: str, skip: frozenset[str] = frozenset()
    ) -> dict[str, tuple]:
        return {
            name: self.node(value, f"{path}.{name}")
            for name, value in vars(obj).items()
            if name not in skip
        }

    def node(self, value: Any, path: str) -> tuple:
        if isinstance(value, PLAIN):
            return ("value", value)
        if isinstance(value, tuple):
            return ("tuple", [self.node(v, f"{path}[{i}]") for i, v in enumerate(value)])
        if _is_frozen_dataclass(value):
            fields = dataclasses.fields(value)
            state = {
                f.name: self.node(getattr(value, f.name), f"{path}.{f.name}")
                for f in fields
                if f.init
            }
            return ("frozen", _qualname(type(value)), state)
        if id(value) in self.seen:
            return ("ref", self.seen[id(value)])
        index = self.seen[id(value)] = len(self.seen)
        self.alive.append(value)
        kind, *payload = self._walk(value, path)
        return (kind, index, *payload)

    def _walk(self, value: Any, path: str) -> tuple:
        if isinstance(value, torch.Tensor):
            return ("tensor", _detached_copy(value))
        if isinstance(value, torch.Generator):
            return ("generator", value.get_state(), str(value.device))
        if isinstance(value, torch.optim.Optimizer):
            groups = [
                [self.node(p, f"{path}.params") for p in g["params"]] for g in value.param_groups
            ]
            return (
                "optimizer",
                _qualname(type(value)),
                groups,
                self.node(value.state_dict(), path),
            )
        if isinstance(value, torch.nn.Module):
            entries = value.state_dict(keep_vars=True)
            self.alive.append(entries)
            return ("module", {k: self.node(t, f"{path}.{k}") for k, t in entries.items()})
        if isinstance(value, list):
            return ("list", [self.node(v, f"{path}[{i}]") for i, v in enumerate(value)])
        if isinstance(value, dict):
            for key in value:
                if not isinstance(key, PLAIN):
                    raise TypeError(
                        f"{path}: cannot checkpoint a dict keyed by {type(key).__name__}"
                    )
            return ("dict", {k: self.node(v, f"{path}[{k!r}]") for k, v in value.items()})
        if _is_sparsebench_object(value):
            return ("object", _qualname(type(value)), self.attributes(value, path))
        raise TypeError(
            f"{path}: cannot checkpoint a {type(value).__qualname__}; "
            "override state_dict() and load_state_dict() for it"
        )


class _Restore:
    """One restore; maps each saved thing to the live object it became, so shared ones stay
    shared."""

    def __init__(self) -> None:
        self.memo: dict[int, Any] = {}

    def attributes(self, obj: Any, state: dict[str, tuple]) -> None:
        for name, node in state.items():
            setattr(obj, name, self.node(getattr(obj, name, None), node))

    def node(self, current: Any, node: tuple) -> Any:
        kind = node[0]
        if kind == "value":
            return node[1]
        if kind == "ref":
            return self.memo[node[1]]
        if kind == "tuple":
            old = current if isinstance(current, tuple) and len(current) == len(node[1]) else None
            return tuple(self.node(old[i] if old else None, n) for i, n in enumerate(node[1]))
        if kind == "frozen":
            return _resolve(node[1])(**{k: self.node(None, n) for k, n in node[2].items()})
        return getattr(self, f"_{kind}")(node[1], current, *node[2:])

    def _tensor(self, index: int, current: Any, saved: torch.Tensor) -> torch.Tensor:
        if _fits(current, saved):
            with torch.no_grad():
                current.copy_(saved)
            self.memo[index] = current
        else:
            self.memo[index] = _detached_copy(saved)
        return self.memo[index]

    def _generator(self, index: int, current: Any, state: torch.Tensor, device: str):
        generator = current if isinstance(current, torch.Generator) else torch.Generator(device)
        generator.set_state(state)
        self.memo[index] = generator
        return generator

    def _list(self, index: int, current: Any, items: list[tuple]) -> list:
        target = current if isinstance(current, list) else []
        old = list(target)
        self.memo[index] = target
        target[:] = [self.node(old[i] if i < len(old) else None, n) for i, n in enumerate(items)]
        return target

    def _dict(self, index: int, current: Any, items: dict[Any, tuple]) -> dict:
        target = current if isinstance(current, dict) else {}
        old = dict(target)
        self.memo[index] = target
        restored = {k: self.node(old.get(k), n) for k, n in items.items()}
        target.clear()
        target.update(restored)
        return target

    def _object(self, index: int, current: Any, name: str, attrs: dict[str, tuple]) -> Any:
        cls = _resolve(name)
        target = current if type(current) is cls else cls.__new__(cls)
        self.memo[index] = target
        self.attributes(target, attrs)
        return target

    def _module(self, index: int, current: Any, entries: dict[str, tuple]) -> torch.nn.Module:
        """Modules are lent (the engine's model), never built: restored into the live one."""
        if not isinstance(current, torch.nn.Module):
            raise CheckpointMismatch("a checkpointed module has no live module to restore into")
        live = current.state_dict(keep_vars=True)
        self.memo[index] = current
        for key, node in entries.items():
            if self.node(live.get(key), node) is not live.get(key):
                raise CheckpointMismatch(f"checkpointed module entry {key} does not fit the model")
        return current

    def _optimizer(
        self, index: int, current: Any, name: str, groups: list[list[tuple]], state: tuple
    ) -> torch.optim.Optimizer:
        """Into the live optimizer when its parameters are the restored ones, else a new one
        over them (built with the saved groups, then given the saved state)."""
        cls = _resolve(name)
        live = [g["params"] for g in current.param_groups] if isinstance(current, cls) else []
        if [len(g) for g in live] != [len(g) for g in groups]:
            live, current = [[None] * len(g) for g in groups], None
        pairs = [list(zip(o, g, strict=True)) for o, g in zip(live, groups, strict=True)]
        params = [[self.node(p, n) for p, n in group] for group in pairs]
        state_dict = self.node(None, state)
        kept = all(
            p is q
            for group, ps in zip(pairs, params, strict=True)
            for (p, _), q in zip(group, ps, strict=True)
        )
        if current is None or not kept:
            current = cls(
                [
                    {**{k: v for k, v in g.items() if k != "params"}, "params": ps}
                    for g, ps in zip(state_dict["param_groups"], params, strict=True)
                ]
            )
        current.load_state_dict(state_dict)
        self.memo[index] = current
        return current
