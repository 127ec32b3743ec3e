"""The Dataset value and the checksummed on-disk cache every builder goes through.

A builder is registered with `@register("dataset", name, params=...)` and returns a Dataset.
`prepare_dataset` builds it once into `<data_dir>/<name>-<hash>.pt` with a SHA-256 sidecar;
`load_dataset` verifies that checksum and rebuilds a corrupt or truncated file instead of
silently using it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from sparsebench import atomic, registry
from sparsebench.spec import Component

log = logging.getLogger(__name__)


@dataclass
class Dataset:
    """Train/test tensors and what a model needs to know about them."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    @property
    def language_model(self) -> bool:
        """True for next-token data, whose quality is also reported as perplexity."""
        return self.meta.get("task") == "lm"

    def to_state(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Dataset:
        return cls(**state)


def dataset_file(component: Component, data_dir: str | Path) -> Path:
    """Where the cached tensors of this dataset (name + params) live."""
    digest = hashlib.sha256(json.dumps(component.params, sort_keys=True).encode()).hexdigest()[:10]
    return Path(data_dir) / f"{component.name}-{digest}.pt"


def build_dataset(component: Component) -> Dataset:
    entry = registry.get("dataset", component.name)
    params = registry.make_params("dataset", component.name, component.params)
    return entry.obj(params)


def prepare_dataset(component: Component, data_dir: str | Path) -> Path:
    """Build the dataset into the cache unless a verified copy is already there."""
    path = dataset_file(component, data_dir)
    if atomic.digest_ok(path):
        return path
    buffer = io.BytesIO()
    torch.save(build_dataset(component).to_state(), buffer)
    atomic.write_with_digest(path, buffer.getvalue())
    return path


def load_dataset(component: Component, data_dir: str | Path | None = None) -> Dataset:
    """Load from the cache (verified), or build in memory when no cache dir is given."""
    if data_dir is None:
        return build_dataset(component)
    path = dataset_file(component, data_dir)
    if not atomic.digest_ok(path):
        if path.exists():
            log.warning("dataset cache %s failed its checksum; rebuilding", path)
        prepare_dataset(component, data_dir)
    state = torch.load(path, weights_only=True)
    return Dataset.from_state(state)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
