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


def _layer_flops(model: nn.Module, x: torch.Tensor, backward: bool) -> tuple[int, dict[str, int]]:
    """Total FLOPs of one pass and the part of it done by each prunable layer (by weight name)."""
    prefix = type(model).__name__
    with FlopCounterMode(display=False) as counter:
        out = model(x)
        if backward:
            out.float().sum().backward()
    counts = counter.get_flop_counts()
    per_layer = {}
    for name, module in model.named_modules():
        if isinstance(module, PRUNABLE):
            per_layer[f"{name}.weight"] = int(sum(counts.get(f"{prefix}.{name}", {}).values()))
    model.zero_grad(set_to_none=True)
    return int(counter.get_total_flops()), per_layer


def flop_costs(
    model: nn.Module,
    sample: torch.Tensor,
    density_per_layer: dict[str, float],
    train_samples: int,
) -> dict[str, float]:
    """Dense and sparse FLOPs for one inference sample and for the whole training run."""
    x = sample[:1]
    costs: dict[str, float] = {}
    for kind, backward, scale in (("infer", False, 1), ("train", True, train_samples)):
        total, per_layer = _layer_flops(model, x, backward)
        saved = sum(f * (1.0 - density_per_layer.get(n, 1.0)) for n, f in per_layer.items())
        costs[f"{kind}_dense"] = float(total * scale)
        costs[f"{kind}_sparse"] = float((total - saved) * scale)
    return costs


def peak_memory_bytes() -> int:
    """Peak resident memory of this process (CUDA: peak allocated on the device)."""
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        return int(torch.cuda.max_memory_allocated())
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(rss if sys.platform == "darwin" else rss * 1024)
