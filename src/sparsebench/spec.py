"""What to run (RunSpec) and what came out (RunResult): plain data, JSON round-trippable.

A run is one cell of an experiment grid. Its readable key is canonical (params sorted, benchopt
style) so that the same cell always gets the same key, and its folder name is a short hash of
that key, so paths stay short while the readable key lives inside result.json.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

FAMILIES = ("sparse_training", "pruning", "compression", "federated")
BOOKKEEPING_BUDGET_KEYS = frozenset({"checkpoint_every"})
"""Budget keys that never change a run's numbers, so they stay out of its key and folder."""


@dataclass(frozen=True)
class Component:
    """A named, parametrized part of a run: a method, a dataset or a model."""

    name: str
    params: dict[str, Any] = field(default_factory=dict)

    def label(self) -> str:
        """`name[a=1,b=2]` with params sorted; bare `name` when there are none."""
        if not self.params:
            return self.name
        inner = ",".join(f"{k}={_fmt(v)}" for k, v in sorted(self.params.items()))
        return f"{self.name}[{inner}]"

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Component:
        return cls(name=d["name"], params=dict(d.get("params") or {}))


@dataclass(frozen=True)
class RunSpec:
    """One cell of a grid: everything that determines a run's numbers."""

    family: str
    method: Component
    dataset: Component
    model: Component
    hardware: str = "cpu"
    seed: int = 0
    budget: dict[str, Any] = field(default_factory=dict)

    def key(self) -> str:
        return "/".join(self._key_parts(f"seed={self.seed}"))

    def cell_key(self) -> str:
        """The key without the seed: what every seed of one grid cell shares."""
        return "/".join(self._key_parts())

    def _key_parts(self, *seed: str) -> list[str]:
        parts = [
            self.family,
            self.method.label(),
            self.dataset.label(),
            self.model.label(),
            self.hardware,
            *seed,
        ]
        budget = {k: v for k, v in self.budget.items() if k not in BOOKKEEPING_BUDGET_KEYS}
        if budget:
            parts.append(Component("budget", budget).label())
        return parts

    def run_id(self) -> str:
        """Short folder name for this run: the first 12 hex digits of the key's SHA-256."""
        return hashlib.sha256(self.key().encode()).hexdigest()[:12]

    def spec_hash(self) -> str:
        """Hash of the full canonical spec JSON, the run's identity in tracking."""
        return hashlib.sha256(self.to_json().encode()).hexdigest()

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunSpec:
        return cls(
            family=d["family"],
            method=Component.from_dict(d["method"]),
            dataset=Component.from_dict(d["dataset"]),
            model=Component.from_dict(d["model"]),
            hardware=d.get("hardware", "cpu"),
            seed=int(d.get("seed", 0)),
            budget=dict(d.get("budget") or {}),
        )

    @classmethod
    def from_json(cls, text: str) -> RunSpec:
        return cls.from_dict(json.loads(text))


@dataclass(frozen=True)
class Budget:
    """How long and how a model is trained; the `budget` section of an experiment grid."""

    steps: int = 1000
    batch_size: int = 100
    lr: float = 1e-2
    optimizer: Literal["adam", "sgd"] = "adam"
    momentum: float = 0.9
    weight_decay: float = 0.0
    eval_every: int = 250
    schedule: Literal["constant", "cosine", "step", "linear"] = "constant"
    lr_milestones: tuple[float, ...] = (0.3, 0.7, 0.9)
    """`step` schedule: fractions of the run at which the rate is multiplied by `lr_gamma`
    (the RigL paper's ImageNet drops at epochs 30, 70 and 90 of 100)."""
    lr_gamma: float = 0.1
    warmup_steps: int = 0
    grad_clip: float = 0.0
    rounds: int = 20
    local_steps: int = 10
    eval_every_rounds: int = 1
    """Federated: evaluate the global model every this many rounds (the last always)."""
    target_acc: float = 0.0
    """Test accuracy whose first crossing defines time-to-target (0: not measured)."""
    checkpoint_every: int = 0
    """Save a resumable checkpoint every this many steps (federated: rounds; 0: never)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "lr_milestones", tuple(float(f) for f in self.lr_milestones))

    def lr_at(self, step: int, total: int) -> float:
        """Learning rate at 1-based `step` of `total`: linear warm-up, then constant, cosine to
        0, linear to 0, or step drops by `lr_gamma` at each passed milestone."""
        if step <= self.warmup_steps:
            return self.lr * step / max(self.warmup_steps, 1)
        progress = min((step - self.warmup_steps) / max(total - self.warmup_steps, 1), 1.0)
        if self.schedule == "cosine":
            return self.lr * 0.5 * (1.0 + math.cos(math.pi * progress))
        if self.schedule == "linear":
            return self.lr * (1.0 - progress)
        if self.schedule == "step":
            passed = sum(step > fraction * total for fraction in self.lr_milestones)
            return self.lr * self.lr_gamma**passed
        return self.lr


@dataclass(frozen=True)
class Regime:
    """The optimizer regime a method's paper trains with (its optimizer and, where the paper
    fixes it, the learning-rate schedule's shape). A cell whose budget departs from it still
    runs; its result, tables and claims say it ran off-regime and how."""

    optimizer: Literal["adam", "sgd"]
    schedules: tuple[str, ...] = ()
    """Schedule shapes the paper's runs use; empty: any."""
    source: str = ""
    """Where the regime is stated (paper section or the authors' config file)."""

    def departures(self, budget: Budget) -> list[str]:
        """How `budget` departs from the regime, one phrase per field (empty: on-regime)."""
        out = []
        if budget.optimizer != self.optimizer:
            out.append(f"optimizer {budget.optimizer} (paper: {self.optimizer})")
        if self.schedules and budget.schedule not in self.schedules:
            out.append(f"schedule {budget.schedule} (paper: {' or '.join(self.schedules)})")
        return out


@dataclass
class RunResult:
    """What a method run returns to the runner; the runner adds identity and provenance."""

    metrics: dict[str, float]
    curves: dict[str, list] = field(default_factory=dict)
    costs: dict[str, Any] = field(default_factory=dict)
    status: str = "ok"
    traffic: list[tuple[int, int]] = field(default_factory=list)
    """Per round: (bytes on the critical path, messages), turned into time per network link."""


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "(" + ",".join(_fmt(v) for v in value) + ")"
    return str(value)
