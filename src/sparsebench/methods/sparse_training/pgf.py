"""Progressive Gradient Flow (Bambhaniya, Yazdanbakhsh, Subramanian, Kao, Agrawal, Krishna,
"Progressive Gradient Flow for Robust N:M Sparsity Training in Transformers", CPAL 2025,
arXiv 2402.04744), after the authors' code: github.com/abhibambhaniya/
progressive_gradient_flow_nm_sparsity, timm/sparse_pruning/sparse_functions.py (masks, decays,
SDGF frames) and train.py (phases, step count).

Update rule, in three phases over the run: dense training for steps t <= `sparse_start`; a decay
phase for sparse_start < t <= `finetune_start` (L = finetune_start - sparse_start steps); then
plain N:M training with a binary mask (the target pattern) to the end. The N:M mask is recomputed
at every step from the dense weights' magnitudes. In the decay phase, let t' = t - sparse_start - 1,
the number of updates already made in it (0 at its first step, as train.py's `current_step_num`):
- MDGF (`mode="mdgf"`): the forward uses W * (M + (1 - M) * a), a float mask whose value on
  pruned weights decays from 1: linearly a = max(0, 1 - c t') or exponentially a = exp(-c t'),
  c = `decay_coef` (a constant per step, 2e-4 by default, as in the authors' code; it is not
  fitted to L, so a reaches 0 within the phase only if c (L - 1) >= 1 for the linear decay,
  and the exponential never does: the binary mask after finetune_start sets it to 0);
- SDGF (`mode="sdgf"`): binary masks whose pattern follows a sequence of F frames; frame i
  starts at t' = floor(i L / F) (get_decay_config). `structure_decay="sparsify"`
  (SDGF-stepwise): (M-1):M, M/2:M, M/4:M, ..., N:M (floor(log2(M/N)) + 1 frames, none below
  N, and N:M appended if M/N is no power of two; 1:8: 7:8, 4:8, 2:8, 1:8); `"fine"`
  (SDGF-geometric): 8N:8M, 4N:4M, 2N:2M, N:M, four frames at the target density with groups
  shrinking to M (1:8: 8:64, 4:32, 2:16, 1:8).
The authors' backward passes the gradient of the effective weight straight through to the dense
weights (`backward="ste"`); `backward="autograd"` differentiates the float mask instead, so
pruned weights' gradients are scaled by a.

Layers whose flattened input size is not divisible by M stay dense (listed in the metrics); a
geometric frame whose group size does not divide a layer's input is halved, at the same density,
until it does. `sparse_start_step`/`finetune_start_step` are absolute; when unset they come from
the fractions and the run's `total_steps` (given to `prepare`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn as nn
from torch.nn.utils import parametrize

from sparsebench.checks import check_choice, check_range
from sparsebench.data.base import Dataset
from sparsebench.methods.sparse_training.base import SparseTrainingMethod
from sparsebench.registry import register
from sparsebench.sparsity.masked import PRUNABLE
from sparsebench.sparsity.masks import NM, fits_nm, nm_mask, parse_nm
from sparsebench.sparsity.schedules import mask_decay, resolve_step

FINE_FRAMES = 4
"""Frames of the geometric SDGF sequence (`num_sparse_frames = 4` in get_decay_config)."""


@dataclass(frozen=True)
class PgfParams:
    nm: str = "1:8"
    mode: Literal["mdgf", "sdgf"] = "mdgf"
    decay: Literal["linear", "exp"] = "exp"
    decay_coef: float = 2e-4
    backward: Literal["ste", "autograd"] = "ste"
    structure_decay: Literal["sparsify", "fine"] = "sparsify"
    sparse_start_step: int | None = None
    finetune_start_step: int | None = None
    sparse_start_fraction: float = 0.0
    finetune_start_fraction: float = 0.75  # train.py defaults to no fine-tune phase

    def __post_init__(self) -> None:
        parse_nm(self.nm)
        check_choice("mode", self.mode, ("mdgf", "sdgf"))
        check_choice("decay", self.decay, ("linear", "exp"))
        check_choice("backward", self.backward, ("ste", "autograd"))
        check_choice("structure_decay", self.structure_decay, ("sparsify", "fine"))
        check_range("decay_coef", self.decay_coef, 0.0)
        check_range("sparse_start_fraction", self.sparse_start_fraction, 0.0, 1.0)
        check_range(
            "finetune_start_fraction", self.finetune_start_fraction, self.sparse_start_fraction, 1.0
        )


def sdgf_frames(target: NM, kind: str) -> list[NM]:
    """The SDGF pattern sequence over the decay phase, ending at the target (get_decay_config)."""
    n, m = target.n, target.m
    if kind == "fine":
        return [NM(n << k, m << k) for k in reversed(range(FINE_FRAMES))]
    count = int(math.log2(m / n)) + 1
    frames = [NM(max(m - 1 if i == 0 else m >> i, n), m) for i in range(count)]
    # sparse_functions.py stops above N:M when M/N is no power of two; we end at the target.
    return frames if frames[-1] == target else [*frames, target]


def frame_index(elapsed: int, length: int, frames: int) -> int:
    """Which of `frames` equal frames of a `length`-step phase holds update `elapsed` (0-based);
    frame i starts at floor(i * length / frames), as the authors' frame start epochs."""
    return sum(1 for i in range(1, frames) if i * length // frames <= elapsed)


def fitted(nm: NM, weight: torch.Tensor) -> NM:
    """`nm`, halved at the same density until its groups fit `weight`'s rows: a geometric frame
    may be coarser than a layer (sparse_functions.py groups the flattened weight instead)."""
    while not fits_nm(weight, nm):
        nm = NM(nm.n // 2, nm.m // 2)
    return nm


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
        mask = nm_mask(weight.abs(), fitted(self.phase.nm, weight))
        values = torch.where(mask, 1.0, self.phase.factor).to(weight.dtype)
        if self.straight_through:
            return _StraightThrough.apply(weight, values)
        return weight * values


@register("sparse_training", "pgf", params=PgfParams)
class Pgf(SparseTrainingMethod):
    """N:M training that cuts the gradient flow to pruned weights progressively."""

    total_steps: int | None = None
    checkpoint_attrs = ("next_step",)
    seed_batchable = False
    """Its decayed N:M projection is a parametrization of the forward pass, which the batched
    forward does not run per seed."""

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
        self.frames = sdgf_frames(self.target, p.structure_decay)
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
            length = self.finetune_start - self.sparse_start
            elapsed = step - self.sparse_start - 1
            return Phase(self.frames[frame_index(elapsed, length, len(self.frames))], 0.0)
        p = self.params
        # train.py subtracts the dense steps divided by 100 (a bug); t' counts from sparse_start.
        return Phase(self.target, mask_decay(step, self.sparse_start + 1, p.decay, p.decay_coef))

    def enter(self, step: int) -> None:
        new = self.phase_at(step)
        self.phase.nm, self.phase.factor = new.nm, new.factor

    def dense_weight_grad(self, step: int) -> bool:
        """Pruned weights get a gradient (and so the weight gradient is dense) under the
        straight-through backward, or while the mask still lets a decayed value through."""
        return self.params.backward == "ste" or self.phase_at(step).factor != 0.0

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
