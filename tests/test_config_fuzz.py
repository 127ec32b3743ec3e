"""Property-based: every broken config is refused by `sparsebench validate` with one line per
problem naming the file and the field, never a traceback; every valid variant passes.

A valid suite + grid is changed in one to three independent places (a "slot" each: its field
and file are known), each change drawn either broken or valid. The command must exit 2 and name
every broken field, or exit 0 when every change was valid, so the test can fail both ways.
"""

from __future__ import annotations

import contextlib
import io
import string
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from sparsebench import registry
from sparsebench.cli import main

ROOT = Path(__file__).resolve().parents[1]
GRID = "grid.yaml"
SUITE = "suite.yaml"
VALID_GRID = {
    "family": "sparse_training",
    "methods": [{"name": "static-random", "params": {"density": 0.5, "allocation": "erk"}}],
    "datasets": [{"name": "digits"}],
    "models": [{"name": "mlp", "params": {"hidden": 16}}],
    "budget": {"steps": 10, "lr": 0.01},
    "seeds": [0],
}
VALID_SUITE = {
    "hardware": "cpu",
    "experiments": [f"configs/experiments/{GRID}"],
    "kernels": ["quant_pack"],
}
# What can really run together (the trainer's loss fails on any other pair), written out here
# rather than read from the registry's declarations, which are what this checks.
RUNS_ON = {
    ("mlp", ()): {"digits", "mnist1d", "synthetic"},
    ("cnn", ()): {"digits", "mnist1d"},
    ("gpt", (("predict", "sequence"),)): {"shakespeare"},
    ("gpt", (("predict", "last"),)): {"shakespeare-leaf"},
    ("hf-causal-lm", ()): {"shakespeare"},
}
NAME = st.text(string.ascii_lowercase + string.digits + "-_", min_size=1, max_size=10)
NOT_FINITE = st.sampled_from([float("nan"), float("inf"), float("-inf")])


def unknown(kind: str) -> st.SearchStrategy[str]:
    return NAME.filter(lambda name: name not in registry.names(kind))


def new_key(taken: set[str]) -> st.SearchStrategy[str]:
    return st.text(string.ascii_lowercase + "_", min_size=1, max_size=10).filter(
        lambda key: key not in taken
    )


@dataclass(frozen=True)
class Slot:
    """One place a config can break: how to apply a value, where the error must point, and
    strategies for broken values and (optionally) valid ones."""

    group: str
    """Slots of one group interact (a bad family hides its methods' checks, kernels are only
    checked on a known hardware profile), so a draw takes at most one slot of each group."""
    file: str
    field: str
    apply: Callable[[dict, dict, Any], None]
    broken: st.SearchStrategy
    valid: st.SearchStrategy | None = None


def put(*path: Any, into: str = "grid") -> Callable[[dict, dict, Any], None]:
    """Set the value at `path` of the grid (or the suite)."""

    def apply(grid: dict, suite: dict, value: Any) -> None:
        node = grid if into == "grid" else suite
        for part in path[:-1]:
            node = node[part]
        node[path[-1]] = value

    return apply


def add_key(*path: Any, into: str = "grid") -> Callable[[dict, dict, Any], None]:
    """Add the (key, value) pair to the mapping at `path`."""

    def apply(grid: dict, suite: dict, pair: tuple[str, Any]) -> None:
        node = grid if into == "grid" else suite
        for part in path:
            node = node[part]
        node[pair[0]] = pair[1]

    return apply


def set_pair(grid: dict, suite: dict, pair: tuple[str, tuple, str]) -> None:
    model, params, dataset = pair
    grid["models"] = [{"name": model, "params": dict(params)}]
    grid["datasets"] = [{"name": dataset}]


