"""The layer-by-layer loop of post-training pruning from calibration data.

SparseGPT's `opt.py` (Frantar & Alistarh 2023), reused by Wanda and DSnoT, walks a transformer
block by block: it records each block's inputs on a few calibration sequences, gathers per-layer
statistics of those inputs, prunes, and recomputes the outputs with the pruned weights before the
next block. We do the same one prunable layer at a time, in registration order (the forward order
of every model in this package): a forward pass over the calibration sequences of the model as
pruned so far stops at the layer (the "catcher" trick of the reference code), a hook accumulates
the statistics of the layer's inputs, a method-specific rule returns the mask and the new weight,
and the loop moves on. Later layers thus see the errors of earlier ones, as in the reference.

What is accumulated per layer, over calibration tokens x (rows of X, one per token):
the Gram matrix X^T X (SparseGPT's Hessian up to a factor 2/n), the per-feature sum (DSnoT's
mean), and the count. Wanda's ||X_j||_2 is sqrt(diag(X^T X)). A second, held-out set of
sequences gives the per-layer reconstruction error ||(W - W') X||_F / ||W X||_F, computed exactly
from its Gram matrix as sqrt(tr(D G D^T) / tr(W G W^T)) with D = W - W', so no activations are
stored. Conv layers are handled by unfolding their inputs into patches (weights flattened to
(out, in * kernel)).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F

from sparsebench.sparsity.masked import PRUNABLE


@dataclass
class InputStats:
    """Running statistics of one layer's input features over calibration tokens."""

    gram: torch.Tensor
    total: torch.Tensor
    count: int = 0

    @classmethod
    def empty(cls, features: int) -> InputStats:
        return cls(torch.zeros(features, features, dtype=torch.float64), torch.zeros(features))

    def add(self, x: torch.Tensor) -> None:
        x = x.detach().to(torch.float64)
        self.gram += x.T @ x
        self.total += x.sum(0).to(self.total.dtype)
        self.count += x.shape[0]

    @property
    def sq_norm(self) -> torch.Tensor:
        """||X_j||_2^2 per input feature (Wanda's statistic, squared)."""
        return self.gram.diagonal().float()

    @property
    def mean(self) -> torch.Tensor:
        return (self.total / max(self.count, 1)).float()

    @property
    def var(self) -> torch.Tensor:
        """Population variance per input feature."""
        second = self.gram.diagonal() / max(self.count, 1)
        return (second - self.mean.double() ** 2).clamp_min(0.0).float()


def wanda_scores(weight: torch.Tensor, stats: InputStats) -> torch.Tensor:
    """Wanda's score |W_ij| * ||X_j||_2 (Sun et al. 2023), which DSnoT also ranks by."""
    return weight.abs() * stats.sq_norm.sqrt()[None, :]


@dataclass
class LayerResult:
    """What a layer rule returns: the keep mask and the weight to install (2-D, (out, in))."""

    mask: torch.Tensor
    weight: torch.Tensor


Rule = Callable[[str, torch.Tensor, InputStats], LayerResult]


@dataclass
class CalibrationReport:
    """Per-layer reconstruction error on held-out sequences and the time spent in the rules."""

    recon_error: dict[str, float] = field(default_factory=dict)
    prune_s: float = 0.0
    total_s: float = 0.0

    def as_report(self) -> dict:
        """Costs (per-layer errors, seconds) plus the mean error as a metric for tables/claims."""
        errors = list(self.recon_error.values())
        return {
            "recon_error_per_layer": dict(self.recon_error),
            "prune_rule_s": self.prune_s,
            "calibration_s": self.total_s,
            "metrics": {"recon_error_mean": sum(errors) / len(errors) if errors else 0.0},
        }


class _Stop(Exception):
    """Raised by the capture hook: nothing after the layer needs computing."""


def layer_inputs(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The layer's input as a (tokens, in_features) matrix matching `flat_weight(module)`."""
    if isinstance(module, nn.Linear):
        return x.reshape(-1, x.shape[-1])
    if isinstance(module, nn.Conv1d):
        x, kernel = x.unsqueeze(-1), (module.kernel_size[0], 1)
        stride, pad, dil = (module.stride[0], 1), (module.padding[0], 0), (module.dilation[0], 1)
    else:
        kernel, stride, pad, dil = (
            module.kernel_size,
            module.stride,
            module.padding,
            module.dilation,
        )
    if module.groups != 1 or isinstance(pad, str):
        raise ValueError("calibration supports convolutions with groups=1 and numeric padding")
    patches = F.unfold(x, kernel, dilation=dil, padding=pad, stride=stride)
    return patches.transpose(1, 2).reshape(-1, patches.shape[1])


def flat_weight(module: nn.Module) -> torch.Tensor:
    return module.weight.detach().reshape(module.weight.shape[0], -1)


@torch.no_grad()
def collect(model: nn.Module, module: nn.Module, x: torch.Tensor, batch: int) -> InputStats:
    """Statistics of `module`'s inputs when the model runs on `x`, stopping at the layer."""
    stats = InputStats.empty(flat_weight(module).shape[1])

    def hook(_module: nn.Module, args: tuple) -> None:
        stats.add(layer_inputs(module, args[0]))
        raise _Stop

    handle = module.register_forward_pre_hook(hook)
    try:
        for start in range(0, len(x), batch):
            with contextlib.suppress(_Stop):
                model(x[start : start + batch])
    finally:
        handle.remove()
    return stats


def recon_error(dense: torch.Tensor, pruned: torch.Tensor, stats: InputStats) -> float:
    """||(W - W') X||_F / ||W X||_F from the Gram matrix of X."""
    w, d = dense.double(), (dense - pruned).double()
    num = torch.einsum("oi,ij,oj->", d, stats.gram, d)
    den = torch.einsum("oi,ij,oj->", w, stats.gram, w)
    return float(torch.sqrt(num.clamp_min(0.0) / den.clamp_min(1e-30)))


def split_calibration(
    x: torch.Tensor, count: int, heldout: int, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Disjoint random calibration and held-out samples of `x` (fewer if `x` is small)."""
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    count = min(count, max(len(x) - heldout, 1))
    return x[order[:count]], x[order[count : count + heldout]]


@torch.no_grad()
def prune_layerwise(
    model: nn.Module,
    calib: torch.Tensor,
    heldout: torch.Tensor,
    rule: Rule,
    batch: int = 64,
) -> tuple[dict[str, torch.Tensor], CalibrationReport]:
    """Prune every Linear/Conv layer in order with `rule`; install the new weights.

    Returns the keep masks by weight name and the report (held-out reconstruction error per
    layer, seconds spent inside the rule, seconds overall).
    """
    was_training = model.training
    model.eval()
    report = CalibrationReport()
    masks: dict[str, torch.Tensor] = {}
    started = time.perf_counter()
    for name, module in model.named_modules():
        if not isinstance(module, PRUNABLE):
            continue
        key = f"{name}.weight" if name else "weight"
        stats = collect(model, module, calib, batch)
        held = collect(model, module, heldout, batch) if len(heldout) else stats
        dense = flat_weight(module).clone()
        clock = time.perf_counter()
        result = rule(key, dense.clone(), stats)
        report.prune_s += time.perf_counter() - clock
        new = (result.weight * result.mask).to(module.weight.dtype)
        module.weight.copy_(new.reshape(module.weight.shape))
        masks[key] = result.mask.reshape(module.weight.shape).to(torch.bool)
        report.recon_error[key] = recon_error(dense, new, held)
    report.total_s = time.perf_counter() - started
    model.train(was_training)
    return masks, report
