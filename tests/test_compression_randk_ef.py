import torch

from sparsebench import registry
from sparsebench.engines import workers
from sparsebench.engines.context import RunContext
from sparsebench.models import build_model
from sparsebench.seeds import all_seeds
from sparsebench.spec import Budget, Component, RunSpec

D = 500


def make(name: str, **params):
    entry = registry.get("compression", name)
    return entry.obj(registry.make_params("compression", name, params), 0)


def test_randk_ef_sends_unscaled_values_and_memory_keeps_exactly_the_rest():
    method = make("randk-ef", workers=2, density=0.1)
    memories = [torch.zeros(D), torch.zeros(D)]
    for round_ in range(4):
        grads = [torch.randn(D), torch.randn(D)]
        out = method.exchange(grads)
        sent = []
        for w, sender in enumerate(method.senders):
            corrected = memories[w] + grads[w]
            chosen = sender.compressor.indices(D, round_)
            sent.append(torch.zeros(D).index_copy(0, chosen, corrected[chosen]))
            memories[w] = corrected - sent[w]
            assert torch.allclose(sender.memory, memories[w])
            assert int((sender.memory == 0).sum()) >= 50
        assert torch.allclose(out.update, (sent[0] + sent[1]) / 2)
    assert not torch.equal(method.senders[0].memory != 0, method.senders[1].memory != 0)


def test_randk_ef_loses_nothing_sent_plus_memory_is_the_sum_of_gradients():
    method = make("randk-ef", workers=3, density=0.05)
    total_grad, total_update = torch.zeros(D), torch.zeros(D)
    for _ in range(20):
        grads = [torch.randn(D) for _ in range(3)]
        total_grad += torch.stack(grads).mean(0)
        total_update += method.exchange(grads).update
    memory = torch.stack([s.memory for s in method.senders]).mean(0)
    assert torch.allclose(total_update + memory, total_grad, atol=1e-5)


def test_randk_ef_bytes_are_k_values_up_and_the_other_payloads_down():
    method = make("randk-ef", workers=3, density=0.02)
    out = method.exchange([torch.randn(D) for _ in range(3)])
    assert out.bytes_up == [4 * 10] * 3
    assert out.bytes_down == [4 * 10 * 2] * 3


def test_randk_ef_runs_through_the_engine_and_counts_k_values_up(tiny_data):
    params = {"workers": 2, "density": 0.1}
    spec = RunSpec(
        "compression", Component("randk-ef", params), Component("tiny"), Component("mlp")
    )
    torch.manual_seed(0)
    model = build_model(Component("mlp", {"hidden": 16}), tiny_data.input_shape, 4)
    k = round(0.1 * sum(p.numel() for p in model.parameters()))
    method = registry.get("compression", "randk-ef").obj(
        registry.make_params("compression", "randk-ef", params), 1
    )
    budget = Budget(steps=3, batch_size=16, lr=0.01, optimizer="sgd", eval_every=3)
    result = workers.run(RunContext(spec, tiny_data, model, method, budget, all_seeds(0)))
    assert result.status == "ok"
    assert result.costs["bytes"]["up"] == result.costs["bytes"]["down"] == 3 * 2 * 4 * k