PAIRS = st.tuples(
    st.sampled_from(sorted(RUNS_ON)),
    st.sampled_from(sorted({d for s in RUNS_ON.values() for d in s})),
).map(lambda p: (p[0][0], p[0][1], p[1]))
SLOTS = [
    Slot(
        "method",
        GRID,
        "family",
        put("family"),
        unknown("sparse_training").filter(lambda f: f not in registry.FAMILIES),
    ),
    Slot("method", GRID, "methods[0].name", put("methods", 0, "name"), unknown("sparse_training")),
    Slot(
        "method",
        GRID,
        "methods[0].name",
        put("methods", 0, "name"),
        st.one_of(st.integers(), st.none(), st.booleans(), st.lists(st.integers(), max_size=2)),
    ),
    Slot(
        "method",
        GRID,
        "methods[0].params",
        put("methods", 0, "params"),
        st.one_of(st.integers(), st.text(max_size=3), st.lists(st.integers(), max_size=2)),
    ),
    Slot(
        "method",
        GRID,
        "methods[0].params",
        put("methods", 0, "params", "density"),
        st.one_of(
            st.floats(max_value=0.0),
            st.floats(min_value=1.0, exclude_min=True),
            NOT_FINITE,
            st.text(max_size=3),
            st.booleans(),
        ),
        st.floats(min_value=0.01, max_value=1.0),
    ),
    Slot(
        "method",
        GRID,
        "methods[0].params",
        put("methods", 0, "params", "allocation"),
        NAME.filter(lambda a: a not in ("uniform", "erk")),
        st.sampled_from(["uniform", "erk"]),
    ),
    Slot(
        "method",
        GRID,
        "methods[0]",
        add_key("methods", 0),
        st.tuples(new_key({"name", "params", "seeds"}), st.integers()),
        st.tuples(
            st.just("seeds"), st.lists(st.integers(0, 9), min_size=1, max_size=3, unique=True)
        ),
    ),
    Slot(
        "pair",
        GRID,
        "datasets[0].name",
        put("datasets", 0, "name"),
        unknown("dataset"),
        st.sampled_from(["digits", "mnist1d", "synthetic"]),
    ),
    Slot(
        "pair",
        GRID,
        "models[0].name",
        put("models", 0),
        unknown("model").map(lambda n: {"name": n}),
        st.sampled_from([{"name": "mlp"}, {"name": "cnn"}]),
    ),
    Slot(
        "pair",
        GRID,
        "models[0].params",
        put("models", 0, "params", "hidden"),
        st.one_of(st.integers(max_value=0), st.text(max_size=3), st.floats()),
        st.integers(1, 512),
    ),
    Slot(
        "pair",
        GRID,
        "models[0].name",
        set_pair,
        PAIRS.filter(lambda p: p[2] not in RUNS_ON[p[:2]]),
        PAIRS.filter(lambda p: p[2] in RUNS_ON[p[:2]]),
    ),
    Slot(
        "budget",
        GRID,
        "budget.steps",
        put("budget", "steps"),
        st.one_of(st.integers(max_value=0), st.floats(), st.text(max_size=3), st.booleans()),
        st.integers(1, 10**6),
    ),
    Slot(
        "budget",
        GRID,
        "budget.lr",
        put("budget", "lr"),
        st.one_of(st.floats(max_value=0.0), NOT_FINITE, st.text(max_size=3), st.booleans()),
        st.floats(min_value=1e-6, max_value=10.0),
    ),
    Slot(
        "budget",
        GRID,
        "budget",
        add_key("budget"),
        st.tuples(
            new_key(
                set(VALID_GRID["budget"])
                | {"optimizer", "schedule", "momentum"}
                | {"batch_size", "weight_decay", "eval_every", "warmup_steps"}
                | {"grad_clip", "rounds", "local_steps", "target_acc"}
                | {"checkpoint_every"}
            ),
            st.integers(1, 9),
        ),
        st.tuples(st.sampled_from(["eval_every", "batch_size", "rounds"]), st.integers(1, 9)),
    ),
    Slot(
        "seeds",
        GRID,
        "seeds",
        put("seeds"),
        st.one_of(
            st.just([]),
            st.lists(st.integers(max_value=-1), min_size=1, max_size=2),
            st.integers(),
            st.text(max_size=3),
            st.just([1, 1]),
        ),
        st.lists(st.integers(0, 9), min_size=1, max_size=3, unique=True),
    ),
    Slot(
        "top",
        GRID,
        "(top level)",
        add_key(),
        st.tuples(new_key(set(VALID_GRID) | {"description", "claims"}), st.integers()),
        st.tuples(st.just("description"), st.text(max_size=10)),
    ),
    Slot(
        "hardware",
        SUITE,
        "hardware",
        put("hardware", into="suite"),
        st.text(string.ascii_letters + string.digits, min_size=1, max_size=8).filter(
            lambda h: h not in ("cpu", "h100")
        ),
        st.just("cpu"),
    ),
    Slot(
        "hardware",
        SUITE,
        "kernels[0]",
        put("kernels", 0, into="suite"),
        unknown("kernel"),
        st.sampled_from(["quant_pack", "topk_compress"]),
    ),
    Slot(
        "suite",
        SUITE,
        "(top level)",
        add_key(into="suite"),
        st.tuples(new_key(set(VALID_SUITE) | {"benchmarks", "mlflow"}), st.integers()),
    ),
]


