import math

import pytest
import torch

from sparsebench import registry
from sparsebench.comm.aggregation import combine
from sparsebench.comm.attacks import ATTACKS, alie_z, attack, attack_round, check_attack
from sparsebench.engines.context import RunContext
from sparsebench.engines.federated import run
from sparsebench.engines.federated.clients import byzantine_clients, model_vector
from sparsebench.models.mlp import MLP
from sparsebench.seeds import all_seeds
from sparsebench.spec import Budget, Component, RunSpec


def _updates(honest: int, byzantine: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    center = torch.randn(6, generator=g)
    good = center + 0.01 * torch.randn(honest, 6, generator=g)
    bad = 1e6 * torch.randn(byzantine, 6, generator=g)
    return torch.cat([bad, good]), center


OPTIONS = {"trim_fraction": 0.3, "byzantine": 3, "subspace_dim": 1, "lam": 0.0}


@pytest.mark.parametrize("rule", ["median", "trimmed-mean", "krum", "flag"])
def test_robust_rules_ignore_a_minority_of_arbitrary_updates(rule):
    updates, center = _updates(honest=7, byzantine=3)
    weights = torch.full((10,), 0.1)
    options = OPTIONS
    assert (combine(updates, weights, rule, options) - center).abs().max() < 0.05
    assert (combine(updates, weights, "mean", options) - center).abs().max() > 1e3


def test_flag_aggregate_of_identical_updates_is_that_update():
    v = torch.randn(50, generator=torch.Generator().manual_seed(3))
    got = combine(v.repeat(6, 1), torch.full((6,), 1 / 6), "flag", OPTIONS)
    assert torch.allclose(got, v, atol=1e-5)


def test_attacks_replace_the_honest_update():
    delta, g = torch.ones(4), torch.Generator().manual_seed(0)
    assert torch.equal(attack(delta, "sign-flip", 2.0, g), -2 * delta)
    assert torch.equal(attack(delta, "scaled", 3.0, g), 3 * delta)
    assert not torch.equal(attack(delta, "gaussian", 1.0, g), delta)


def test_byzantine_clients_change_the_run_only_when_present(tiny_data):
    def final(extra: dict) -> torch.Tensor:
        opts = {"clients": 8, "clients_per_round": 8, "partition": "iid", **extra}
        method = registry.get("federated", "fedavg").obj(
            registry.make_params("federated", "fedavg", opts), 0
        )
        spec = RunSpec("federated", Component("fedavg"), Component("tiny"), Component("mlp"))
        budget = Budget(rounds=2, local_steps=2, batch_size=16, optimizer="sgd", lr=0.1)
        torch.manual_seed(0)
        model = MLP(8, 16, 1, 4)
        run(RunContext(spec, tiny_data, model, method, budget, all_seeds(0)))
        return model_vector(model)

    honest = final({})
    flagged = final({"byzantine_fraction": 0.25, "aggregator": "flag"})
    assert torch.isfinite(flagged).all() and not torch.equal(flagged, honest)
    assert torch.equal(
        final({"byzantine_fraction": 0.25, "attack": "scaled", "attack_scale": 1}), honest
    )
    assert not torch.allclose(final({"byzantine_fraction": 0.25}), honest)
    assert len(byzantine_clients(8, 0.25, seed=5)) == 2


def _round(n: int, f: int, d: int, spread: float = 1.0) -> tuple[torch.Tensor, list[bool]]:
    """n updates [n, d] around a shared mean, the first f flagged Byzantine."""
    g = torch.Generator().manual_seed(0)
    center = torch.randn(d, generator=g)
    return center + spread * torch.randn(n, d, generator=g), [i < f for i in range(n)]


@pytest.mark.parametrize(
    ("n", "f", "expected"),
    [
        # s = floor(10/2 + 1) - 2 = 4; (n - s)/n = 6/10; Phi^{-1}(0.60) = 0.2533471...
        (10, 2, 0.2533471031),
        # s = floor(20/2 + 1) - 4 = 7; (n - s)/n = 13/20; Phi^{-1}(0.65) = 0.3853204...
        (20, 4, 0.3853204664),
    ],
)
def test_alie_z_max_follows_the_papers_formula(n, f, expected):
    z = alie_z(n, f)
    assert z == pytest.approx(expected, abs=1e-8)
    assert 0.5 * (1 + math.erf(z / math.sqrt(2))) == pytest.approx((n - (n // 2 + 1 - f)) / n)


def test_alie_z_stays_finite_when_byzantine_hold_the_round():
    # f = 6 of 10: s = floor(6) - 6 = 0 < 1 is floored at 1, so z = Phi^{-1}(9/10) = 1.2815516...
    assert alie_z(10, 6) == pytest.approx(1.2815515655, abs=1e-8)
    assert alie_z(10, 9) == alie_z(10, 6)
    with pytest.raises(ValueError, match="alie needs"):
        alie_z(10, 0)


def test_alie_sends_mu_minus_z_sigma_of_the_honest_updates_only():
    # n = 5, f = 2: s = floor(3.5) - 2 = 1, z = Phi^{-1}(4/5) = 0.8416212...
    # honest rows (1, 2), (3, 2), (5, 8): mu = (3, 4), sample sigma = (2, sqrt(12)).
    deltas = torch.tensor([[1e6, -1e6], [1.0, 2.0], [-1e6, 1e6], [3.0, 2.0], [5.0, 8.0]])
    byzantine = [True, False, True, False, False]
    out = attack_round(deltas, byzantine, "alie", 10.0, torch.Generator())
    z = 0.8416212336
    expected = torch.tensor([3 - 2 * z, 4 - math.sqrt(12) * z])
    torch.testing.assert_close(out[0], expected)
    torch.testing.assert_close(out[2], expected)
    torch.testing.assert_close(out[[1, 3, 4]], deltas[[1, 3, 4]])
    custom = attack_round(deltas, byzantine, "alie", 10.0, torch.Generator(), z=1.0)
    torch.testing.assert_close(custom[0], torch.tensor([1.0, 4 - math.sqrt(12)]))


@pytest.mark.parametrize("epsilon", [None, 0.5])
def test_ipm_sends_minus_epsilon_times_the_honest_mean(epsilon):
    deltas, byzantine = _round(n=10, f=3, d=6)
    options = {} if epsilon is None else {"epsilon": epsilon}
    out = attack_round(deltas, byzantine, "ipm", 10.0, torch.Generator(), **options)
    expected = -(0.1 if epsilon is None else epsilon) * deltas[3:].mean(0)
    torch.testing.assert_close(out[:3], expected.expand(3, -1))
    torch.testing.assert_close(out[3:], deltas[3:])


@pytest.mark.parametrize("epsilon", [0.1, 3.9, 4.1, 100.0])
def test_ipm_turns_the_mean_against_the_honest_direction_past_n_minus_f_over_f(epsilon):
    # Uniform mean of 8 honest and 2 IPM vectors: (8 - 2 * epsilon) / 10 * honest mean,
    # negative exactly when epsilon > (n - f) / f = 4.
    deltas, byzantine = _round(n=10, f=2, d=6)
    out = attack_round(deltas, byzantine, "ipm", 10.0, torch.Generator(), epsilon=epsilon)
    merged = combine(out, torch.full((10,), 0.1), "mean", {})
    inner = float(merged @ deltas[2:].mean(0))
    assert (inner < 0) == (epsilon > 4)


def test_alie_drags_the_median_further_than_sign_flip():
    # The paper's regime: 12 of 50 clients Byzantine (24%), per-coordinate spread of the honest
    # updates far above their mean. Sign-flip (scale 10, the default) throws outliers of both
    # signs that the median discards; ALIE's shared vector sits inside the honest spread, all on
    # one side, and drags every coordinate's median with it.
    deltas, byzantine = _round(n=50, f=12, d=1000, spread=10.0)
    honest_mean = deltas[12:].mean(0)
    weights = torch.full((50,), 0.02)

    def median_error(kind: str) -> float:
        out = attack_round(deltas, byzantine, kind, 10.0, torch.Generator().manual_seed(0))
        return float((combine(out, weights, "median", {}) - honest_mean).norm())

    assert median_error("alie") > 2 * median_error("sign-flip")


def test_attack_round_applies_per_client_attacks_row_by_row():
    deltas, byzantine = _round(n=6, f=2, d=5)
    out = attack_round(deltas, byzantine, "gaussian", 2.0, torch.Generator().manual_seed(3))
    g = torch.Generator().manual_seed(3)
    expected = torch.stack([attack(deltas[i], "gaussian", 2.0, g) for i in range(2)])
    torch.testing.assert_close(out[:2], expected)
    torch.testing.assert_close(out[2:], deltas[2:])
    flipped = attack_round(deltas, byzantine, "sign-flip", 3.0, torch.Generator())
    torch.testing.assert_close(flipped[:2], -3 * deltas[:2])


def test_unknown_attacks_are_refused_with_the_valid_names():
    with pytest.raises(ValueError, match="sign-flip, gaussian, scaled, alie, ipm; got 'lie'"):
        check_attack("lie")
    deltas, byzantine = _round(n=4, f=1, d=3)
    with pytest.raises(ValueError, match="one of"):
        attack_round(deltas, byzantine, "lie", 1.0, torch.Generator())
    assert set(ATTACKS) == {"sign-flip", "gaussian", "scaled", "alie", "ipm"}


@pytest.mark.parametrize("kind", ["alie", "ipm"])
def test_omniscient_attacks_are_refused_per_client(kind):
    with pytest.raises(ValueError, match="attack_round"):
        attack(torch.ones(3), kind, 1.0, torch.Generator())


@pytest.mark.parametrize("kind", ["alie", "ipm"])
def test_omniscient_attacks_run_through_the_synchronous_engine(tiny_data, kind):
    def final(extra: dict) -> torch.Tensor:
        opts = {"clients": 8, "clients_per_round": 8, "partition": "iid", **extra}
        method = registry.get("federated", "fedavg").obj(
            registry.make_params("federated", "fedavg", opts), 0
        )
        spec = RunSpec("federated", Component("fedavg"), Component("tiny"), Component("mlp"))
        budget = Budget(rounds=2, local_steps=2, batch_size=16, optimizer="sgd", lr=0.1)
        torch.manual_seed(0)
        model = MLP(8, 16, 1, 4)
        run(RunContext(spec, tiny_data, model, method, budget, all_seeds(0)))
        return model_vector(model)

    honest = final({})
    flagged = final({"byzantine_fraction": 0.25, "aggregator": "flag"})
    assert torch.isfinite(flagged).all() and not torch.equal(flagged, honest)
    attacked = final({"byzantine_fraction": 0.25, "attack": kind, "aggregator": "median"})
    assert torch.isfinite(attacked).all() and not torch.allclose(attacked, honest)
    with pytest.raises(ValueError, match="'alie', 'ipm'"):
        registry.make_params("federated", "fedavg", {"attack": "lie"})
