import math

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
