"""Flag Aggregator (FA): a robust aggregate from a flag-median subspace of the updates.

Almasi, Mishra, Vamanan and Ravi, "Flag Aggregator: Scalable Distributed Training under Failures
and Augmented Losses using Convex Optimization", ICLR 2024, arXiv 2302.05865; authors' code
github.com/hamidralmasi/FlagAggregator (`aggregators/flag.py` and `flag_median.py`, the IRLS in
`aggregators/center_algorithms_torch.py`: `irls_flag`, `flag_mean_iteration`, `calc_error_1_2`).

The rule, for n updates g_1..g_n in R^d and a subspace dimension m:

1. Normalise: x_i = g_i / ||g_i|| (a zero update stays zero). Magnitudes play no further part.
2. Find Y (d x m, orthonormal columns) minimising the regularised flag-median objective

       J(Y) = sum_i sqrt(s_i + eps) + lam / (n (n - 1)) * sum_{i != j} sqrt(s_ij + eps),
       s_i  = 1 - ||Y^T x_i||^2                          (1 - the reconstruction ratio of x_i),
       s_ij = 1 - ||Y^T (x_i - x_j)||^2 / ||x_i - x_j||^2 (the same for a pairwise difference),

   by iteratively reweighted least squares (FlagIRLS): given Y_t, weight each vector z (an x_i,
   or a difference x_i - x_j with coefficient lam / (n (n - 1))) by coef * (s_z + eps)^(-1/2) /
   ||z||^2 and take Y_{t+1} = the top-m eigenvectors of the weighted scatter sum_z w_z z z^T.
   This is a majorise-minimise step (sqrt is concave), so J never increases.
3. Aggregate: (1 / m) * sum_i Y Y^T x_i, the authors' `torch.sum(YYTX).div(r)`.

So the aggregate of n identical updates v is (n / m) * v / ||v||, not v: FA returns a direction
scaled by n / m (its norm is at most n / m), whatever the size of the updates. Whoever applies it
(a server learning rate) sets the step length.

Where this follows the authors' code and where it departs from it:
- eps = 1e-7 and the column weights (s + eps)^(-1/4) (scatter weights (s + eps)^(-1/2)) are the
  code's; so are the stopping rule (stop when J decreases by no more than `tol` = 1e-10, and
  keep the previous Y when a step did not decrease J) and the 1 / m in step 3.
- Start: the code draws a random d x m Y, which in high dimension is nearly orthogonal to every
  x_i (all s ~ 1, all weights ~ 1). We start from that limit exactly (s = 1 everywhere), so the
  first step is the plain flag mean (top-m left singular vectors of [x_1..x_n]) and the result
  does not depend on a random seed. `iterations` counts eigen-solves, as the code's `n_its`.
- The pairwise term (lam > 0): the code appends the columns lam / (n (n - 1)) * (s + eps)^(-1/4)
  * (x_i - x_j) with s = |1 - ||Y^T (x_i - x_j)||^2| for all ordered pairs, that is an
  unnormalised difference and a coefficient that enters the scatter matrix squared. We use the
  normalised difference (the pair's reconstruction ratio, which the paper's pairwise term is
  about) and the coefficient linearly, so that each step minimises a stated objective and never
  increases it. With lam = 0 (the default) the two agree exactly.
- We could not read the paper's text here (only its abstract), so equation and algorithm
  numbers are not given; the rule above is taken from the authors' code.

Defaults: subspace_dim = 1 and lam = 0 are the defaults of the code's `trainer.py` (`--r_col`,
`--lambda_`, also in its README); its example scripts use r_col in {3, 4, 8} and lambda in
{0, 0.5}. iterations = 4 is `n_its` in `flag_median.py` (first commit); the later `flag.py` sets
1, which reduces FA to the unweighted flag mean. tol = 1e-10 and eps = 1e-7 are `irls_flag`'s and
`flag_mean_iteration`'s.

Cost: every vector involved lies in the span of the x_i, so the whole iteration runs on the n x n
Gram matrix K = X X^T (one d-sized product, computed in float64) and eigenproblems of size at most
n; Y = X^T A is never formed unless asked for. The result is a combination of the x_i, so it lies
in the span of the inputs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

EPS = 1e-7
DEFAULT_SUBSPACE_DIM = 1
DEFAULT_LAM = 0.0
DEFAULT_ITERATIONS = 4
DEFAULT_TOL = 1e-10
_RANK_RTOL = 1e-9  # Gram eigenvalues below this fraction of the largest count as zero


@dataclass
class FlagFit:
    """A fitted flag-median subspace, expressed through the normalised updates.

    coefficients: [n, k] float64, Y = X^T coefficients with X the [n, d] normalised updates and
    k = min(m, rank of the updates) (further columns of Y would be orthogonal to every update
    and change nothing). objective: J at the start and after each accepted IRLS step.
    """

    unit: torch.Tensor
    gram: torch.Tensor
    coefficients: torch.Tensor
    objective: list[float]
    subspace_dim: int

    def basis(self) -> torch.Tensor:
        """Y, [d, k] float64 with orthonormal columns."""
        return self.unit.T @ self.coefficients

    def aggregate(self) -> torch.Tensor:
        """(1 / m) * sum_i Y Y^T x_i, [d] float64."""
        a = self.coefficients
        alpha = a @ (a.T @ self.gram.sum(1)) / self.subspace_dim
        return alpha @ self.unit


def flag_aggregate(
    updates: torch.Tensor,
    subspace_dim: int = DEFAULT_SUBSPACE_DIM,
    lam: float = DEFAULT_LAM,
    iterations: int = DEFAULT_ITERATIONS,
    tol: float = DEFAULT_TOL,
    eps: float = EPS,
) -> torch.Tensor:
    """Aggregate stacked updates [n, d] into one [d] with the Flag Aggregator (see module doc)."""
    fit = flag_median(updates, subspace_dim, lam, iterations, tol, eps)
    return fit.aggregate().to(updates.dtype)


def flag_median(
    updates: torch.Tensor,
    subspace_dim: int = DEFAULT_SUBSPACE_DIM,
    lam: float = DEFAULT_LAM,
    iterations: int = DEFAULT_ITERATIONS,
    tol: float = DEFAULT_TOL,
    eps: float = EPS,
) -> FlagFit:
    """Fit the regularised flag median of the normalised updates by IRLS on their Gram matrix."""
    _check(updates, subspace_dim, lam, iterations, tol, eps)
    n = updates.shape[0]
    x = updates.double()
    norms = x.norm(dim=1, keepdim=True)
    unit = torch.where(norms > 0, x / norms.clamp_min(torch.finfo(x.dtype).tiny), 0.0)
    gram = unit @ unit.T
    gram = 0.5 * (gram + gram.T)

    evals, evecs = torch.linalg.eigh(gram)
    keep = evals > _RANK_RTOL * evals[-1].clamp_min(0.0)
    if not bool(keep.any()):  # every update is zero
        empty = gram.new_zeros(n, 0)
        return FlagFit(unit, gram, empty, [_objective(gram, empty, lam, eps)], subspace_dim)
    root = evals[keep].sqrt()
    v = evecs[:, keep]  # the span's orthonormal basis is Q = X^T v / root
    k = min(subspace_dim, int(keep.sum()))

    coefficients = gram.new_zeros(n, 0)  # Y_0 orthogonal to every update: s = 1 everywhere
    history = [_objective(gram, coefficients, lam, eps)]
    for _ in range(iterations):
        scatter = _scatter(gram, coefficients, lam, eps)
        small = root[:, None] * (v.T @ scatter @ v) * root[None, :]
        top = torch.linalg.eigh(0.5 * (small + small.T)).eigenvectors[:, -k:]
        candidate = v @ (top / root[:, None])
        value = _objective(gram, candidate, lam, eps)
        decrease = history[-1] - value
        if decrease > 0:
            coefficients = candidate
            history.append(value)
        if decrease <= tol:
            break
    return FlagFit(unit, gram, coefficients, history, subspace_dim)


def _residuals(
    gram: torch.Tensor, coefficients: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """s_i [n], s_ij [n, n] and ||x_i - x_j||^2 [n, n] for Y = X^T coefficients."""
    proj = gram @ coefficients  # row i: Y^T x_i
    sq = gram.diagonal()
    s = (1.0 - (proj * proj).sum(1)).clamp(0.0, 1.0)  # a zero update counts as s = 1
    dist = (sq[:, None] + sq[None, :] - 2 * gram).clamp_min(0.0)
    proj_dist = torch.cdist(proj, proj).square() if proj.shape[1] else torch.zeros_like(dist)
    ratio = torch.where(dist > 1e-12, proj_dist / dist.clamp_min(1e-12), 0.0)
    return s, (1.0 - ratio).clamp(0.0, 1.0), dist


def _pair_mask(dist: torch.Tensor) -> torch.Tensor:
    """Ordered pairs i != j whose difference is not zero (a zero difference is a constant)."""
    off = ~torch.eye(dist.shape[0], dtype=torch.bool, device=dist.device)
    return off & (dist > 1e-12)


def _objective(gram: torch.Tensor, coefficients: torch.Tensor, lam: float, eps: float) -> float:
    s, s_pair, dist = _residuals(gram, coefficients)
    n = gram.shape[0]
    value = (s + eps).sqrt().sum()
    if lam > 0 and n > 1:
        off = ~torch.eye(n, dtype=torch.bool, device=gram.device)
        value = value + lam / (n * (n - 1)) * (s_pair + eps).sqrt()[off].sum()
    return float(value)


def _scatter(
    gram: torch.Tensor, coefficients: torch.Tensor, lam: float, eps: float
) -> torch.Tensor:
    """M [n, n] with X^T M X the weighted scatter matrix of the next IRLS step."""
    s, s_pair, dist = _residuals(gram, coefficients)
    n = gram.shape[0]
    scatter = torch.diag((s + eps).rsqrt())
    if lam > 0 and n > 1:
        # sum over ordered pairs of w_ij (e_i - e_j)(e_i - e_j)^T = 2 * (diag(W 1) - W), W sym.
        w = lam / (n * (n - 1)) * (s_pair + eps).rsqrt() / dist.clamp_min(1e-12)
        w = torch.where(_pair_mask(dist), w, 0.0)
        scatter = scatter + 2 * (torch.diag(w.sum(1)) - w)
    return scatter


def _check(
    updates: torch.Tensor, subspace_dim: int, lam: float, iterations: int, tol: float, eps: float
) -> None:
    if updates.dim() != 2 or updates.shape[0] < 1:
        raise ValueError(f"flag: updates must be [n, d] with n >= 1, got {tuple(updates.shape)}")
    n = updates.shape[0]
    if not 1 <= subspace_dim <= n:
        raise ValueError(f"flag: subspace_dim must be in [1, n={n}], got {subspace_dim}")
    if lam < 0:
        raise ValueError(f"flag: lam must be >= 0, got {lam}")
    if iterations < 1:
        raise ValueError(f"flag: iterations must be >= 1, got {iterations}")
    if tol < 0:
        raise ValueError(f"flag: tol must be >= 0, got {tol}")
    if eps <= 0:
        raise ValueError(f"flag: eps must be > 0, got {eps}")
    if not bool(torch.isfinite(updates).all()):
        raise ValueError("flag: updates must be finite")
