"""SparseLoCo follows the authors' code (tplr-ai/templar): tiles within each tensor, per-tensor
2-bit statistics, error feedback scaled by the outer lr, median-norm clipping per tensor and
each coordinate averaged over the workers that sent it; bytes are the serialized payloads."""

import math

import torch

from sparsebench import registry
from sparsebench.engines import workers
from sparsebench.engines.context import RunContext
from sparsebench.models import build_model
from sparsebench.seeds import all_seeds
from sparsebench.spec import Budget, Component, RunSpec

SHAPES = [torch.Size([10]), torch.Size([128, 192]), torch.Size([100, 70])]


class FakePool:
    """Shared parameters only; the local steps are replaced by known pseudo-gradients."""

    lr = 0.01

    def __init__(self, workers: int, d: int) -> None:
        self.workers, self.x = workers, torch.randn(d)

    def flat(self) -> torch.Tensor:
        return self.x.clone()

    def assign(self, flat: torch.Tensor) -> None:
        self.x = flat.clone()


class KnownLocalSteps:
    """Stands in for LocalWorkers: each round, worker w ends at x - deltas()[w]."""

    def __init__(self, method, deltas) -> None:
        self.method, self.make_deltas, self.deltas, self.params = method, deltas, [], []

    def inner_step(self, pool) -> list[float]:
        self.deltas = self.make_deltas()
        self.params = [self.method.global_ - d for d in self.deltas]
        return [0.0] * pool.workers

    def restart(self, start: torch.Tensor) -> None:
        self.params = [start.clone() for _ in self.params]


def make(shapes, deltas, **params):
    """A bound SparseLoCo on a FakePool whose workers' pseudo-gradients `deltas()` gives."""
    values = {"workers": 4, "inner_steps": 1, **params}
    method = registry.get("compression", "sparseloco").obj(
        registry.make_params("compression", "sparseloco", values), 0
    )
    method.bind(shapes)
    pool = FakePool(values["workers"], sum(s.numel() for s in shapes))
    method._start(pool)
    method.local = KnownLocalSteps(method, deltas)
    return method, pool


def pairs(values: list[float], d: int = 64) -> list[torch.Tensor]:
    """Worker p's vector: values[p] at coordinates 2p and 2p + 1, zero elsewhere."""
    out = []
    for p, v in enumerate(values):
        x = torch.zeros(d)
        x[2 * p : 2 * p + 2] = v
        out.append(x)
    return out


