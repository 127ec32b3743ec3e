"""Uncompressed data-parallel SGD: every worker sends its fp32 gradient, the server averages
and broadcasts the fp32 mean (the reference point for every compression ratio)."""

from __future__ import annotations

import torch

from sparsebench.methods.compression.base import (
    CompressionMethod,
    CompressionParams,
    Exchange,
    uncompressed_exchange,
)
from sparsebench.registry import register


@register("compression", "none", params=CompressionParams)
class NoCompression(CompressionMethod):
    """fp32 gradients up, fp32 mean down."""

    def exchange(self, grads: list[torch.Tensor]) -> Exchange:
        return uncompressed_exchange(grads)
