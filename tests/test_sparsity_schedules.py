import math

import pytest

from sparsebench.sparsity.schedules import (
    cosine_drop_fraction,
    cubic_density,
    is_update_step,
    mask_decay,
    resolve_step,
)


def test_cubic_density_follows_zhu_and_gupta():
    # s_f = 0.9, s_i = 0, t0 = 10, n dt = 100: s_t = 0.9 (1 - (1 - (t - 10)/100)^3)
    for t in (10, 35, 60, 85, 110):
        sparsity = 0.9 + (0.0 - 0.9) * (1 - (t - 10) / 100) ** 3
        assert cubic_density(t, 0.1, 10, 110) == pytest.approx(1 - sparsity)
    assert cubic_density(0, 0.1, 10, 110) == 1.0
    assert cubic_density(500, 0.1, 10, 110) == 0.1
    assert cubic_density(60, 0.1, 10, 110, initial_density=0.5) == pytest.approx(
        1 - (0.9 - 0.4 * 0.5**3)
    )


def test_update_steps_are_start_plus_multiples_of_interval():
    steps = [t for t in range(200) if is_update_step(t, 10, 110, 25)]
    assert steps == [10, 35, 60, 85, 110]
    assert [t for t in range(200) if is_update_step(t, 0, 70, 30)] == [0, 30, 60, 70]


def test_cosine_drop_fraction_values():
    assert cosine_drop_fraction(0, 0.3, 1000) == pytest.approx(0.3)
    assert cosine_drop_fraction(250, 0.3, 1000) == pytest.approx(0.15 * (1 + math.cos(math.pi / 4)))
    assert cosine_drop_fraction(500, 0.3, 1000) == pytest.approx(0.15)
    assert cosine_drop_fraction(1000, 0.3, 1000) == 0.0


def test_mask_decay_linear_and_exponential():
    assert mask_decay(5, 10, "linear", 0.01) == 1.0
    assert mask_decay(60, 10, "linear", 0.01) == pytest.approx(0.5)
    assert mask_decay(500, 10, "linear", 0.01) == 0.0
    assert mask_decay(110, 10, "exp", 0.02) == pytest.approx(math.exp(-2.0))
    with pytest.raises(ValueError, match="linear"):
        mask_decay(1, 0, "cosine", 0.1)


def test_resolve_step_prefers_explicit_then_fraction():
    assert resolve_step(7, 0.5, None, "end_step") == 7
    assert resolve_step(None, 0.75, 1000, "end_step") == 750
    with pytest.raises(ValueError, match="end_step"):
        resolve_step(None, 0.75, None, "end_step")
