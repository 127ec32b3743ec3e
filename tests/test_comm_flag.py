import math
import time

import pytest
import torch

from sparsebench.comm.flag import EPS, flag_aggregate, flag_median


def _reference_objective(updates: torch.Tensor, basis: torch.Tensor, lam: float) -> float:
    """J(Y) computed directly in R^d, independently of the module's Gram-matrix algebra."""
    x = updates.double()
    x = x / x.norm(dim=1, keepdim=True)
    n = x.shape[0]
    value = sum(math.sqrt(max(1 - float((basis.T @ xi).square().sum()), 0.0) + EPS) for xi in x)
    if lam > 0:
        pairs = 0.0
        for i in range(n):
            for j in range(n):
                if i != j:
                    z = x[i] - x[j]
                    ratio = float((basis.T @ z).square().sum() / z.square().sum())
                    pairs += math.sqrt(max(1 - ratio, 0.0) + EPS)
        value += lam / (n * (n - 1)) * pairs
    return value


def _authors_style(updates: torch.Tensor, m: int, iterations: int, seed: int) -> torch.Tensor:
    """FlagIRLS as the authors' code runs it (lam = 0): random start, SVD of weighted columns."""
    x = updates.double()
    x = x / x.norm(dim=1, keepdim=True)
    g = torch.Generator().manual_seed(seed)
    y = torch.linalg.qr(torch.rand(x.shape[1], m, generator=g, dtype=torch.float64) - 0.5)[0]
    for _ in range(iterations):
        w = ((1 - (x @ y).square().sum(1)).abs() + EPS) ** -0.25
        y = torch.linalg.svd((w[:, None] * x).T, full_matrices=False)[0][:, :m]
    return (y @ (y.T @ x.T)).sum(1) / m


def _cos(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(a.double() @ b.double() / (a.double().norm() * b.double().norm()))


@pytest.mark.parametrize("m", [1, 3])
def test_identical_updates_give_n_over_m_times_their_direction(m):
    v = torch.randn(40, generator=torch.Generator().manual_seed(0))
    out = flag_aggregate(v.expand(6, -1).clone(), subspace_dim=m)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, 6 / m * v / v.norm())


def test_the_aggregate_ignores_the_size_of_each_update():
    g = torch.Generator().manual_seed(1)
    updates = torch.randn(8, 30, generator=g)
    scales = torch.rand(8, 1, generator=g) * 100 + 0.01
    for lam in (0.0, 0.5):
        torch.testing.assert_close(
            flag_aggregate(updates * scales, 2, lam), flag_aggregate(updates, 2, lam)
        )


@pytest.mark.parametrize(("m", "lam"), [(1, 0.0), (3, 0.0), (2, 0.5), (5, 1.0)])
def test_the_aggregate_and_the_basis_lie_in_the_span_of_the_updates(m, lam):
    g = torch.Generator().manual_seed(2)
    updates = torch.randn(5, 60, generator=g)
    fit = flag_median(updates, m, lam)
    out = flag_aggregate(updates, m, lam)
    span = torch.linalg.qr(updates.double().T)[0]  # [60, 5]
    for vec in [out.double(), *fit.basis().T]:
        residual = vec - span @ (span.T @ vec)
        assert residual.norm() < 1e-5 * max(vec.norm(), 1.0)
    basis = fit.basis()
    torch.testing.assert_close(basis.T @ basis, torch.eye(m, dtype=torch.float64))


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize(("m", "lam"), [(1, 0.0), (2, 0.0), (4, 0.0), (1, 0.5), (3, 2.0)])
def test_irls_never_increases_the_objective(seed, m, lam):
    g = torch.Generator().manual_seed(seed)
    updates = torch.randn(9, 25, generator=g) + 0.5 * torch.randn(25, generator=g)
    fit = flag_median(updates, m, lam, iterations=30, tol=0.0)
    history = fit.objective
    assert len(history) > 2
    assert all(b <= a + 1e-12 for a, b in zip(history, history[1:], strict=False))
    # The recorded values are the objective of the returned subspace, computed in R^d.
    assert history[-1] == pytest.approx(_reference_objective(updates, fit.basis(), lam), abs=1e-9)
    shorter = flag_median(updates, m, lam, iterations=2, tol=0.0)
    assert shorter.objective == pytest.approx(history[: len(shorter.objective)], abs=1e-12)


