"""scikit-learn's bundled 8x8 handwritten digits (1797 images), split 80/20 by a fixed seed."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from sparsebench.data.base import Dataset
from sparsebench.registry import register

SPLIT_SEED = 0


@dataclass(frozen=True)
class DigitsParams:
    test_fraction: float = 0.2


@register("dataset", "digits", params=DigitsParams, produces="image")
def build(params: DigitsParams) -> Dataset:
    """8x8 digits scaled to [0, 1], images shaped (1, 8, 8)."""
    from sklearn.datasets import load_digits

    raw = load_digits()
    x = torch.tensor(raw.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(raw.target, dtype=torch.int64)
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(SPLIT_SEED))
    n_test = int(round(len(y) * params.test_fraction))
    test, train = order[:n_test], order[n_test:]
    return Dataset(
        x_train=x[train],
        y_train=y[train],
        x_test=x[test],
        y_test=y[test],
        num_classes=10,
        meta={"source": "sklearn.datasets.load_digits", "layout": "2d"},
    )
