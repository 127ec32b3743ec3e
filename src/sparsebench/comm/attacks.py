"""Byzantine attacks: what a malicious client uploads instead of its honest update.

Per-client attacks see only the attacker's own update:

- sign-flip: -scale * delta; scaled: scale * delta; gaussian: scale * N(0, I) noise.

Omniscient, colluding attacks see every honest update of the round, and all Byzantine clients
send the same vector:

- alie: mu - z * sigma, with mu and sigma the coordinate-wise mean and (sample) standard deviation
  of the honest updates and z = Phi^{-1}((n - s) / n), s = floor(n / 2 + 1) - f (Baruch, Baruch
  and Goldberg, "A Little Is Enough: Circumventing Defenses For Distributed Learning", NeurIPS
  2019; s is floored at 1 when the Byzantine clients hold the round's majority).
- ipm: -epsilon * mean(honest updates) (Xie, Koyejo and Gupta, "Fall of Empires: Breaking
  Byzantine-tolerant SGD by Inner Product Manipulation", UAI 2020). A small epsilon (0.1, the
  default) keeps the vectors close to the honest ones to slip past median and Krum; the uniform
  mean is turned against the honest direction once epsilon > (n - f) / f.
"""

from __future__ import annotations

import math
from statistics import NormalDist

import torch

PER_CLIENT = ("sign-flip", "gaussian", "scaled")
OMNISCIENT = ("alie", "ipm")
ATTACKS = PER_CLIENT + OMNISCIENT
IPM_EPSILON = 0.1


def check_attack(kind: str) -> None:
    """Refuse an unknown attack name, listing the valid ones."""
    if kind not in ATTACKS:
        raise ValueError(f"attack must be one of {', '.join(ATTACKS)}; got {kind!r}")


def attack(
    delta: torch.Tensor, kind: str, scale: float, generator: torch.Generator
) -> torch.Tensor:
    """What a Byzantine client running a per-client attack uploads instead of `delta`."""
    check_attack(kind)
    if kind == "sign-flip":
        return -scale * delta
    if kind == "scaled":
        return scale * delta
    if kind == "gaussian":
        return scale * torch.randn(delta.shape, generator=generator, dtype=delta.dtype)
    raise ValueError(f"attack {kind!r} needs the round's honest updates; use attack_round")


def alie_z(n: int, f: int) -> float:
    """ALIE's z_max for f Byzantine among n clients: Phi^{-1}((n - s) / n) with
    s = floor(n / 2 + 1) - f, the honest clients the attackers must sway to a majority. Where the
    sampled Byzantine clients already hold a majority (s < 1, z infinite), s is taken as 1."""
    if not 1 <= f < n:
        raise ValueError(f"alie needs 1 <= f < n, got n={n}, f={f}")
    s = max(math.floor(n / 2 + 1) - f, 1)
    return NormalDist().inv_cdf((n - s) / n)


def alie(honest: torch.Tensor, n: int, f: int, z: float | None = None) -> torch.Tensor:
    """ALIE's vector mu - z * sigma from the honest updates [h, d]; z defaults to alie_z(n, f)."""
    if honest.shape[0] < 2:
        raise ValueError(f"alie needs at least 2 honest updates, got {honest.shape[0]}")
    z = alie_z(n, f) if z is None else z
    return honest.mean(0) - z * honest.std(0)


def ipm(honest: torch.Tensor, epsilon: float = IPM_EPSILON) -> torch.Tensor:
    """IPM's vector -epsilon * mean of the honest updates [h, d]."""
    if honest.shape[0] < 1:
        raise ValueError("ipm needs at least 1 honest update")
    return -epsilon * honest.mean(0)


def attack_round(
    deltas: torch.Tensor,
    byzantine: list[bool],
    kind: str,
    scale: float,
    generator: torch.Generator,
    *,
    epsilon: float = IPM_EPSILON,
    z: float | None = None,
) -> torch.Tensor:
    """The round's uploads [n, d]: the honest updates `deltas` with every row flagged in
    `byzantine` replaced by its attack (per-client attacks in row order; the omniscient ones
    share one vector built from the unflagged rows, with n = len(deltas), f = flagged rows)."""
    check_attack(kind)
    mask = torch.tensor(byzantine, dtype=torch.bool)
    out = deltas.clone()
    if not mask.any():
        return out
    if kind in PER_CLIENT:
        for i in mask.nonzero().flatten().tolist():
            out[i] = attack(deltas[i], kind, scale, generator)
        return out
    honest, n, f = deltas[~mask], len(byzantine), int(mask.sum())
    out[mask] = alie(honest, n, f, z) if kind == "alie" else ipm(honest, epsilon)
    return out
