"""Tile-wise top-k with per-tensor 2-bit values: SparseLoCo's codec (arXiv 2508.15706), after
tplr-ai/templar's src/tplr/compress.py (`ChunkingTransformer`, `TopKCompressor`; our code).

Each parameter tensor is cut into h x w tiles, h and w the largest divisors of its two dims
not above `side` (64; templar's `_get_smaller_split`), so a tile never crosses a tensor and
nothing is padded; a 1-D tensor is one row of 1 x w tiles. Each tile keeps its k largest |x|
(templar's `_clamp_topk`: k capped at the tile size, at least 2, even), each addressed within
its tile in 12 bits (`pack_12bit_indices`). The kept values of one tensor are centred on
their mean and put in 2**bits bins of width range * std / 2**bits; a bin decodes to the mean
of the values in it (`_quantize_values`). Wire per tensor: packed indices, packed bin codes,
the bin means and the shift (fp32); templar holds each 2-bit code in a uint8, we pack four a
byte (the size the paper counts).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from sparsebench.comm.bits import bits_for, pack, unpack
from sparsebench.comm.compressors import Compressor
from sparsebench.comm.payload import Payload

INDEX_BITS = 12
"""templar's index width; wider only for tiles over 4096 values (side > 64), which it refuses."""


def largest_divisor(n: int, side: int) -> int:
    """The largest divisor of n not above `side` (n itself when n <= side)."""
    return max(d for d in range(1, min(n, side) + 1) if n % d == 0)


def clamp_k(k: int, size: int) -> int:
    """templar's `_clamp_topk` (at most the tile, at least 2, even), then capped at the tile
    size again: templar's top-k fails on 1-value tiles, which we send whole."""
    k = max(min(k, size), 2)
    return min(k - k % 2, size)


@dataclass(frozen=True)
class Tiling:
    """How one tensor is cut: seen as a rows x cols matrix of h x w tiles keeping k each."""

    rows: int
    cols: int
    h: int
    w: int
    k: int

    @property
    def numel(self) -> int:
        return self.rows * self.cols

    @property
    def tiles(self) -> int:
        return self.numel // (self.h * self.w)

    @property
    def index_bits(self) -> int:
        return max(INDEX_BITS, bits_for(self.h * self.w))

    def cut(self, flat: torch.Tensor) -> torch.Tensor:
        """The tensor's values as (tiles, h * w), each tile row-major."""
        grid = flat.view(self.rows // self.h, self.h, self.cols // self.w, self.w)
        return grid.permute(0, 2, 1, 3).reshape(self.tiles, self.h * self.w)

    def join(self, tiles: torch.Tensor) -> torch.Tensor:
        """Inverse of `cut`: the flat tensor."""
        grid = tiles.view(self.rows // self.h, self.cols // self.w, self.h, self.w)
        return grid.permute(0, 2, 1, 3).reshape(-1)


def tiling(shape: torch.Size, side: int, k: int) -> Tiling:
    """Tiles of at most side x side for a tensor of `shape`. templar tiles only 1-D and 2-D
    tensors; we see one of 3+ dims as (dim 0, the rest) and a scalar as 1 x 1."""
    rows, cols = (1, shape.numel()) if len(shape) < 2 else (shape[0], shape[1:].numel())
    h, w = largest_divisor(rows, side), largest_divisor(cols, side)
    return Tiling(rows, cols, h, w, clamp_k(k, h * w))


def quantize(values: torch.Tensor, bits: int, range_: float) -> tuple[torch.Tensor, ...]:
    """One tensor's kept values as bin codes, the bins' means (centred) and the shift."""
    bins, values = 2**bits, values.flatten()
    shift = values.mean().reshape(1)
    centred = values - shift
    std = centred.norm() / math.sqrt(max(centred.numel() - 1, 1))
    width = range_ * std / bins
    width = width if width > 0 else torch.tensor(1.0)
    codes = (centred / width + bins // 2).round().clamp(0, bins - 1).to(torch.int64)
    sums = torch.zeros(bins).scatter_add_(0, codes, centred)
    counts = torch.zeros(bins).scatter_add_(0, codes, torch.ones_like(centred))
    lookup = torch.where(counts > 0, sums / counts.clamp_min(1), torch.zeros(bins))
    return codes, lookup, shift


def scatter_mean(
    tiling: Tiling, indices: list[torch.Tensor], values: list[torch.Tensor]
) -> torch.Tensor:
    """The flat tensor in which each coordinate is the mean of the values sent for it (by
    however many senders sent it) and zero where none did: templar's `decompress`
    (scatter_reduce "mean", include_self=False) over the senders' concatenated entries."""
    out = torch.zeros(tiling.tiles, tiling.h * tiling.w, device=values[0].device)
    out.scatter_reduce_(
        1, torch.cat(indices, 1), torch.cat(values, 1), reduce="mean", include_self=False
    )
    return tiling.join(out)


class TileTopKQuant(Compressor):
    """Compress a flat vector that concatenates tensors of `shapes`, tensor by tensor.
    `density` sets k for a full side x side tile (templar: topk_compression / target_chunk**2)."""

    biased = True

    def __init__(
        self,
        shapes: list[torch.Size],
        density: float,
        side: int = 64,
        bits: int = 2,
        range_: float = 6.0,
    ) -> None:
        k = round(density * side * side)
        self.tilings = [tiling(torch.Size(s), side, k) for s in shapes]
        self.bits = bits
        self.range = range_

    def _split(self, flat: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return flat.flatten().to(torch.float32).split([t.numel for t in self.tilings])

    def compress(self, x: torch.Tensor) -> Payload:
        tensors = {}
        for i, (t, part) in enumerate(zip(self.tilings, self._split(x.detach()), strict=True)):
            tiles = t.cut(part)
            indices = torch.topk(tiles.abs(), t.k, dim=1, sorted=False).indices
            codes, lookup, shift = quantize(torch.gather(tiles, 1, indices), self.bits, self.range)
            tensors[f"{i}.indices"] = pack(indices, t.index_bits)
            tensors[f"{i}.codes"] = pack(codes, self.bits)
            tensors[f"{i}.lookup"], tensors[f"{i}.shift"] = lookup, shift
        return Payload(tensors, x.shape)

    def sparse(self, payload: Payload) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per tensor, the (tiles, k) within-tile indices and their decoded values."""
        out = []
        for i, t in enumerate(self.tilings):
            n = t.tiles * t.k
            indices = unpack(payload.tensors[f"{i}.indices"], n, t.index_bits)
            codes = unpack(payload.tensors[f"{i}.codes"], n, self.bits)
            values = payload.tensors[f"{i}.lookup"][codes] + payload.tensors[f"{i}.shift"]
            out.append((indices.view(t.tiles, t.k), values.view(t.tiles, t.k)))
        return out

    def decompress(self, payload: Payload) -> torch.Tensor:
        parts = [
            scatter_mean(t, [indices], [values])
            for t, (indices, values) in zip(self.tilings, self.sparse(payload), strict=True)
        ]
        return torch.cat(parts).view(payload.shape)
