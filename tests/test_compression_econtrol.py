import pytest
import torch

from sparsebench import registry
from sparsebench.comm.compressors import TopK, sparse_payload
from sparsebench.comm.feedback import ErrorFeedback
from sparsebench.engines import workers
from sparsebench.engines.context import RunContext
from sparsebench.models import build_model
from sparsebench.seeds import all_seeds
from sparsebench.spec import Budget, Component, RunSpec

D = 500


def make(name: str, **params):
    entry = registry.get("compression", name)
    return entry.obj(registry.make_params("compression", name, params), 0)


def gradients(steps: int, w: int, seed: int = 0) -> list[list[torch.Tensor]]:
    """Random gradients with some exact zeros (where -0.0 and +0.0 could part ways)."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(steps):
        step = [torch.randn(D, generator=g) for _ in range(w)]
        for grad in step:
            grad[torch.rand(D, generator=g) < 0.2] = 0.0
        out.append(step)
    return out


def bits(x: torch.Tensor) -> torch.Tensor:
    return x.contiguous().view(torch.int32)


def test_econtrol_error_and_estimate_recursion_on_hand_computed_tensors():
    method = make("econtrol", workers=1, density=0.5, eta=0.5)
    sender = method.senders[0]

    out = method.exchange([torch.tensor([4.0, -1.0, 2.0, 0.5])])
    # e = 0, h = 0: Delta = top2(g) = [4, 0, 2, 0]; e = g - Delta; h = Delta
    assert torch.equal(sender.estimate, torch.tensor([4.0, 0.0, 2.0, 0.0]))
    assert torch.equal(sender.error, torch.tensor([0.0, -1.0, 0.0, 0.5]))
    assert torch.equal(out.update, torch.tensor([4.0, 0.0, 2.0, 0.0]))

    out = method.exchange([torch.tensor([3.0, 1.0, 2.0, -2.0])])
    # g - h = [-1, 1, 0, -2]; + 0.5 e = [-1, 0.5, 0, -1.75]: top2 keeps coordinates 3 and 0
    # (EF21 would send coordinate 1, which the error says was already owed -1)
    assert torch.equal(sender.estimate, torch.tensor([3.0, 0.0, 2.0, -1.75]))
    assert torch.equal(sender.error, torch.tensor([0.0, 0.0, 0.0, 0.25]))
    assert torch.equal(out.update, torch.tensor([3.0, 0.0, 2.0, -1.75]))
    assert out.bytes_up == [2 * (4 + 4)]


def test_econtrol_with_eta_zero_is_ef21_bit_for_bit():
    econtrol = make("econtrol", workers=3, density=0.05, eta=0.0)
    ef21 = make("topk-ef21", workers=3, density=0.05)
    for grads in gradients(12, 3):
        a = econtrol.exchange([g.clone() for g in grads])
        b = ef21.exchange([g.clone() for g in grads])
        assert torch.equal(bits(a.update), bits(b.update))
        assert (a.bytes_up, a.bytes_down, a.messages) == (b.bytes_up, b.bytes_down, b.messages)
        for mine, theirs in zip(econtrol.senders, ef21.senders, strict=True):
            assert torch.equal(bits(mine.estimate), bits(theirs.estimate))


def test_econtrol_with_eta_one_is_ef14_on_the_ef21_message():
    method = make("econtrol", workers=2, density=0.05, eta=1.0)
    ef14 = [ErrorFeedback(TopK(0.05)) for _ in range(2)]
    estimates = [torch.zeros(D), torch.zeros(D)]
    for grads in gradients(10, 2, seed=1):
        sent = []
        for w, grad in enumerate(grads):
            payload = ef14[w].compress(grad - estimates[w])
            sent.append(ef14[w].compressor.decompress(payload))
            estimates[w] = estimates[w] + sent[w]
        out = method.exchange(grads)
        assert torch.allclose(out.update, torch.stack(estimates).mean(0), atol=1e-6)
        for sender, reference, estimate in zip(method.senders, ef14, estimates, strict=True):
            # the same coordinates sent; values equal up to rounding (EF14 forms its memory
            # as (g - h + e) - Delta, EControl as e + (g - h - Delta))
            assert torch.equal(sender.estimate != 0, estimate != 0)
            assert torch.allclose(sender.estimate, estimate, atol=1e-5)
            assert torch.allclose(sender.error, reference.memory, atol=1e-5)


@pytest.mark.parametrize("eta", [0.0, 0.1, 0.5, 1.0])
def test_econtrol_error_is_exactly_what_the_gradients_asked_and_the_steps_did_not_apply(eta):
    method = make("econtrol", workers=3, density=0.05, eta=eta)
    asked, applied = torch.zeros(D), torch.zeros(D)
    for grads in gradients(20, 3, seed=2):
        asked += torch.stack(grads).mean(0)
        applied += method.exchange(grads).update
    error = torch.stack([s.error for s in method.senders]).mean(0)
    assert torch.allclose(applied + error, asked, atol=1e-4)


def test_econtrol_error_control_changes_the_messages():
    runs = {}
    for eta in (0.0, 0.5):
        method = make("econtrol", workers=2, density=0.05, eta=eta)
        runs[eta] = [method.exchange(grads).update for grads in gradients(5, 2, seed=3)]
    assert torch.equal(runs[0.0][0], runs[0.5][0])  # no error yet: the first step is EF21's
    assert not torch.equal(runs[0.0][-1], runs[0.5][-1])


def test_econtrol_bytes_are_the_serialized_top_k_up_and_the_sparse_mean_down():
    grads = gradients(1, 3, seed=4)[0]
    method = make("econtrol", workers=3, density=0.02)
    out = method.exchange(grads)
    k = round(0.02 * D)
    up = [TopK(0.02).compress(g) for g in grads]  # e = h = 0: the first message is topk(g)
    assert out.bytes_up == [len(p.to_bytes()) for p in up] == [k * (4 + 4)] * 3
    down = sparse_payload(out.update)  # h starts at 0, so the first update is the mean Delta
    assert "indices" in down.tensors
    assert out.bytes_down == [len(down.to_bytes())] * 3
    assert out.bytes_down[0] <= 3 * k * (4 + 4)


def test_econtrol_state_round_trips_so_a_resumed_run_continues_exactly():
    steps = gradients(8, 2, seed=5)
    method = make("econtrol", workers=2, density=0.05, eta=0.3)
    for grads in steps[:4]:
        method.exchange(grads)
    state = method.state_dict()
    resumed = make("econtrol", workers=2, density=0.05, eta=0.3)
    resumed.load_state_dict(state)
    for grads in steps[4:]:
        assert torch.equal(method.exchange(grads).update, resumed.exchange(grads).update)


@pytest.mark.parametrize("eta", [-0.1, 1.5, float("nan")])
def test_econtrol_refuses_eta_outside_zero_one(eta):
    with pytest.raises(registry.RegistryError, match="eta"):
        registry.make_params("compression", "econtrol", {"eta": eta})


def test_econtrol_runs_through_the_engine_and_counts_k_values_and_indices_up(tiny_data):
    params = {"workers": 2, "density": 0.1, "eta": 0.1}
    spec = RunSpec(
        "compression", Component("econtrol", params), Component("tiny"), Component("mlp")
    )
    torch.manual_seed(0)
    model = build_model(Component("mlp", {"hidden": 16}), tiny_data.input_shape, 4)
    k = round(0.1 * sum(p.numel() for p in model.parameters()))
    method = registry.get("compression", "econtrol").obj(
        registry.make_params("compression", "econtrol", params), 1
    )
    budget = Budget(steps=3, batch_size=16, lr=0.01, optimizer="sgd", eval_every=3)
    result = workers.run(RunContext(spec, tiny_data, model, method, budget, all_seeds(0)))
    assert result.status == "ok"
    assert result.costs["bytes"]["up"] == 3 * 2 * k * (4 + 4)
