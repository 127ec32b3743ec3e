"""Many models of one architecture as one batched computation: the pieces the federated
simulator (clients) and the seed-batched trainer (seeds of one cell) share.

Each model's parameters are one row of stacked tensors [R, *shape]; the forward is
`torch.func.vmap` over `functional_call`, and the backward is plain autograd on the sum of the
rows' mean losses, whose gradient with respect to row r's parameters is exactly row r's own
gradient (the rows share nothing).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode


def model_batchable(model: nn.Module) -> bool:
    """Whether the model can run batched over rows: no buffers (batch-norm statistics would be
    shared), and no dropout that draws (its random draws would differ from an unbatched run)."""
    if any(True for _ in model.buffers()):
        return False
    return not any(
        isinstance(m, nn.modules.dropout._DropoutNd) and m.p > 0 for m in model.modules()
    )


def row_losses(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Each row's mean cross-entropy [R] from logits [R, B, K] (or [R, B, V, T] for
    sequences) and targets [R, B] ([R, B, T]). Plain classifier logits are scored in a
    [1, K, R*B] layout: the same values and gradients, several times faster on CPU than
    [R*B, K] when the classes are few."""
    rows = logits.shape[0]
    flat, labels = logits.flatten(0, 1), target.flatten(0, 1)
    if flat.dim() == 2:
        per = F.cross_entropy(flat.t().contiguous()[None], labels[None], reduction="none")
    else:
        per = F.cross_entropy(flat, labels, reduction="none")
    return per.view(rows, -1).mean(1)


class WeightFirstLinear(TorchFunctionMode):
    """Compute `F.linear(x, W, b)` as (W x^T)^T + b. The value is the same product; what
    changes is its backward: the weight gradient comes out as grad^T x, [R, out, in] in W's
    own layout, where x W^T would return it transposed, and adding a transposed gradient to
    the rows' parameters (a strided copy) costs about as much as the whole backward pass."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is not F.linear or args[0].dim() < 2 or args[1].dim() != 2:
            return func(*args, **kwargs)
        x, weight = args[0], args[1]
        bias = args[2] if len(args) > 2 else kwargs.get("bias")
        out = torch.matmul(weight, x.mT).mT
        return out if bias is None else out + bias
