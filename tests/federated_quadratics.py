"""Heterogeneous quadratics f_i(x) = 1/2 ||A_i x - b_i||^2 with exact gradients, and federated
strategies driven on them through the strategy API the way the synchronous engine drives them
(broadcast, corrected local steps, client_message, aggregate): shared by the SCAFFOLD-family
tests."""

import torch

from sparsebench import registry
from sparsebench.methods.federated.base import Strategy

CLIENTS, DIM, ROWS = 4, 6, 8
PARTIAL = [[0, 1], [2, 3], [1, 2], [3, 0]] * 3  # 2 of 4 clients a round
FULL = [list(range(CLIENTS))]


def make_strategy(name: str, opts: dict, per_round: int) -> Strategy:
    params = registry.make_params(
        "federated", name, {"clients": CLIENTS, "clients_per_round": per_round, **opts}
    )
    return registry.get("federated", name).obj(params, 0)


def quadratics(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A_i [N, ROWS, DIM] with singular values in [0.5, 1.5], b_i [N, ROWS], and the global
    optimum x* = (sum_i A_i^T A_i)^-1 sum_i A_i^T b_i of sum_i f_i."""
    g = torch.Generator().manual_seed(seed)
    left = torch.linalg.qr(torch.randn(CLIENTS, ROWS, DIM, generator=g)).Q
    right = torch.linalg.qr(torch.randn(CLIENTS, DIM, DIM, generator=g)).Q
    a = left @ torch.diag_embed(torch.rand(CLIENTS, DIM, generator=g) + 0.5) @ right
    b = torch.randn(CLIENTS, ROWS, generator=g) * 3
    optimum = torch.linalg.solve(torch.einsum("nri,nrj->ij", a, a), torch.einsum("nri,nr->i", a, b))
    return a, b, optimum


def rounds(
    strategy: Strategy,
    a: torch.Tensor,
    b: torch.Tensor,
    schedule: list[list[int]],
    steps: int = 5,
    lr: float = 0.1,
) -> torch.Tensor:
    """The global iterates [R, DIM] after each round of `schedule` (the clients sampled)."""
    x, iterates = torch.zeros(DIM), []
    for sampled in schedule:
        messages = []
        for i in sampled:
            y = x.clone()
            for _ in range(steps):
                extra = strategy.gradient_correction([i], y[None], x)
                y = y - lr * (a[i].T @ (a[i] @ y - b[i]) + (0 if extra is None else extra[0]))
            messages.append(strategy.client_message(i, x, y, steps, lr))
        x = strategy.aggregate(x, messages, [1] * len(sampled))
        iterates.append(x)
    return torch.stack(iterates)
