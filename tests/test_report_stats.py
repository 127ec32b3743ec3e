import math

import pytest
from scipy import stats

from sparsebench.report.stats import mean_interval


def test_mean_interval_matches_scipy_t_interval():
    values = [0.61, 0.64, 0.58, 0.66]
    mean, half = mean_interval(values)
    low, high = stats.t.interval(0.95, len(values) - 1, loc=mean, scale=stats.sem(values))
    assert math.isclose(mean, sum(values) / 4)
    assert math.isclose(mean - half, low) and math.isclose(mean + half, high)


def test_one_value_has_a_mean_but_no_interval():
    mean, half = mean_interval([0.5])
    assert mean == 0.5 and math.isnan(half)


def test_tost_declares_equivalence_only_when_the_90_percent_interval_fits_the_margin():
    from sparsebench.report.stats import equivalent

    tight = [0.001, -0.002, 0.0015, -0.0005, 0.0]
    assert equivalent(tight, margin=0.01)
    assert not equivalent(tight, margin=0.001)
    assert not equivalent([0.02, 0.021, 0.019], margin=0.01)  # a real difference
    assert not equivalent([0.0], margin=0.01)


def test_detectable_difference_matches_the_hand_computed_paired_t_power_formula():
    from sparsebench.report.stats import detectable_difference, seeds_needed

    # (t_0.975,9 + t_0.8,9) * 1 / sqrt(10) = (2.2622 + 0.8834) / 3.1623 = 0.9947
    assert detectable_difference(1.0, 10) == pytest.approx(0.9947, abs=1e-3)
    needed = seeds_needed(1.0, 0.995)
    assert needed == 10 and detectable_difference(1.0, needed - 1) > 0.995
    assert seeds_needed(float("nan"), 0.5) is None
