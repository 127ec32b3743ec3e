"""Compressors: encode a flat tensor into a Payload and decode it back.

Each states whether it is biased (then it needs error feedback to converge) and is
deterministic given its generator, so simulated workers reproduce exactly.
"""

from __future__ import annotations

import torch

from sparsebench.comm.bits import bits_for, pack, unpack
from sparsebench.comm.payload import Payload
from sparsebench.seeds import derive
from sparsebench.sparsity.masks import keep_count


class Compressor:
    biased: bool = False

    def compress(self, x: torch.Tensor) -> Payload:
        raise NotImplementedError

    def decompress(self, payload: Payload) -> torch.Tensor:
        raise NotImplementedError


class Identity(Compressor):
    """Send every value as fp32: the uncompressed all-reduce baseline."""

    def compress(self, x: torch.Tensor) -> Payload:
        return Payload({"values": x.detach().to(torch.float32).flatten().clone()}, x.shape)

    def decompress(self, payload: Payload) -> torch.Tensor:
        return payload.tensors["values"].view(payload.shape)


class TopK(Compressor):
    """Keep the k = round(density * d) largest |x_i|; send fp32 values and int32 indices."""

    biased = True

    def __init__(self, density: float) -> None:
        self.density = density

    def compress(self, x: torch.Tensor) -> Payload:
        flat = x.detach().flatten()
        k = keep_count(flat.numel(), self.density)
        indices = torch.topk(flat.abs(), k, sorted=False).indices
        return Payload(
            {"values": flat[indices].to(torch.float32), "indices": indices.to(torch.int32)},
            x.shape,
        )

    def decompress(self, payload: Payload) -> torch.Tensor:
        values = payload.tensors["values"]
        out = torch.zeros(payload.shape.numel(), dtype=torch.float32, device=values.device)
        out[payload.tensors["indices"].long()] = values
        return out.view(payload.shape)


def sparse_payload(x: torch.Tensor) -> Payload:
    """Encode the nonzeros of `x` as (fp32 values, int32 indices), or densely when that is
    smaller: how a server would broadcast an aggregate of sparse updates."""
    flat = x.detach().flatten()
    indices = torch.nonzero(flat).flatten()
    if indices.numel() * 8 >= flat.numel() * 4:
        return Identity().compress(x)
    return Payload(
        {"values": flat[indices].to(torch.float32), "indices": indices.to(torch.int32)}, x.shape
    )


def decode_any(payload: Payload) -> torch.Tensor:
    """Decode a payload made by Identity or TopK/sparse_payload, judged by its tensors."""
    if "indices" in payload.tensors:
        return TopK(1.0).decompress(payload)
    return Identity().decompress(payload)


class RandK(Compressor):
    """Send the values at k = round(density * d) coordinates drawn from a seed every worker
    shares, so no indices travel; decoding scales them by d/k, which makes it unbiased.

    Each worker holds its own RandK with the same seed; their call counters advance in lockstep,
    so in any one round they all pick the same coordinates (and a server can add the values
    directly). The round number rides in `meta`, which is not sent: every party knows it.
    """

    scaled = True
    """Whether decoding multiplies the values by d/k (subclasses may send them as they are)."""

    def __init__(self, density: float, seed: int) -> None:
        self.density = density
        self.seed = seed
        self.round = 0

    def stream(self, round_: int) -> int:
        """The seed of round `round_`'s coordinates, the same for every worker."""
        return derive(self.seed, f"randk/round/{round_}")

    def indices(self, d: int, round_: int) -> torch.Tensor:
        generator = torch.Generator().manual_seed(self.stream(round_))
        return torch.randperm(d, generator=generator)[: keep_count(d, self.density)]

    def compress(self, x: torch.Tensor) -> Payload:
        flat = x.detach().flatten().to(torch.float32)
        chosen = self.indices(flat.numel(), self.round)
        payload = Payload({"values": flat[chosen].clone()}, x.shape, {"round": self.round})
        self.round += 1
        return payload

    def decompress(self, payload: Payload) -> torch.Tensor:
        d = payload.shape.numel()
        chosen = self.indices(d, int(payload.meta["round"]))
        scale = d / chosen.numel() if self.scaled else 1.0
        out = torch.zeros(d, dtype=torch.float32, device=payload.tensors["values"].device)
        out[chosen] = payload.tensors["values"] * scale
        return out.view(payload.shape)


class QSGD(Compressor):
    """QSGD (Alistarh et al. 2017): per bucket of `bucket` values, send the fp32 L2 norm and,
    per value, sign * level with level in {0..s} rounded stochastically so that E[decode] = x.

    sign * level takes 2s + 1 values, packed in ceil(log2(2s + 1)) bits each.
    """

    def __init__(self, levels: int, bucket: int, seed: int) -> None:
        self.levels = levels
        self.bucket = bucket
        self.generator = torch.Generator().manual_seed(seed)
        self.bits = bits_for(2 * levels + 1)

    def _buckets(self, flat: torch.Tensor) -> torch.Tensor:
        pad = (-flat.numel()) % self.bucket
        return torch.cat([flat, flat.new_zeros(pad)]).view(-1, self.bucket)

    def compress(self, x: torch.Tensor) -> Payload:
        flat = x.detach().flatten().to(torch.float32)
        rows = self._buckets(flat)
        norms = rows.norm(dim=1, keepdim=True)
        scaled = rows.abs() / norms.clamp_min(torch.finfo(torch.float32).tiny) * self.levels
        floor = scaled.floor()
        up = torch.rand(scaled.shape, generator=self.generator) < (scaled - floor)
        signed = torch.sign(rows) * (floor + up.to(torch.float32))
        codes = (signed.flatten()[: flat.numel()] + self.levels).to(torch.int64)
        return Payload({"norms": norms.flatten(), "codes": pack(codes, self.bits)}, x.shape)

    def decompress(self, payload: Payload) -> torch.Tensor:
        d = payload.shape.numel()
        signed = unpack(payload.tensors["codes"], d, self.bits).to(torch.float32) - self.levels
        rows = self._buckets(signed) * payload.tensors["norms"].unsqueeze(1) / self.levels
        return rows.flatten()[:d].view(payload.shape)


class ScaledSign(Compressor):
    """1 bit per value (its sign, bit-packed) and one fp32 scale ||x||_1 / d: the compressor of
    EF-signSGD (Karimireddy et al. 2019), which keeps the update's L1 mass."""

    biased = True

    def compress(self, x: torch.Tensor) -> Payload:
        flat = x.detach().flatten().to(torch.float32)
        scale = flat.abs().mean().reshape(1)
        return Payload({"scale": scale, "signs": pack((flat >= 0).to(torch.int64), 1)}, x.shape)

    def decompress(self, payload: Payload) -> torch.Tensor:
        d = payload.shape.numel()
        signs = unpack(payload.tensors["signs"], d, 1).to(torch.float32) * 2.0 - 1.0
        return (signs * payload.tensors["scale"]).view(payload.shape)
