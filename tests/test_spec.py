import pytest

from sparsebench.seeds import all_seeds, derive
from sparsebench.spec import Budget, Component, RunSpec


def make_spec(**overrides) -> RunSpec:
    fields = dict(
        family="sparse_training",
        method=Component("static-random", {"density": 0.1, "allocation": "erk"}),
        dataset=Component("mnist1d"),
        model=Component("mlp", {"hidden": 256}),
        hardware="cpu",
        seed=0,
        budget={"steps": 100},
    )
    fields.update(overrides)
    return RunSpec(**fields)


def test_spec_round_trips_through_json():
    spec = make_spec()
    assert RunSpec.from_json(spec.to_json()) == spec


def test_key_is_canonical_with_sorted_params():
    a = make_spec(method=Component("static-random", {"density": 0.1, "allocation": "erk"}))
    b = make_spec(method=Component("static-random", {"allocation": "erk", "density": 0.1}))
    assert a.key() == b.key()
    assert a.key() == (
        "sparse_training/static-random[allocation=erk,density=0.1]/mnist1d/mlp[hidden=256]"
        "/cpu/seed=0/budget[steps=100]"
    )
    assert a.run_id() == b.run_id() and len(a.run_id()) == 12


def test_different_cells_get_different_run_ids():
    assert make_spec(seed=0).run_id() != make_spec(seed=1).run_id()


def test_seed_axes_are_independent_and_deterministic():
    seeds = all_seeds(3)
    assert seeds == all_seeds(3)
    assert len({seeds[a] for a in ("data", "partition", "init", "method")}) == 4
    assert derive(3, "data") == seeds["data"]
    assert derive(4, "data") != seeds["data"]


def test_indexed_streams_differ_per_index_and_repeat_exactly():
    streams = {derive(3, "data", rnd, client) for rnd in range(1, 4) for client in range(50)}
    assert len(streams) == 150
    assert derive(3, "data", 2, 7) == derive(3, "data", 2, 7) != derive(3, "data", 7, 2)


def test_checkpoint_interval_does_not_change_the_run_key():
    assert make_spec(budget={"steps": 100, "checkpoint_every": 10}).key() == make_spec().key()


def test_the_step_schedule_drops_the_rate_by_gamma_at_each_milestone():
    budget = Budget(lr=1.0, schedule="step", lr_milestones=[0.5, 0.75], lr_gamma=0.1)
    assert [budget.lr_at(s, 8) for s in (1, 4, 5, 6, 7, 8)] == pytest.approx(
        [1.0, 1.0, 0.1, 0.1, 0.01, 0.01]
    )
    assert Budget(lr=1.0, schedule="linear").lr_at(2, 4) == pytest.approx(0.5)


def test_a_regime_names_each_field_a_budget_departs_in():
    from sparsebench.spec import Regime

    regime = Regime("sgd", ("step", "cosine"))
    assert regime.departures(Budget(optimizer="sgd", schedule="cosine")) == []
    assert regime.departures(Budget(optimizer="adam", schedule="constant")) == [
        "optimizer adam (paper: sgd)",
        "schedule constant (paper: step or cosine)",
    ]
    assert Regime("sgd").departures(Budget(optimizer="sgd", schedule="linear")) == []
