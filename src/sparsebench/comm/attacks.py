"""Byzantine attacks: what a malicious client uploads instead of its honest update."""

from __future__ import annotations

import torch


def attack(
    delta: torch.Tensor, kind: str, scale: float, generator: torch.Generator
) -> torch.Tensor:
    """What a Byzantine client uploads instead of its honest update `delta`.

    sign-flip: -scale * delta; scaled: scale * delta; gaussian: scale * N(0, I) noise.
    """
    if kind == "sign-flip":
        return -scale * delta
    if kind == "scaled":
        return scale * delta
    if kind == "gaussian":
        return scale * torch.randn(delta.shape, generator=generator, dtype=delta.dtype)
    raise ValueError(f"attack must be one of sign-flip, gaussian, scaled; got {kind!r}")
