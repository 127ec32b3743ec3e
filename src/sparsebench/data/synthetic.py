"""A synthetic classification set (scikit-learn's make_classification), sized by params."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from sparsebench.data.base import Dataset
from sparsebench.registry import register


@dataclass(frozen=True)
class SyntheticParams:
    num_samples: int = 2000
    num_features: int = 32
    num_classes: int = 4
    seed: int = 0


@register("dataset", "synthetic", params=SyntheticParams, produces="features")
def build(params: SyntheticParams) -> Dataset:
    """Gaussian clusters with informative and redundant features, 80/20 split."""
    from sklearn.datasets import make_classification

    x, y = make_classification(
        n_samples=params.num_samples,
        n_features=params.num_features,
        n_informative=max(2, params.num_features // 2),
        n_classes=params.num_classes,
        random_state=params.seed,
    )
    split = int(0.8 * params.num_samples)
    xt = torch.tensor(x, dtype=torch.float32)
    yt = torch.tensor(y, dtype=torch.int64)
    return Dataset(
        x_train=xt[:split],
        y_train=yt[:split],
        x_test=xt[split:],
        y_test=yt[split:],
        num_classes=params.num_classes,
        meta={"source": "sklearn make_classification", "layout": "1d"},
    )
