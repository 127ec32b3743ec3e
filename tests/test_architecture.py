"""The import graph runs downward only (DESIGN.md, "Floors"): contracts and shared mechanics on
the ground floor, methods above them, engines above methods, then report, config and the
regression gate, and the command line on top. A method never imports a sibling method, and an
engine reaches a method only through its family's base (the contract), never by module name."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = {"sparsebench": ROOT / "src" / "sparsebench", "sparsebench.kernels": ROOT / "kernels"}

# The top-level part of a module name (`methods.<family>` for methods) -> its floor. Kernels
# import only ground-floor modules (comm runs them on CUDA tensors), so they sit there too.
GROUND = ("spec", "hooks", "registry", "seeds", "atomic", "checks", "paths", "provenance")
SHARED = ("checkpoint", "metrics", "tracking", "sparsity", "comm", "data", "models", "kernels")
FAMILIES = ("sparse_training", "pruning", "compression", "federated")
FLOORS = {
    **dict.fromkeys(GROUND + SHARED, 0),
    **{f"methods.{family}": 1 for family in FAMILIES},
    "methods": 1,
    "engines": 2,
    "runner": 2,
    "seed_throughput": 2,
    **dict.fromkeys(("report", "config", "regression"), 3),
    "cli": 4,
}


def module_names() -> dict[str, Path]:
    out = {}
    for package, root in SOURCES.items():
        for path in root.rglob("*.py"):
            parts = [p for p in path.relative_to(root).with_suffix("").parts if p != "__init__"]
            out[".".join([package, *parts])] = path
    return out


def imports(path: Path, known: dict[str, Path]) -> set[str]:
    """Every sparsebench module `path` imports, at module level or inside a function."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if (
            isinstance(node, ast.ImportFrom)
            and node.module
            and node.module.startswith("sparsebench")
        ):
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names} & set(known)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("sparsebench")}
    return found - {"sparsebench"}


def part(module: str) -> str:
    pieces = module.split(".")[1:]
    if pieces[0] == "methods" and len(pieces) > 1:
        return f"methods.{pieces[1]}"
    return pieces[0]


def edges() -> list[tuple[str, str]]:
    known = module_names()
    return [(src, dst) for src, path in known.items() for dst in sorted(imports(path, known))]


def test_every_module_has_a_floor():
    unknown = sorted({part(m) for m in module_names() if m != "sparsebench"} - set(FLOORS))
    assert not unknown, f"give these a floor in FLOORS: {unknown}"


def test_no_import_runs_upward():
    upward = [
        f"{src} (floor {FLOORS[part(src)]}) imports {dst} (floor {FLOORS[part(dst)]})"
        for src, dst in edges()
        if src != "sparsebench" and FLOORS[part(dst)] > FLOORS[part(src)]
    ]
    assert not upward, "\n".join(upward)


def test_methods_import_no_sibling_method():
    siblings = [
        f"{src} imports {dst}"
        for src, dst in edges()
        if part(src).startswith("methods.")
        and dst.startswith("sparsebench.methods.")
        and not dst.endswith(".base")
        and dst != src
    ]
    assert not siblings, "\n".join(siblings)


@pytest.mark.parametrize("layer", ["engines", "runner", "report", "config", "cli"])
def test_upper_floors_reach_methods_only_through_a_family_base(layer):
    direct = [
        f"{src} imports {dst}"
        for src, dst in edges()
        if part(src) == layer
        and dst.startswith("sparsebench.methods.")
        and not dst.endswith(".base")
    ]
    assert not direct, "\n".join(direct)
