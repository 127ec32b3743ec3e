"""SR-STE (Zhou, Ma, Zhu, Liu, Zhang, Yuan, Sun, Li, "Learning N:M Fine-grained Structured Sparse
Neural Networks From Scratch", ICLR 2021, arXiv 2102.04010).

Update rule: every forward uses W~ = W * M(W), where M keeps the N largest |w| of each group of
M consecutive inputs of every output row, recomputed at each step from the dense weights W.
The backward is straight-through to W with the sparse-refined term added:
W <- W - lr (dL/dW~ + lambda (1 - M) * W), lambda = `decay` (2e-4 as in the authors' code;
lambda = 0 is plain STE). The mask lives in a torch parametrization on each layer's `weight`,
so `module.weight` is the effective N:M weight (what density is measured on) while the
optimizer updates the dense original.

Layers whose input size (in_features, or in_channels for convolutions) is not divisible by M
cannot hold the pattern and stay dense; they are listed in the metrics as `dense_layer/<name>`.
Groups run along input features (Linear) or input channels at each kernel position (Conv),
as in sparsity/masks.py `nm_mask`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
from torch.nn.utils import parametrize

from sparsebench.checks import check_range
from sparsebench.data.base import Dataset
from sparsebench.methods.sparse_training.base import SparseTrainingMethod
from sparsebench.registry import register
from sparsebench.sparsity.masked import PRUNABLE
from sparsebench.sparsity.masks import NM, fits_nm, nm_mask, parse_nm
from sparsebench.spec import Regime


@dataclass(frozen=True)
class SrsteParams:
    nm: str = "2:4"
    decay: float = 2e-4

    def __post_init__(self) -> None:
        parse_nm(self.nm)
        check_range("decay", self.decay, 0.0)


class _SparseRefinedSte(torch.autograd.Function):
    """W * M(W) forward; gradient + decay * (1 - M) * W backward."""

    @staticmethod
    def forward(ctx, weight: torch.Tensor, nm: NM, decay: float) -> torch.Tensor:
        mask = nm_mask(weight.abs(), nm)
        ctx.save_for_backward(weight, mask)
        ctx.decay = decay
        return weight * mask

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        weight, mask = ctx.saved_tensors
        return grad + ctx.decay * (~mask) * weight, None, None


class NMSparse(nn.Module):
    """Parametrization that presents the N:M-masked weight to the layer."""

    def __init__(self, nm: NM, decay: float) -> None:
        super().__init__()
        self.nm, self.decay = nm, decay

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return _SparseRefinedSte.apply(weight, self.nm, self.decay)


def sparsify_nm(model: nn.Module, nm: NM, decay: float) -> list[str]:
    """Parametrize every prunable layer that fits the pattern; return the names kept dense."""
    dense = []
    for name, module in list(model.named_modules()):
        if not isinstance(module, PRUNABLE):
            continue
        if fits_nm(module.weight, nm):
            parametrize.register_parametrization(module, "weight", NMSparse(nm, decay))
        else:
            dense.append(f"{name}.weight")
    return dense


@register(
    "sparse_training",
    "srste",
    params=SrsteParams,
    regime=Regime(
        "sgd",
        ("cosine",),
        "aojunzz/NM-sparsity configs/config_resnet50_2:4.yaml: SGD momentum 0.9, cosine",
    ),
)
class Srste(SparseTrainingMethod):
    """N:M from scratch: masked forward, straight-through backward with sparse-refined decay."""

    seed_batchable = False
    """Its N:M projection is a parametrization of the forward pass (a custom autograd
    function), which the batched forward does not run per seed."""

    def dense_weight_grad(self, step: int) -> bool:
        """The straight-through estimator updates every weight: its gradient is dense."""
        return True

    def setup(self, model: nn.Module, data: Dataset) -> None:
        self.dense_layers = sparsify_nm(model, parse_nm(self.params.nm), self.params.decay)

    def extra_metrics(self) -> dict[str, float]:
        return {f"dense_layer/{name}": 1.0 for name in self.dense_layers}
