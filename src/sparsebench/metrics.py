"""Measured quantities: accuracy and loss, a run's final metrics, FLOPs (dense and
density-scaled), peak memory.

FLOPs come from torch.utils.flop_counter on a real forward (and forward + backward) pass; the
sparse count scales each Linear/Conv layer's measured FLOPs by the measured density of its
weight, the counting rule of ShrinkBench's `metrics/flops.py`.
"""

from __future__ import annotations

import math
import resource
import sys
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from sparsebench.sparsity.masked import PRUNABLE


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = 1000) -> dict:
    """Mean cross-entropy, accuracy and perplexity over (x, y), in eval mode, batched.

    Works for classifiers (logits (N, C), targets (N,)) and for language models (logits
    (N, V, T), targets (N, T)): the class dimension is always dim 1, as in F.cross_entropy, and
    means are taken over every target token.
    """
    was_training = model.training
    model.eval()
    loss_sum, correct, count = 0.0, 0, 0
    for start in range(0, len(y), batch):
        logits = model(x[start : start + batch])
        target = y[start : start + batch]
        loss_sum += float(F.cross_entropy(logits, target, reduction="sum"))
        correct += int((logits.argmax(1) == target).sum())
        count += target.numel()
    model.train(was_training)
    loss = loss_sum / count
    return {"loss": loss, "acc": correct / count, "ppl": perplexity(loss)}


def perplexity(loss: float) -> float:
    """exp(mean token cross-entropy), capped at exp(50) so a diverging run stays finite."""
    return math.exp(min(loss, 50.0))


def final_metrics(curves: dict[str, list], language_model: bool) -> dict[str, float]:
    """The metrics every engine reports from its evaluation curves: final and best test
    accuracy, final test (and train) loss, and for language models final and best perplexity.
    Empty when nothing was evaluated (a run that diverged before its first evaluation)."""
    acc, loss = curves.get("test_acc") or [], curves.get("test_loss") or []
    if not acc:
        return {}
    out = {"test_acc": acc[-1], "test_loss": loss[-1], "best_test_acc": max(acc)}
    if curves.get("train_loss"):
        out["train_loss"] = curves["train_loss"][-1]
    if language_model:
        out["test_ppl"] = perplexity(loss[-1])
        out["best_test_ppl"] = perplexity(min(loss))
    return out


@dataclass(frozen=True)
class FlopProfile:
    """FLOPs of one sample through a model, split so that each training step can be charged at
    the density live during that step (the counting rule of Evci et al. 2020, "Rigging the
    Lottery", appendix H: a sparse layer's forward, input-gradient and weight-gradient passes
    each cost its dense FLOPs times its density).

    Per prunable weight (by name): the forward pass, the input-gradient pass (zero for a first
    layer, whose input needs no gradient) and the weight-gradient pass (the forward's FLOPs, for
    linear and convolution layers). `other_*` is everything outside prunable layers (biases,
    activations, normalisation, attention scores, the loss), always charged dense. Ours differs
    from the paper's in counting these dense extras and a first layer's missing input gradient,
    as torch.utils.flop_counter measures them, instead of 3x the forward.
    """

    forward: dict[str, float]
    input_grad: dict[str, float]
    weight_grad: dict[str, float]
    other_forward: float
    other_train: float

    def inference(self, density: dict[str, float]) -> float:
        """FLOPs of one forward pass with each layer at `density` (missing layers: dense)."""
        return self.other_forward + sum(f * density.get(n, 1.0) for n, f in self.forward.items())

    def train(self, density: dict[str, float], dense_weight_grad: bool = False) -> float:
        """FLOPs of one training sample (forward + backward) with each layer at `density`;
        `dense_weight_grad` charges the weight gradient dense (straight-through estimators,
        RigL's gradient at a mask update)."""
        total = self.other_train
        for name, fwd in self.forward.items():
            d = density.get(name, 1.0)
            total += (fwd + self.input_grad[name]) * d
            total += self.weight_grad[name] * (1.0 if dense_weight_grad else d)
        return total

    def dense_train(self) -> float:
        return self.train({})


def _module_flops(model: nn.Module, x: torch.Tensor, backward: bool) -> tuple[float, dict]:
    """Total FLOPs of one pass and the part of it done by each prunable layer (by weight name)."""
    prefix = type(model).__name__
    with FlopCounterMode(display=False) as counter:
        out = model(x)
        if backward:
            out.float().sum().backward()
    counts = counter.get_flop_counts()
    per_layer = {
        f"{name}.weight": float(sum(counts.get(f"{prefix}.{name}", {}).values()))
        for name, module in model.named_modules()
        if isinstance(module, PRUNABLE)
    }
    return float(counter.get_total_flops()), per_layer


def flop_profile(model: nn.Module, sample: torch.Tensor) -> FlopProfile:
    """Measure one sample's FLOPs per layer on a real forward and backward pass, in eval mode
    and under a forked RNG, leaving the model's gradients, mode and the RNG as they were."""
    x = sample[:1]
    was_training = model.training
    grads = {n: p.grad for n, p in model.named_parameters()}
    model.eval()
    with torch.random.fork_rng():
        infer_total, forward = _module_flops(model, x, backward=False)
        model.zero_grad(set_to_none=True)
        train_total, both = _module_flops(model, x, backward=True)
    for name, param in model.named_parameters():
        param.grad = grads[name]
    model.train(was_training)
    # A layer's training FLOPs are forward + weight gradient (= forward) + input gradient.
    return FlopProfile(
        forward=forward,
        input_grad={n: max(both[n] - 2 * forward[n], 0.0) for n in forward},
        weight_grad=dict(forward),
        other_forward=infer_total - sum(forward.values()),
        other_train=train_total - sum(both.values()),
    )


def flop_costs(
    model: nn.Module,
    sample: torch.Tensor,
    density_per_layer: dict[str, float],
    train_samples: int,
    train_executed: float | None = None,
) -> dict[str, float]:
    """Dense and sparse FLOPs for one inference sample and for the whole training run.

    `train_sparse` is `train_executed`, the FLOPs the run's steps executed at the densities
    live then, when the engine counted them; without it, the run is charged at
    `density_per_layer` throughout (right for models that never change their masks).
    """
    profile = flop_profile(model, sample)
    train_sparse = profile.train(density_per_layer) * train_samples
    return {
        "infer_dense": profile.inference({}),
        "infer_sparse": profile.inference(density_per_layer),
        "train_dense": profile.dense_train() * train_samples,
        "train_sparse": train_sparse if train_executed is None else float(train_executed),
    }


def peak_memory_bytes() -> int:
    """Peak resident memory of this process (CUDA: peak allocated on the device)."""
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        return int(torch.cuda.max_memory_allocated())
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(rss if sys.platform == "darwin" else rss * 1024)
