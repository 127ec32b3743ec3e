"""The shortcuts the fast simulator takes give exactly what the long way gives: bytes counted
without building payloads equal the serialized size, batched uploads equal per-client ones (and
leave the strategy in the same state), a round's correction computed once equals the per-step
one, minibatches drawn at once equal the `batches` stream, and the stacked rows of a batched
upload are used without copying, and a round's trained vectors given back are written into
again only when nothing else holds them."""

import pytest
import torch

from sparsebench import registry
from sparsebench.comm.compressors import QSGD, Identity, RandK, ScaledSign, TopK
from sparsebench.engines.context import RunContext
from sparsebench.engines.federated.clients import message_bytes, model_vector, partition_clients
from sparsebench.engines.federated.local import local_training
from sparsebench.engines.federated.plans import draws
from sparsebench.engines.trainer import batches
from sparsebench.methods.federated.base import ControlVariateStrategy, Uploads, stack_rows
from sparsebench.models.mlp import MLP
from sparsebench.seeds import all_seeds
from sparsebench.spec import Budget, Component, RunSpec

D = 300


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.float64, torch.bfloat16])
def test_a_floating_tensor_counts_as_its_serialized_fp32_payload(dtype):
    t = torch.randn(7, 11).to(dtype)
    payload = Identity().compress(t)
    assert message_bytes({"x": t}) == payload.nbytes == len(payload.to_bytes()) == 7 * 11 * 4


@pytest.mark.parametrize(
    "codec",
    [TopK(0.1), RandK(0.1, 0), QSGD(4, 64, 0), ScaledSign()],
    ids=lambda c: type(c).__name__,
)
def test_a_compressed_message_counts_as_its_serialized_wire_tensors(codec):
    payload = codec.compress(torch.randn(D))
    assert message_bytes(dict(payload.tensors)) == payload.nbytes == len(payload.to_bytes())


def _strategy(name: str, opts: dict):
    params = registry.make_params("federated", name, {"clients": 6, "clients_per_round": 4, **opts})
    return registry.get("federated", name).obj(params, 3)


CASES = [
    ("fedavg", {}),
    ("scaffold", {}),
    ("scallion", {"compressor": "identity"}),
    ("scallion", {"compressor": "randk"}),
    ("scallion", {"compressor": "qsgd"}),
    ("scafcom", {"compressor": "topk"}),
    ("scafcom", {"compressor": "sign"}),
]


@pytest.mark.parametrize("name,opts", CASES)
def test_batched_uploads_are_the_per_client_messages_and_leave_the_same_state(name, opts):
    registry.load_all()
    one, together = _strategy(name, opts), _strategy(name, opts)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(D, generator=g)
    controls = isinstance(one, ControlVariateStrategy)
    for strategy in (one, together) if controls else ():  # some clients already hold controls
        strategy.c = 0.1 * torch.randn(D, generator=torch.Generator().manual_seed(1))
        strategy.client_c = {1: torch.ones(D), 4: -torch.ones(D)}
    for rnd in range(2):
        clients = [1, 2, 4, 5] if rnd == 0 else [0, 1, 3, 4]
        trained = x + 0.01 * torch.randn(4, D, generator=g)
        want = [
            one.client_message(c, x, y, 3, 0.1)
            for c, y in zip(clients, trained.clone(), strict=True)
        ]
        got = together.client_messages(Uploads(clients, [x] * 4, trained.clone(), 3, 0.1))
        for a, b in zip(want, got, strict=True):
            assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
        new_x = one.aggregate(x, want, [1] * 4)
        assert torch.equal(together.aggregate(x, got, [1] * 4), new_x)
        x = new_x
    for table in ("client_c", "momentum") if controls else ():
        mine, theirs = getattr(one, table, {}), getattr(together, table, {})
        assert mine.keys() == theirs.keys()
        assert all(torch.equal(mine[k], theirs[k]) for k in mine)
    if controls:
        assert torch.equal(one.c, together.c)


@pytest.mark.parametrize("name", ["fedprox", "scaffold"])
def test_a_round_correction_is_the_per_step_gradient_correction(name):
    registry.load_all()
    strategy = _strategy(name, {"mu": 0.3} if name == "fedprox" else {})
    x = torch.randn(D)
    strategy.c, strategy.client_c = torch.randn(D), {2: torch.randn(D)}
    clients, w = [0, 2, 5], x + torch.randn(3, D)
    correction = strategy.local_correction(clients, x)
    assert torch.equal(correction(w, slice(None)), strategy.gradient_correction(clients, w, x))
    assert torch.equal(
        correction(w[1:2], slice(1, 2)), strategy.gradient_correction([2], w[1:2], x)
    )


@pytest.mark.parametrize("n,batch,steps", [(32, 32, 1), (32, 8, 3), (10, 4, 7), (5, 5, 0)])
def test_minibatches_drawn_at_once_are_the_batches_stream(n, batch, steps):
    stream = batches(n, batch, torch.Generator().manual_seed(9))
    want = [next(stream) for _ in range(steps)]
    got = draws(n, batch, steps, torch.Generator().manual_seed(9))
    assert got.shape == (steps, batch)
    assert all(torch.equal(a, b) for a, b in zip(want, got, strict=True))


def test_the_rows_of_one_tensor_stack_without_a_copy_and_anything_else_is_stacked():
    base = torch.randn(4, D)
    assert stack_rows(list(base.unbind())) is base
    for rows in (list(base[[0, 2, 1, 3]].unbind()), [r.clone() for r in base], list(base[:3])):
        stacked = stack_rows(rows)
        assert stacked is not base and torch.equal(stacked, torch.stack(rows))


def test_a_recycled_round_buffer_is_reused_only_once_nothing_else_holds_it(tiny_data):
    registry.load_all()
    opts = {"clients": 8, "clients_per_round": 2, "partition": "iid"}
    strategy = registry.get("federated", "fedavg").obj(
        registry.make_params("federated", "fedavg", opts), 0
    )
    spec = RunSpec("federated", Component("fedavg", opts), Component("tiny"), Component("mlp"))
    ctx = RunContext(
        spec, tiny_data, MLP(8, 16, 1, 4), strategy, Budget(batch_size=16), all_seeds(0)
    )
    setup = local_training(ctx, partition_clients(ctx))
    start = model_vector(ctx.model)
    first, _ = setup.train([0, 1], 1, start)
    row = first[0]  # a view some caller kept
    setup.recycle(first)
    del first
    second, _ = setup.train([0, 1], 2, start)
    assert second.data_ptr() != row.data_ptr()
    kept = second.data_ptr()
    setup.recycle(second)
    del second
    third, _ = setup.train([2, 3], 3, start)
    assert third.data_ptr() == kept
