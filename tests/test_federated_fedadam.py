import pytest
import torch

from sparsebench import registry

OPTS = {"clients": 2, "clients_per_round": 2, "server_lr": 0.1, "beta1": 0.8, "beta2": 0.9}


@pytest.mark.parametrize(
    ("weighting", "share"), [("uniform", 0.5), ("samples", 0.75)], ids=["paper", "samples"]
)
def test_fedadam_server_step_is_algorithm_2_adam_on_the_mean_client_change(weighting, share):
    params = registry.make_params(
        "federated", "fedadam", {**OPTS, "tau": 0.01, "weighting": weighting}
    )
    server = registry.get("federated", "fedadam").obj(params, 0)
    x = torch.tensor([1.0, -2.0, 0.5])
    m, v = torch.zeros(3), torch.full((3,), 0.01**2)  # Algorithm 2: v_{-1} = tau^2
    for step in range(3):
        deltas = [torch.tensor([0.1, -0.3, 0.0]) * (step + 1), torch.tensor([0.5, 0.2, -0.4])]
        d = share * deltas[0] + (1 - share) * deltas[1]  # sizes 30 and 10
        m = 0.8 * m + 0.2 * d
        v = 0.9 * v + 0.1 * d * d
        want = x + 0.1 * m / (v.sqrt() + 0.01)
        x = server.aggregate(x, [{"delta": t} for t in deltas], [30, 10])
        assert torch.allclose(x, want, atol=1e-7)


def test_the_papers_unweighted_mean_is_the_default():
    assert registry.make_params("federated", "fedadam", {}).weighting == "uniform"
