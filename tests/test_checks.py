import math

import pytest

from sparsebench.checks import check_choice, check_density, check_range


@pytest.mark.parametrize(
    ("kwargs", "value", "message"),
    [
        ({"low": 0.0, "high": 1.0, "low_open": True}, 1.5, r"x must be in \(0, 1\], got 1.5"),
        ({"low": 0.0, "high": 1.0, "low_open": True}, 0.0, r"x must be in \(0, 1\], got 0.0"),
        ({"low": 0.0, "high": 1.0, "high_open": True}, 1.0, r"x must be in \[0, 1\), got 1.0"),
        ({"low": 1, "high": 8}, 9, r"x must be in \[1, 8\], got 9"),
        ({"low": 1}, 0, r"x must be >= 1, got 0"),
        ({"low": 0.0, "low_open": True}, -2e-4, r"x must be > 0, got -0.0002"),
        ({"high": 2.5, "high_open": True}, 2.5, r"x must be < 2.5, got 2.5"),
        ({"low": 0.0}, math.nan, r"x must be >= 0, got nan"),
    ],
)
def test_a_value_outside_the_interval_is_refused_with_name_interval_and_value(
    kwargs, value, message
):
    with pytest.raises(ValueError, match=f"^{message}$"):
        check_range("x", value, **kwargs)


@pytest.mark.parametrize(
    ("kwargs", "value"),
    [
        ({"low": 0.0, "high": 1.0, "low_open": True}, 1.0),
        ({"low": 0.0, "high": 1.0, "high_open": True}, 0.0),
        ({"low": 1}, 1),
        ({"high": 3.0}, -1e9),
        ({}, math.inf),
    ],
)
def test_a_value_inside_the_interval_and_on_closed_ends_passes(kwargs, value):
    check_range("x", value, **kwargs)


def test_density_is_a_share_in_the_half_open_unit_interval():
    check_density(1.0)
    with pytest.raises(ValueError, match=r"^density must be in \(0, 1\], got 0$"):
        check_density(0)
    with pytest.raises(ValueError, match=r"^inner_density must be in \(0, 1\]"):
        check_density(1.01, "inner_density")


def test_choice_lists_the_allowed_values_in_order():
    check_choice("mode", "b", ("a", "b"))
    with pytest.raises(ValueError, match=r"^mode must be one of \['a', 'b'\], got 'c'$"):
        check_choice("mode", "c", ("a", "b"))