@st.composite
def changes(draw: st.DrawFn) -> list[tuple[Slot, Any, bool]]:
    """One to three slots of different groups, each with a broken or a valid value."""
    slots = draw(
        st.lists(st.sampled_from(SLOTS), min_size=1, max_size=3, unique_by=lambda s: s.group)
    )
    out = []
    for slot in slots:
        broken = slot.valid is None or draw(st.booleans())
        out.append((slot, draw(slot.broken if broken else slot.valid), broken))
    return out


def write_config(folder: Path, grid: dict | str, suite: dict | str) -> Path:
    """A checkout-shaped folder: the suite, the grid, and links to the real schemas and profiles."""
    (folder / "configs" / "experiments").mkdir(parents=True)
    (folder / "configs" / "hardware").symlink_to(ROOT / "configs" / "hardware")
    (folder / "workflow").symlink_to(ROOT / "workflow")
    text = {GRID: grid, SUITE: suite}
    for name, data in text.items():
        text[name] = data if isinstance(data, str) else yaml.safe_dump(data)
    (folder / "configs" / "experiments" / GRID).write_text(text[GRID])
    (folder / "configs" / SUITE).write_text(text[SUITE])
    return folder / "configs" / SUITE


def validate(grid: dict | str, suite: dict | str) -> tuple[int, str, str]:
    """`sparsebench validate` in-process on a fresh folder: (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with tempfile.TemporaryDirectory() as tmp:
        path = write_config(Path(tmp), grid, suite)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(["--root", tmp, "validate", str(path)])
    return code, out.getvalue(), err.getvalue()


def copy(data: dict) -> dict:
    return yaml.safe_load(yaml.safe_dump(data))


@settings(max_examples=80, deadline=None)
@given(changes())
def test_every_broken_field_is_named_and_every_valid_change_passes(drawn):
    grid, suite = copy(VALID_GRID), copy(VALID_SUITE)
    for slot, value, _ in drawn:
        slot.apply(grid, suite, value)
    code, out, err = validate(grid, suite)
    assert "Traceback" not in out + err
    expected = [(slot.file, slot.field) for slot, _, broken in drawn if broken]
    if not expected:
        assert code == 0, err
        assert "ok" in out
        return
    assert code == 2, out
    lines = err.splitlines()
    for file, field in expected:
        assert any(f"{file}: {field}" in line for line in lines), (file, field, err)


@settings(max_examples=20, deadline=None)
@given(pair=PAIRS)
def test_a_model_dataset_mismatch_names_the_model_and_the_datasets_that_fit(pair):
    grid = copy(VALID_GRID)
    set_pair(grid, {}, pair)
    code, _, err = validate(grid, VALID_SUITE)
    fits = RUNS_ON[pair[:2]]
    if pair[2] in fits:
        assert code == 0, err
        return
    assert code == 2
    line = next(line for line in err.splitlines() if f"{GRID}: models[0].name:" in line)
    assert f"cannot read dataset {pair[2]!r}" in line
    valid = line.split("valid datasets:")[1]
    assert all(name in valid for name in fits)


BAD_YAML = ["key: [unclosed", "\tindented: 1", "a: b: c", "x: 'open", "{bad", "y: *nowhere"]


@settings(max_examples=30, deadline=None)
@given(
    target=st.sampled_from([GRID, SUITE]),
    snippet=st.sampled_from(BAD_YAML),
    where=st.integers(0, 20),
)
def test_malformed_yaml_is_refused_with_the_file_and_line(target, snippet, where):
    lines = yaml.safe_dump(VALID_GRID if target == GRID else VALID_SUITE).splitlines()
    lines.insert(where % (len(lines) + 1), snippet)
    text = "\n".join(lines) + "\n"
    grid, suite = (text, VALID_SUITE) if target == GRID else (VALID_GRID, text)
    code, out, err = validate(grid, suite)
    assert code == 2 and "Traceback" not in out + err
    assert any(f"{target}: line " in line and "not valid YAML" in line for line in err.splitlines())
