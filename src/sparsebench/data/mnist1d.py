"""MNIST-1D (Greydanus 2020): 40-sample 1-D signals of 10 digit templates, 4000/1000 split.

Generated locally by the `mnist1d` package with its default arguments (seed 42), which is how its
authors recommend building it; no download.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from sparsebench.data.base import Dataset
from sparsebench.registry import register


@dataclass(frozen=True)
class Mnist1dParams:
    num_samples: int = 5000
    shuffle_seq: bool = False


@register("dataset", "mnist1d", params=Mnist1dParams, produces="signal")
def build(params: Mnist1dParams) -> Dataset:
    """MNIST-1D, the standard 4000/1000 train/test split of 5000 generated signals."""
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.num_samples = params.num_samples
    args.shuffle_seq = params.shuffle_seq
    raw = make_dataset(args)
    return Dataset(
        x_train=torch.tensor(raw["x"], dtype=torch.float32),
        y_train=torch.tensor(raw["y"], dtype=torch.int64),
        x_test=torch.tensor(raw["x_test"], dtype=torch.float32),
        y_test=torch.tensor(raw["y_test"], dtype=torch.int64),
        num_classes=10,
        meta={"source": "mnist1d.make_dataset (seed 42)", "layout": "1d"},
    )
