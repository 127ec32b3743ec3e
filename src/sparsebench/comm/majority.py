"""Majority vote on packed sign bits (Bernstein et al., signSGD, ICML 2018; signSGD with
majority vote, ICLR 2019): a worker sends one bit per coordinate, the server sends back one bit
per coordinate, the sign of the sum of the workers' signs.

One bit carries only +1 or -1, so two cases need a convention the papers' sign(0) leaves open:
a worker's zero coordinate is sent as +1, and a tied vote (an even number of workers split
evenly) is sent down as +1. The bit is 1 for +1 (x >= 0), as in ScaledSign. The length d is
known to every party, so no header travels: ceil(d / 8) bytes each way.
"""

from __future__ import annotations

import torch

from sparsebench.comm.bits import pack, unpack
from sparsebench.comm.payload import Payload


def encode_signs(x: torch.Tensor) -> Payload:
    """sign(x) as one bit per coordinate (zero counts as +1)."""
    flat = x.detach().flatten()
    return Payload({"signs": pack((flat >= 0).to(torch.int64), 1)}, x.shape)


def decode_signs(payload: Payload) -> torch.Tensor:
    """The +1/-1 vector a sign payload carries."""
    bits = unpack(payload.tensors["signs"], payload.shape.numel(), 1)
    return (bits.to(torch.float32) * 2.0 - 1.0).view(payload.shape)


def majority(payloads: list[Payload]) -> Payload:
    """The server's reply: sign(sum of the workers' signs) per coordinate, ties sent as +1."""
    votes = torch.stack([decode_signs(p) for p in payloads]).sum(0)
    return encode_signs(votes)
