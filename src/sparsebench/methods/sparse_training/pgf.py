"""Progressive Gradient Flow (Bambhaniya, Yazdanbakhsh, Subramanian, Kao, Agrawal, Krishna,
"Progressive Gradient Flow for Robust N:M Sparsity Training in Transformers", CPAL 2025,
arXiv 2402.04744).

Update rule, in three phases over the run: dense training until `sparse_start`; a decay phase
until `finetune_start`; then plain N:M training with a binary mask (the target pattern,
straight-through gradient) to the end. The N:M mask is recomputed at every step from the dense
weights' magnitudes, as in SR-STE. In the decay phase:
- MDGF (`mode="mdgf"`): the forward uses W * (M + (1 - M) * a(t)), a float mask whose value on
  pruned weights decays from 1 to 0, linearly a = max(0, 1 - c t') or exponentially
  a = exp(-c t'), t' = t - sparse_start, c = `decay_coef` (2e-4 per step in the authors' code);
- SDGF (`mode="sdgf"`): binary masks whose pattern steps from (M-1):M through M/2:M, M/4:M, ...
  to N:M over equal frames of the decay phase (the authors' "sparsify" structure decay).
The authors' backward passes the gradient of the effective weight straight through to the dense
weights (`backward="ste"`); `backward="autograd"` differentiates the float mask instead, so
pruned weights' gradients are scaled by a(t).

Layers whose flattened input size is not divisible by M stay dense (listed in the metrics).
`sparse_start_step`/`finetune_start_step` are absolute; when unset they come from the fractions
and the run's `total_steps` (given to `prepare`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn as nn
from torch.nn.utils import parametrize

from sparsebench.checks import check_range
from sparsebench.data.base import Dataset
from sparsebench.methods.sparse_training.base import SparseTrainingMethod
from sparsebench.registry import register
from sparsebench.sparsity.masked import PRUNABLE
from sparsebench.sparsity.masks import NM, fits_nm, nm_mask, parse_nm
from sparsebench.sparsity.schedules import mask_decay, resolve_step, structure_decay


@dataclass(frozen=True)
class PgfParams:
    nm: str = "1:8"
    mode: Literal["mdgf", "sdgf"] = "mdgf"
    decay: Literal["linear", "exp"] = "exp"
    decay_coef: float = 2e-4
    backward: Literal["ste", "autograd"] = "ste"
    sparse_start_step: int | None = None
    finetune_start_step: int | None = None
    sparse_start_fraction: float = 0.0
    finetune_start_fraction: float = 0.75

    def __post_init__(self) -> None:
        parse_nm(self.nm)
        check_range("decay_coef", self.decay_coef, 0.0)
        check_range("sparse_start_fraction", self.sparse_start_fraction, 0.0, 1.0)
        check_range(
            "finetune_start_fraction", self.finetune_start_fraction, self.sparse_start_fraction, 1.0
        )


@dataclass
class Phase:
    """What the parametrizations apply at the current step: the pattern (None: dense) and the
    float value of the mask on pruned weights."""

    nm: NM | None = None
    factor: float = 0.0


class _StraightThrough(torch.autograd.Function):
    """Multiply by a float mask in the forward; pass the gradient through unchanged."""

    @staticmethod
    def forward(ctx, weight: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        return weight * values

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return grad, None


class DecayedNM(nn.Module):
    """Parametrization: W * (M(W) + (1 - M(W)) * factor) for the phase's N:M pattern."""

    def __init__(self, phase: Phase, straight_through: bool) -> None:
        super().__init__()
        self.phase, self.straight_through = phase, straight_through

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        if self.phase.nm is None:
            return weight
        mask = nm_mask(weight.abs(), self.phase.nm)
        values = torch.where(mask, 1.0, self.phase.factor).to(weight.dtype)
        if self.straight_through:
            return _StraightThrough.apply(weight, values)
        return weight * values


@register("sparse_training", "pgf", params=PgfParams)
class Pgf(SparseTrainingMethod):
    """N:M training that cuts the gradient flow to pruned weights progressively."""

    total_steps: int | None = None
    checkpoint_attrs = ("next_step",)

    def setup(self, model: nn.Module, data: Dataset) -> None:
        p = self.params
        self.target = parse_nm(p.nm)
        self.sparse_start = resolve_step(
            p.sparse_start_step, p.sparse_start_fraction, self.total_steps, "sparse_start_step"
        )
        self.finetune_start = resolve_step(
            p.finetune_start_step,
            p.finetune_start_fraction,
            self.total_steps,
            "finetune_start_step",
        )
        if self.finetune_start < self.sparse_start:
            raise ValueError("finetune_start_step must not come before sparse_start_step")
        self.phase = Phase()
        self.dense_layers = []
        for name, module in list(model.named_modules()):
            if isinstance(module, PRUNABLE) and fits_nm(module.weight, self.target):
                decayed = DecayedNM(self.phase, p.backward == "ste")
                parametrize.register_parametrization(module, "weight", decayed)
            elif isinstance(module, PRUNABLE):
                self.dense_layers.append(f"{name}.weight")
        self.next_step = 1
        self.enter(1)

    def phase_at(self, step: int) -> Phase:
        """Pattern and pruned-weight mask value for the forward of 1-based `step`."""
        if step <= self.sparse_start:
            return Phase(None, 1.0)
        if step > self.finetune_start:
            return Phase(self.target, 0.0)
        if self.params.mode == "sdgf":
            n, m = structure_decay(
                step, self.target.n, self.target.m, self.sparse_start, self.finetune_start
            )
            return Phase(NM(n, m), 0.0)
        factor = mask_decay(step, self.sparse_start, self.params.decay, self.params.decay_coef)
        return Phase(self.target, factor)

    def enter(self, step: int) -> None:
        new = self.phase_at(step)
        self.phase.nm, self.phase.factor = new.nm, new.factor

    def dense_weight_grad(self, step: int) -> bool:
        """Pruned weights get a gradient (and so the weight gradient is dense) under the
        straight-through backward, or while the mask still lets a decayed value through."""
        return self.params.backward == "ste" or self.phase.factor != 0.0

    def after_step(self, step: int) -> None:
        self.next_step = step + 1
        self.enter(self.next_step)

    def load_state_dict(self, state: dict) -> None:
        """Resume in the phase of the step the checkpoint stopped before."""
        super().load_state_dict(state)
        self.enter(self.next_step)

    def extra_metrics(self) -> dict[str, float]:
        metrics = {f"dense_layer/{name}": 1.0 for name in self.dense_layers}
        metrics["final_mask_factor"] = self.phase.factor if self.phase.nm else 1.0
        return metrics
