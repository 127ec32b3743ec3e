import math
from itertools import groupby

import pytest
import torch
import torch.nn as nn

from sparsebench import registry
from sparsebench.engines.trainer import train
from sparsebench.models.mlp import MLP
from sparsebench.sparsity.masked import measured_density
from sparsebench.sparsity.masks import NM, nm_mask
from sparsebench.spec import Budget


def build(**params):
    return registry.get("sparse_training", "pgf").obj(
        registry.make_params("sparse_training", "pgf", params), 0
    )


def setup(model, total_steps=None, **params):
    method = build(**params)
    method.total_steps = total_steps
    method.setup(model, None)
    return method


def nm(pattern: str) -> NM:
    n, m = pattern.split(":")
    return NM(int(n), int(m))


@pytest.mark.parametrize("decay", ["linear", "exp"])
@pytest.mark.parametrize(
    "total_steps, sparse_start_fraction, finetune_start_fraction",
    [(100, 0.0, 0.75), (1000, 0.1, 0.9), (37, 0.2, 0.6)],
)
def test_mdgf_counts_updates_from_the_decay_start_then_switches_to_binary_nm(
    decay, total_steps, sparse_start_fraction, finetune_start_fraction
):
    """train.py passes 0 updates at the first decay step (factor 1), the factor follows
    max(0, 1 - c t') or exp(-c t') to the last decay step, and the next step is binary N:M."""
    method = setup(
        nn.Linear(8, 2),
        total_steps,
        nm="1:8",
        decay=decay,
        decay_coef=0.01,
        backward="autograd",
        sparse_start_fraction=sparse_start_fraction,
        finetune_start_fraction=finetune_start_fraction,
    )
    start = round(sparse_start_fraction * total_steps)
    end = round(finetune_start_fraction * total_steps)
    rule = {"linear": lambda t: max(0.0, 1 - 0.01 * t), "exp": lambda t: math.exp(-0.01 * t)}
    assert method.phase_at(start).nm is None
    assert method.phase_at(start + 1).factor == 1.0
    assert method.phase_at(end).factor == pytest.approx(rule[decay](end - start - 1))
    final = method.phase_at(end + 1)
    assert (final.nm, final.factor) == (NM(1, 8), 0.0)
    assert method.dense_weight_grad(start + 1) and not method.dense_weight_grad(end + 1)


def test_linear_mdgf_factor_reaches_zero_within_the_decay_phase_when_c_allows():
    method = setup(
        nn.Linear(8, 2),
        nm="1:8",
        decay="linear",
        decay_coef=0.1,
        sparse_start_step=0,
        finetune_start_step=30,
    )
    assert method.phase_at(10).factor == pytest.approx(0.1)
    assert [method.phase_at(t).factor for t in (11, 30)] == [0.0, 0.0]


SEQUENCES = {
    "sparsify": {
        "2:4": ["3:4", "2:4"],
        "1:4": ["3:4", "2:4", "1:4"],
        "2:8": ["7:8", "4:8", "2:8"],
        "1:8": ["7:8", "4:8", "2:8", "1:8"],
        "1:16": ["15:16", "8:16", "4:16", "2:16", "1:16"],
    },
    "fine": {
        "2:4": ["16:32", "8:16", "4:8", "2:4"],
        "1:4": ["8:32", "4:16", "2:8", "1:4"],
        "2:8": ["16:64", "8:32", "4:16", "2:8"],
        "1:8": ["8:64", "4:32", "2:16", "1:8"],
    },
}