@pytest.mark.parametrize(("m", "lam"), [(1, 0.0), (2, 0.0), (1, 5.0), (2, 20.0)])
def test_irls_converges_to_a_local_minimum_of_the_stated_objective(m, lam):
    # Clustered data, so that pairwise distances differ and the pairwise term has a say.
    g = torch.Generator().manual_seed(7)
    centers = torch.randn(2, 12, generator=g)
    updates = torch.cat(
        [
            centers[0] + 0.4 * torch.randn(5, 12, generator=g),
            centers[1] + 0.8 * torch.randn(3, 12, generator=g),
        ]
    )
    basis = flag_median(updates, m, lam, iterations=300, tol=0.0).basis()
    best = _reference_objective(updates, basis, lam)
    for _ in range(30):
        moved = torch.linalg.qr(
            basis + 1e-3 * torch.randn(basis.shape, generator=g, dtype=torch.float64)
        )[0]
        assert _reference_objective(updates, moved, lam) >= best - 1e-10


def test_the_first_step_is_the_flag_mean():
    # One eigen-solve from the orthogonal start: the top-m left singular vectors of [x_1..x_n].
    g = torch.Generator().manual_seed(3)
    updates = torch.randn(7, 40, generator=g)
    basis = flag_median(updates, 2, iterations=1).basis()
    unit = updates.double() / updates.double().norm(dim=1, keepdim=True)
    top = torch.linalg.svd(unit.T, full_matrices=False)[0][:, :2]
    torch.testing.assert_close(basis @ basis.T, top @ top.T)


def test_matches_the_authors_random_start_irls_at_convergence():
    g = torch.Generator().manual_seed(4)
    center = torch.randn(3000, generator=g)
    updates = center + 1.5 * torch.randn(8, 3000, generator=g)
    ours = flag_aggregate(updates, 2, iterations=60, tol=0.0).double()
    theirs = _authors_style(updates, 2, iterations=60, seed=1)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-5)


@pytest.mark.parametrize("seed", range(5))
def test_large_outliers_do_not_turn_the_aggregate_away_from_the_honest_direction(seed):
    g = torch.Generator().manual_seed(seed)
    d = 500
    direction = torch.randn(d, generator=g)
    direction = direction / direction.norm()
    honest = direction + 0.5 * torch.randn(7, d, generator=g) / math.sqrt(d)
    outliers = 1e3 * torch.randn(3, d, generator=g)
    updates = torch.cat([outliers, honest])
    assert abs(_cos(updates.mean(0), direction)) < 0.3
    assert _cos(flag_aggregate(updates), direction) > 0.95
    assert _cos(flag_aggregate(updates, subspace_dim=2, lam=0.5), direction) > 0.9


@pytest.mark.parametrize("seed", range(5))
def test_a_coordinated_minority_does_not_win_the_subspace(seed):
    g = torch.Generator().manual_seed(seed)
    d = 500
    direction = torch.randn(d, generator=g)
    direction = direction / direction.norm()
    other = torch.randn(d, generator=g)
    other = other - (other @ direction) * direction
    honest = direction + 0.5 * torch.randn(7, d, generator=g) / math.sqrt(d)
    updates = torch.cat([50 * other.expand(3, -1) / other.norm(), honest])
    assert _cos(updates.mean(0), direction) < 0.3
    assert _cos(flag_aggregate(updates), direction) > 0.9


def test_a_zero_update_changes_nothing_without_the_pairwise_term():
    g = torch.Generator().manual_seed(5)
    updates = torch.randn(6, 20, generator=g)
    with_zero = torch.cat([updates, torch.zeros(1, 20)])
    torch.testing.assert_close(flag_aggregate(with_zero, 2), flag_aggregate(updates, 2))
    assert torch.equal(flag_aggregate(torch.zeros(4, 10), 2), torch.zeros(10))


@pytest.mark.parametrize("bad", [0, -1, 6])
def test_subspace_dim_outside_one_to_n_is_refused_with_the_range(bad):
    updates = torch.randn(5, 8)
    with pytest.raises(ValueError, match=rf"subspace_dim must be in \[1, n=5\], got {bad}"):
        flag_aggregate(updates, subspace_dim=bad)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [({"lam": -0.1}, "lam"), ({"iterations": 0}, "iterations"), ({"tol": -1.0}, "tol")],
)
def test_other_bad_arguments_are_refused_by_name(kwargs, field):
    with pytest.raises(ValueError, match=rf"flag: {field} must be"):
        flag_aggregate(torch.randn(4, 3), **kwargs)
    with pytest.raises(ValueError, match="updates must be"):
        flag_aggregate(torch.randn(7))
    with pytest.raises(ValueError, match="finite"):
        flag_aggregate(torch.tensor([[1.0, float("nan")], [0.0, 1.0]]))


def test_a_hundred_updates_of_a_hundred_thousand_coordinates_take_seconds():
    updates = torch.randn(100, 100_000, generator=torch.Generator().manual_seed(6))
    start = time.perf_counter()
    out = flag_aggregate(updates, subspace_dim=3, lam=0.5)
    assert time.perf_counter() - start < 20
    assert out.shape == (100_000,) and torch.isfinite(out).all()