def blocks(x: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """The h x w blocks of matrix x as rows of h * w values."""
    rows, cols = x.shape
    return x.view(rows // h, h, cols // w, w).permute(0, 2, 1, 3).reshape(-1, h * w)


def test_tiles_are_64x64_within_each_tensor_and_never_straddle_tensors():
    codec = make(SHAPES, list)[0].codec  # the defaults: 64 x 64 tiles, 64 kept per tile
    x = torch.randn(sum(s.numel() for s in SHAPES))
    decoded = codec.decompress(codec.compress(x))
    sizes = [s.numel() for s in SHAPES]
    (bias, bias_out), (a, a_out), (b, b_out) = zip(
        x.split(sizes), decoded.split(sizes), strict=True
    )
    assert bool((bias_out != 0).all())  # a 10-value tile keeps min(64, 10) values
    # 128 x 192 cuts into 64 x 64 tiles; 100 x 70 into 50 x 35 (largest divisors <= 64).
    for tensor, out, shape, (h, w) in [
        (a, a_out, SHAPES[1], (64, 64)),
        (b, b_out, SHAPES[2], (50, 35)),
    ]:
        tiles, sent = blocks(tensor.view(shape), h, w), blocks(out.view(shape), h, w)
        assert all(int((row != 0).sum()) == 64 for row in sent)
        kept = tiles.abs().topk(64, dim=1).indices.sort(1).values
        assert torch.equal((sent != 0).nonzero()[:, 1].view(-1, 64), kept)


def test_a_coordinate_sent_by_two_of_four_peers_is_averaged_over_two():
    deltas = pairs([1.0, 1.0, 1.0, 1.0])
    deltas = [deltas[0], deltas[0], deltas[1], deltas[1]]  # peers 0, 1 send 0-1; 2, 3 send 2-3
    method, pool = make([torch.Size([8, 8])], lambda: deltas, chunk=8, density=2 / 64)
    x = pool.x.clone()
    method.step(pool, 1)
    expected = torch.zeros(64)
    expected[:4] = 1.0  # (1 + 1) / 2, not (1 + 1) / 4
    assert torch.allclose(x - pool.x, expected, atol=1e-6)


def test_each_peer_is_clipped_to_the_median_norm_of_each_tensor():
    scaled, ones = pairs([1.0, 2.0, 3.0, 10.0]), pairs([1.0] * 4)
    deltas = [torch.cat([s, o]) for s, o in zip(scaled, ones, strict=True)]
    shapes = [torch.Size([8, 8])] * 2
    method, pool = make(shapes, lambda: deltas, chunk=8, density=2 / 64)
    x = pool.x.clone()
    method.step(pool, 1)
    # Norms of tensor 0: sqrt(2) * [1, 2, 3, 10], median (lower middle) 2 sqrt(2): values
    # above 2 clip to 2; tensor 1's norms are equal, so nothing there is clipped.
    expected = torch.zeros(128)
    expected[:8] = torch.tensor([1.0, 1, 2, 2, 2, 2, 2, 2])
    expected[64:72] = 1.0
    assert torch.allclose(x - pool.x, expected, atol=1e-5)


def test_quantization_statistics_are_per_tensor_so_both_scales_reconstruct():
    torch.manual_seed(0)
    codec = make([torch.Size([8, 8])] * 2, list, chunk=8, density=1.0)[0].codec
    large, small = torch.randn(64), 1e-3 * (5 + 0.1 * torch.randn(64))
    decoded = codec.decompress(codec.compress(torch.cat([large, small])))
    for x, out in zip([large, small], decoded.split(64), strict=True):
        # Every value decodes to the mean of its bin, drawn from its own tensor only.
        assert bool((out >= x.min() - 1e-7).all() and (out <= x.max() + 1e-7).all())
        assert float((out - x).pow(2).mean().sqrt()) <= 0.5 * float(x.std())


def test_error_buffer_takes_outer_lr_scaled_delta_and_bytes_equal_serialized_payloads():
    d = sum(s.numel() for s in SHAPES)
    deltas = lambda: [torch.randn(d) for _ in range(2)]  # noqa: E731
    method, pool = make(SHAPES, deltas, workers=2, decay=0.9, outer_lr=0.5)
    codec, errors = method.codec, [torch.zeros(d) for _ in range(2)]
    for step in range(1, 4):
        out = method.step(pool, step)
        sizes = []
        for w in range(2):
            buffer = 0.9 * errors[w] + 0.5 * method.local.deltas[w]
            payload = codec.compress(buffer)
            errors[w] = buffer - codec.decompress(payload)
            sizes.append(len(payload.to_bytes()))
            assert torch.allclose(method.errors[w], errors[w], atol=1e-5)
        assert out.bytes_up == sizes
    sent = [10, 6 * 64, 4 * 64]  # kept values per tensor: the bias whole, 64 per tile
    per_tensor = [math.ceil(n * 12 / 8) + math.ceil(n * 2 / 8) + 4 * 4 + 4 for n in sent]
    assert out.bytes_up == [sum(per_tensor)] * 2
    assert out.bytes_down == [min(sum(per_tensor), 4 * d)] * 2


def test_a_tiny_run_through_the_compression_engine_sends_the_codec_bytes(tiny_data):
    params = {"workers": 2, "inner_steps": 2}
    spec = RunSpec(
        "compression", Component("sparseloco", params), Component("tiny"), Component("mlp")
    )
    torch.manual_seed(0)
    model = build_model(Component("mlp", {"hidden": 16}), tiny_data.input_shape, 4)
    method = registry.get("compression", "sparseloco").obj(
        registry.make_params("compression", "sparseloco", params), 1
    )
    budget = Budget(steps=4, batch_size=16, lr=0.01, eval_every=2)
    result = workers.run(RunContext(spec, tiny_data, model, method, budget, all_seeds(0)))
    # Every tensor of this MLP fits one tile, which keeps min(64, its size) values.
    assert all(max(p.shape) <= 64 for p in model.parameters())
    sent = [min(64, p.numel()) for p in model.parameters()]
    message = sum(math.ceil(n * 12 / 8) + math.ceil(n * 2 / 8) + 4 * 4 + 4 for n in sent)
    assert result.status == "ok" and math.isfinite(result.metrics["test_acc"])
    assert result.costs["bytes"]["up"] == 2 * 2 * message  # 2 rounds, 2 workers