@pytest.mark.parametrize(
    "structure_decay, target, expected",
    [(kind, t, seq) for kind, table in SEQUENCES.items() for t, seq in table.items()],
)
def test_sdgf_frames_follow_the_reference_sequence_in_equal_frames(
    structure_decay, target, expected
):
    """get_decay_config: the decay phase is cut into len(sequence) equal frames, the last N:M."""
    start, length = 20, 240
    method = setup(
        nn.Linear(16, 2),
        nm=target,
        mode="sdgf",
        structure_decay=structure_decay,
        sparse_start_step=start,
        finetune_start_step=start + length,
    )
    phases = [method.phase_at(t) for t in range(start + 1, start + length + 1)]
    runs = [(key, len(list(group))) for key, group in groupby(p.nm for p in phases)]
    assert runs == [(nm(frame), length // len(expected)) for frame in expected]
    assert all(p.factor == 0.0 for p in phases)
    assert method.phase_at(start).nm is None
    assert method.phase_at(start + length + 1).nm == nm(target)


def test_frames_start_at_the_floor_of_their_share_of_the_decay_phase():
    method = setup(
        nn.Linear(8, 2), nm="1:8", mode="sdgf", sparse_start_step=0, finetune_start_step=10
    )
    patterns = [method.phase_at(t).nm.n for t in range(1, 11)]
    assert patterns == [7, 7, 4, 4, 4, 2, 2, 1, 1, 1]


def test_a_geometric_frame_too_coarse_for_a_layer_is_halved_at_the_same_density():
    torch.manual_seed(0)
    wide, narrow = nn.Linear(64, 3, bias=False), nn.Linear(16, 3, bias=False)
    method = setup(
        nn.ModuleList([wide, narrow]),
        nm="1:8",
        mode="sdgf",
        structure_decay="fine",
        sparse_start_step=0,
        finetune_start_step=40,
    )
    for layer, frame in ((wide, NM(8, 64)), (narrow, NM(2, 16))):
        dense = layer.parametrizations.weight.original
        assert torch.equal(layer.weight != 0, nm_mask(dense.abs(), frame))
    assert method.phase_at(1).nm == NM(8, 64)


@pytest.mark.parametrize(
    "params",
    [
        {"mode": "mdgf", "decay": "linear"},
        {"mode": "mdgf", "decay": "exp"},
        {"mode": "sdgf", "structure_decay": "sparsify"},
        {"mode": "sdgf", "structure_decay": "fine"},
    ],
)
def test_run_ends_with_exact_binary_nm(tiny_data, params):
    model = MLP(8, 32, 1, 4)
    method = setup(model, nm="1:8", sparse_start_step=2, finetune_start_step=10, **params)
    train(model, tiny_data, Budget(steps=12, batch_size=32, eval_every=12), 0, hooks=method)
    assert method.extra_metrics()["final_mask_factor"] == 0.0
    assert measured_density(model)[0] == pytest.approx(1 / 8)
    for layer in (m for m in model.modules() if isinstance(m, nn.Linear)):
        if hasattr(layer, "parametrizations"):
            dense = layer.parametrizations.weight.original
            assert torch.equal(layer.weight != 0, nm_mask(dense.abs(), NM(1, 8)))


def pgf_grads(backward: str, weight: torch.Tensor, x: torch.Tensor):
    layer = nn.Linear(8, 3, bias=False)
    with torch.no_grad():
        layer.weight.copy_(weight)
    method = setup(
        layer,
        nm="2:8",
        backward=backward,
        sparse_start_step=0,
        finetune_start_step=1000,
        decay="linear",
        decay_coef=0.1,
    )
    method.enter(6)
    effective = layer.weight
    (layer(x) ** 2).sum().backward()
    return method.phase.factor, effective.detach(), layer.parametrizations.weight.original.grad


def test_pruned_weights_are_scaled_forward_and_gradient_follows_the_backward_rule():
    torch.manual_seed(0)
    weight, x = torch.randn(3, 8), torch.randn(5, 8)
    groups = weight.abs().reshape(3, 1, 8)
    mask = torch.zeros_like(groups, dtype=torch.bool)
    mask.scatter_(-1, groups.topk(2, dim=-1).indices, True)
    mask = mask.reshape(3, 8)
    factor, effective, ste = pgf_grads("ste", weight, x)
    assert factor == pytest.approx(0.5)
    assert torch.allclose(effective[mask], weight[mask])
    assert torch.allclose(effective[~mask], factor * weight[~mask])
    _, _, exact = pgf_grads("autograd", weight, x)
    assert torch.allclose(exact[mask], ste[mask])
    assert torch.allclose(exact[~mask], factor * ste[~mask])
    assert not torch.allclose(exact[~mask], ste[~mask])


def test_unknown_structure_decay_is_refused():
    with pytest.raises(registry.RegistryError, match="'densify' is not one of"):
        build(structure_decay="densify")
