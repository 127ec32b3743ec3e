import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call, grad

from sparsebench import registry
from sparsebench.engines.federated import batched
from sparsebench.engines.federated.clients import model_vector, train_one
from sparsebench.models.mlp import MLP
from sparsebench.spec import Budget


@pytest.mark.parametrize("path", ["sequential", "vmap"])
def test_dfedsam_local_step_uses_the_gradient_at_the_sam_perturbed_point(tiny_data, path):
    rho, lr = 0.5, 0.3
    opts = {"clients": 4, "clients_per_round": 1, "degree": 2, "rho": rho}
    strategy = registry.get("federated", "dfedsam").obj(
        registry.make_params("federated", "dfedsam", opts), 0
    )
    torch.manual_seed(0)
    model = MLP(8, 16, 1, 4)
    x0 = {n: p.detach().clone() for n, p in model.named_parameters()}
    xs, ys = tiny_data.x_train[:32], tiny_data.y_train[:32]
    budget = Budget(local_steps=1, batch_size=32, optimizer="sgd", lr=lr, momentum=0.0)
    start = model_vector(model)
    if path == "sequential":
        train_one(model, strategy, 0, start, xs, ys, budget, torch.Generator())
        got = model_vector(model)
    else:
        got, _ = batched.train_clients(
            model, start, [(xs, ys)], budget, [torch.Generator()], lambda w: None, rho
        )
        got = got[0]

    def loss(params):
        return F.cross_entropy(functional_call(model, params, (xs,)), ys)

    g = grad(loss)(x0)
    norm = torch.cat([t.flatten() for t in g.values()]).norm()
    g_sam = grad(loss)({n: x0[n] + rho * g[n] / norm for n in x0})
    want = torch.cat([(x0[n] - lr * g_sam[n]).flatten() for n in x0])
    plain = torch.cat([(x0[n] - lr * g[n]).flatten() for n in x0])
    assert torch.allclose(got, want, atol=1e-5)
    assert not torch.allclose(got, plain, atol=1e-4)
