"""Block-scaled 1- and 2-bit quantization, packed into int32 words: the rule, and its compressor.

- The flat input x is cut into blocks of `block` values (the last block may be partial).
- 1 bit: scale = mean |x| over the block's real values; bit = 1 where x >= 0; decode = +-scale.
  32 values per int32: value 32w + j is bit j of word w. With one block spanning the whole
  vector this is EF-signSGD's scaled sign (Karimireddy et al. 2019); smaller blocks keep more of
  the magnitude profile for 4 / block bytes more per value.
- 2 bits: scale = max |x| over the block; code = round((x / scale + 1) * 1.5) in {0..3}, i.e. the
  nearest of the four levels {-1, -1/3, 1/3, 1} * scale; 16 values per int32, value 16w + j in
  bits 2j..2j+1. Padding past the end of the vector is coded 0 and never decoded.

The PyTorch functions here are the rule everywhere; on CUDA tensors `BlockQuant` runs the Triton
kernels of kernels/quant_pack.py (imported only there, so CPU runs never load Triton kernels).
"""

from __future__ import annotations

import math

import torch

from sparsebench.checks import check_choice
from sparsebench.comm.compressors import Compressor
from sparsebench.comm.payload import Payload


def check_layout(bits: int, block: int) -> None:
    """The layouts the packing supports: 1 or 2 bits, blocks of a power of two >= 32 values."""
    check_choice("bits", bits, (1, 2))
    if block < 32 or block & (block - 1):
        raise ValueError(f"block must be a power of two >= 32, got {block}")


def layout(n: int, bits: int, block: int) -> tuple[int, int]:
    """(number of int32 words, number of scale blocks) for n values."""
    check_layout(bits, block)
    blocks = math.ceil(n / block)
    return blocks * block * bits // 32, blocks


def pack_torch(
    x: torch.Tensor, bits: int, block: int = 128, residual: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Quantize flat `x` (+ `residual`): (int32 words, fp32 scales, new residual). The rule
    of the module docstring in plain PyTorch; kernels/quant_pack.py is its Triton twin."""
    n = x.numel()
    n_words, n_blocks = layout(n, bits, block)
    v = x.float() + residual if residual is not None else x.float()
    padded = torch.zeros(n_blocks * block, device=x.device)
    padded[:n] = v
    valid = (torch.arange(n_blocks * block, device=x.device) < n).view(n_blocks, block)
    xb = padded.view(n_blocks, block)
    if bits == 1:
        scales = xb.abs().sum(1) / valid.sum(1).clamp_min(1)
        codes = (xb >= 0) & valid
    else:
        scales = xb.abs().amax(1)
        inv = torch.where(scales > 0, 1.0 / scales, torch.zeros_like(scales))
        codes = ((xb * inv[:, None] + 1.0) * 1.5 + 0.5).to(torch.int32).clamp(0, 3)
        codes = torch.where(valid, codes, 0)
    per = 32 // bits
    shifts = torch.arange(per, device=x.device) * bits
    words = (codes.reshape(-1, per).long() << shifts).sum(1)
    words = torch.where(words >= 2**31, words - 2**32, words).to(torch.int32)
    e_out = None
    if residual is not None:
        e_out = v - decode_torch(words, scales, n, bits, block)
    return words, scales, e_out


def decode_torch(words: torch.Tensor, scales: torch.Tensor, n: int, bits: int, block: int):
    """Decoded fp32 vector (length n) of one sender's words and scales."""
    per = 32 // bits
    shifts = torch.arange(per, device=words.device) * bits
    codes = ((words.long()[:, None] & 0xFFFFFFFF) >> shifts) & ((1 << bits) - 1)
    codes = codes.reshape(scales.numel(), block)
    if bits == 1:
        dec = torch.where(codes == 1, scales[:, None], -scales[:, None])
    else:
        dec = scales[:, None] * (codes.float() * (2.0 / 3.0) - 1.0)
    return dec.reshape(-1)[:n]


class BlockQuant(Compressor):
    """`bits` per value plus one fp32 scale per `block` values (biased: pair it with EF)."""

    biased = True

    def __init__(self, bits: int, block: int) -> None:
        check_layout(bits, block)
        self.bits = bits
        self.block = block

    def compress(self, x: torch.Tensor) -> Payload:
        flat = x.detach().flatten()
        if flat.is_cuda:
            from sparsebench.kernels.quant_pack import pack
        else:
            pack = pack_torch
        words, scales, _ = pack(flat, self.bits, self.block)
        return Payload({"words": words, "scales": scales}, x.shape)

    def decompress(self, payload: Payload) -> torch.Tensor:
        words, scales = payload.tensors["words"], payload.tensors["scales"]
        n = payload.shape.numel()
        if words.is_cuda:
            from sparsebench.kernels.quant_pack import unpack_accumulate

            acc = torch.zeros(n, dtype=torch.float32, device=words.device)
            flat = unpack_accumulate(words[None], scales[None], n, self.bits, self.block, acc)
        else:
            flat = decode_torch(words, scales, n, self.bits, self.block)
        return flat.view(payload.shape)
