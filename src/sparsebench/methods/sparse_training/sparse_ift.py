"""Sparse-IFT, Sparse Wide (Thangarasa, Saxena, Gupta, Lie, "Sparse Iso-FLOP Transformations for
Maximizing Training Efficiency", arXiv 2303.11525).

Update rule: before training, replace the MLP's hidden width h by a width w chosen so that the
training FLOPs of the wide network at the requested density (measured with the suite's FLOP
counter, each layer scaled by its exact kept fraction) are as close as possible to the dense
h-wide network's: the paper's iso-FLOP widening, whose factor is about 1/sqrt(density) when
hidden-to-hidden layers dominate, here computed rather than assumed. The wide network is then
trained sparse: with RigL (the paper's choice; magnitude drop, gradient regrow, cosine drop
fraction) or with a static random mask. The first and last layers stay dense, outside the
density budget (CerebrasResearch/Sparse-IFT `should_sparsify` leaves stem and head dense unless
`--maskopt_sparsity_stem/head`), and the FLOP match counts them dense. The other layers'
densities come from the allocation (uniform or ERK). Only models with an `nn.Sequential` `net` of
Linear layers (the suite's MLP) can be widened; the new layers are initialised from the method's
seed.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn as nn

from sparsebench.data.base import Dataset
from sparsebench.methods.sparse_training.base import DstParams, DynamicSparse
from sparsebench.metrics import flop_costs
from sparsebench.registry import register
from sparsebench.sparsity.allocation import Allocation, allocate
from sparsebench.sparsity.dst import gradient_scores
from sparsebench.sparsity.masked import prunable_weights
from sparsebench.sparsity.masks import keep_count
from sparsebench.spec import Regime


@dataclass(frozen=True)
class SparseIftParams(DstParams):
    """RigL's defaults (cosine drop fraction) at the paper's density and uniform allocation."""

    density: float = 0.25
    allocation: Allocation = "uniform"
    sparse_training: Literal["rigl", "static"] = "rigl"
    dense_last_layer: bool = True


def linear_positions(model: nn.Module) -> list[int]:
    """Indices of the Linear layers in `model.net`; refuses models that cannot be widened."""
    net = getattr(model, "net", None)
    if not isinstance(net, nn.Sequential):
        raise ValueError("sparse-ift widens an nn.Sequential `net` of Linear layers (model: mlp)")
    positions = [i for i, layer in enumerate(net) if isinstance(layer, nn.Linear)]
    if len(positions) < 2:
        raise ValueError("sparse-ift needs at least one hidden Linear layer to widen")
    return positions


def widen(model: nn.Module, width: int) -> None:
    """Give every hidden Linear layer of `model.net` `width` units (fresh initialisation)."""
    net, positions = model.net, linear_positions(model)
    for j, i in enumerate(positions):
        old = net[i]
        fan_in = old.in_features if j == 0 else width
        fan_out = old.out_features if j == len(positions) - 1 else width
        net[i] = nn.Linear(fan_in, fan_out, bias=old.bias is not None)


def sparse_train_flops(
    model: nn.Module,
    sample: torch.Tensor,
    density: float,
    allocation: Allocation,
    dense: set[str],
) -> float:
    """Training FLOPs of one sample with each sparse layer at its exact kept fraction and the
    layers in `dense` at full density."""
    weights = {n: w for n, w in prunable_weights(model).items() if n not in dense}
    target = allocate({n: w.shape for n, w in weights.items()}, density, allocation)
    kept = {n: keep_count(w.numel(), target[n]) / w.numel() for n, w in weights.items()}
    return flop_costs(model, sample, {**kept, **dict.fromkeys(dense, 1.0)}, 1)["train_sparse"]


def iso_flop_width(
    model: nn.Module,
    sample: torch.Tensor,
    density: float,
    allocation: Allocation,
    dense: set[str],
) -> int:
    """The hidden width whose sparse training FLOPs are closest to `model`'s dense FLOPs."""
    reference = flop_costs(model, sample, {}, 1)["train_dense"]

    def cost(width: int) -> float:
        wide = copy.deepcopy(model)
        widen(wide, width)
        return sparse_train_flops(wide, sample, density, allocation, dense)

    low = model.net[linear_positions(model)[0]].out_features
    high = low
    while cost(high) < reference:
        low, high = high, high * 2
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if cost(middle) < reference else (low, middle)
    return min((low, high), key=lambda w: abs(cost(w) - reference))


@register(
    "sparse_training",
    "sparse-ift",
    params=SparseIftParams,
    regime=Regime(
        "sgd",
        ("cosine",),
        "Thangarasa et al. 2023 (CIFAR/ImageNet): SGD momentum 0.9, cosine learning rate",
    ),
)
class SparseIft(DynamicSparse):
    """Sparse Wide: iso-FLOP widening of the hidden layers, then sparse training."""

    def setup(self, model: nn.Module, data: Dataset) -> None:
        sample = data.x_train[:1]
        first_hidden = linear_positions(model)[0]
        self.base_width = model.net[first_hidden].out_features
        self.base_flops = flop_costs(model, sample, {}, 1)["train_dense"]
        dense = self.dense_layers(list(prunable_weights(model)))
        self.width = iso_flop_width(
            model, sample, self.params.density, self.params.allocation, dense
        )
        with torch.random.fork_rng():
            torch.manual_seed(self.seed)
            widen(model, self.width)
        super().setup(model, data)

    def dense_layers(self, names: list[str]) -> set[str]:
        """The reference's stem and head: the first layer (DstParams) and the last."""
        return super().dense_layers(names) | (
            {names[-1]} if self.params.dense_last_layer else set()
        )

    def last_update_step(self) -> int:
        """A static mask never updates; RigL keeps its own T_end."""
        return 0 if self.params.sparse_training == "static" else super().last_update_step()

    grows_by_gradient = True

    def grow_scores(self, name: str, weight: nn.Parameter) -> torch.Tensor:
        return gradient_scores(name, weight)

    def extra_metrics(self) -> dict[str, float]:
        return {
            **super().extra_metrics(),
            "width": self.width,
            "width_factor": self.width / self.base_width,
            "dense_reference_train_flops_per_sample": self.base_flops,
        }
