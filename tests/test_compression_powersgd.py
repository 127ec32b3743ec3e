import numpy as np
import pytest
import torch
import torch.distributed as dist
from torch.distributed.algorithms.ddp_comm_hooks import powerSGD_hook as hook

from sparsebench import registry
from sparsebench.comm.powersgd import PowerSGD

SHAPES = [torch.Size(s) for s in [(16, 12), (16,), (8, 4, 3, 3), (4, 5)]]


class Bucket:
    """The part of DDP's GradBucket that powerSGD_hook reads, over one flat buffer."""

    def __init__(self, flat: torch.Tensor) -> None:
        self.flat = flat

    def buffer(self) -> torch.Tensor:
        return self.flat

    def index(self) -> int:
        return 0

    def is_last(self) -> bool:
        return True

    def gradients(self) -> list[torch.Tensor]:
        parts = torch.split(self.flat, [s.numel() for s in SHAPES])
        return [p.view(s) for p, s in zip(parts, SHAPES, strict=True)]


@pytest.fixture
def group(monkeypatch):
    # On loopback gloo needs no hostname lookup (which can fail and abort the process).
    monkeypatch.setenv("GLOO_SOCKET_IFNAME", "lo")
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    yield dist.group.WORLD
    dist.destroy_process_group()


def torch_compressed(rank: int) -> list[bool]:
    """Which tensors powerSGD_hook compresses (its own test, on each tensor's 2-D view)."""
    return [
        hook._should_compress(s[0], s.numel() // s[0], min(s[0], s.numel() // s[0], rank), 2)[0]
        for s in SHAPES
    ]


def torch_initial_qs(rank: int, seed: int) -> dict[int, torch.Tensor]:
    """The Qs powerSGD_hook draws on its first compressed step: one seed from a NumPy RNG,
    then randn per compressed tensor, grouped by shape in first-seen order."""
    torch.manual_seed(np.random.RandomState(seed).randint(1_000_000_000))
    by_shape: dict[torch.Size, list[int]] = {}
    for i, compressed in enumerate(torch_compressed(rank)):
        if compressed:
            by_shape.setdefault(SHAPES[i], []).append(i)
    qs = {}
    for indices in by_shape.values():
        for i in indices:
            cols = SHAPES[i].numel() // SHAPES[i][0]
            qs[i] = torch.randn(1, cols, min(rank, SHAPES[i][0], cols))[0]
    return qs


@pytest.mark.parametrize("rank", [1, 2, 3])
def test_powersgd_matches_pytorch_powersgd_hook(group, rank):
    state = hook.PowerSGDState(group, matrix_approximation_rank=rank, start_powerSGD_iter=2)
    state.iter = 2
    ours = PowerSGD(SHAPES, rank, workers=1, seed=0)
    assert ours.compressed == torch_compressed(rank)
    ours.q = torch_initial_qs(rank, seed=0)
    g = torch.Generator().manual_seed(rank)
    for _ in range(3):
        grad = torch.randn(sum(s.numel() for s in SHAPES), generator=g)
        expected = hook.powerSGD_hook(state, Bucket(grad.clone())).wait()
        mean, _ = ours.reduce([grad])
        assert torch.allclose(mean, expected, atol=1e-5)
        assert torch.allclose(ours.errors[0], state.error_dict[0], atol=1e-5)


def test_powersgd_bytes_are_the_fp32_factors_plus_uncompressed_layers():
    method = registry.get("compression", "powersgd").obj(
        registry.make_params("compression", "powersgd", {"workers": 2, "rank": 2}), 0
    )
    method.bind(SHAPES)
    grads = [torch.randn(sum(s.numel() for s in SHAPES)) for _ in range(2)]
    out = method.exchange(grads)
    factors = (16 + 12) * 2 + (8 + 36) * 2
    assert out.bytes_up == out.bytes_down == [4 * (factors + 16 + 20)] * 2
    assert out.messages == 4


def test_powersgd_error_feedback_carries_what_rank_r_dropped():
    codec = PowerSGD(SHAPES, 1, workers=2, seed=0)
    grads = [torch.randn(sum(s.numel() for s in SHAPES)) for _ in range(2)]
    mean, _ = codec.reduce(grads)
    for grad, error in zip(grads, codec.errors, strict=True):
        first = slice(0, 16 * 12)
        assert torch.allclose(mean[first] + error[first], grad[first], atol=1e-5)
        assert error[16 * 12 : 16 * 12 + 16].abs().sum() == 0


def test_warm_up_steps_all_reduce_the_uncompressed_gradients_as_the_ddp_hook_does():
    params = registry.make_params("compression", "powersgd", {"workers": 2, "start_iter": 2})
    method = registry.get("compression", "powersgd").obj(params, 0)
    shapes = [torch.Size([16, 8]), torch.Size([8])]
    method.bind(shapes)
    numel = sum(s.numel() for s in shapes)
    for _ in range(2):
        grads = [torch.randn(numel) for _ in range(2)]
        out = method.exchange(grads)
        assert torch.equal(out.update, (grads[0] + grads[1]) / 2)
        assert out.bytes_up == [4 * numel] * 2
    assert all(float(e.abs().sum()) == 0.0 for e in method.codec.errors)  # no feedback yet
    compressed = method.exchange([torch.randn(numel) for _ in range(2)])
    assert compressed.bytes_up[0] < 4 * numel
    assert not registry.make_params("compression", "powersgd", {"workers": 2}).start_iter
