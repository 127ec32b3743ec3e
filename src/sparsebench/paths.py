"""Where the project is: the checkout whose configs/ and workflow/schemas/ the CLI reads.

Inputs (hardware profiles, suites, experiment grids, schemas, baselines) come from the project, so
`sparsebench` works from any directory; outputs (result.json, results/, reports/) go where the
command is told or runs, as with Snakemake. The project is, first match wins: `--root`, then
$SPARSEBENCH_ROOT, then the current directory or one above it, then the checkout this package is
installed from (an editable install). A root the user named that is not a project is an error,
never quietly replaced by another one.
"""

from __future__ import annotations

import os
from pathlib import Path

ENV_VAR = "SPARSEBENCH_ROOT"
MARKERS = (Path("configs") / "hardware", Path("workflow") / "schemas")


class ProjectNotFoundError(ValueError):
    """No project at the named root, or none anywhere looked; the message says where and how."""


HOW_TO_POINT = f"pass --root PATH or set {ENV_VAR}=PATH to a sparsebench checkout"


def is_project(path: Path) -> bool:
    return all((path / marker).is_dir() for marker in MARKERS)


def installed_checkout() -> Path:
    """The checkout an editable install runs from (src/sparsebench/paths.py -> the checkout)."""
    return Path(__file__).resolve().parents[2]


def project_root(explicit: str | Path | None = None) -> Path:
    """The project root (absolute), searched in the order the module docstring gives."""
    for source, value in (("--root", explicit), (ENV_VAR, os.environ.get(ENV_VAR))):
        if value:
            path = Path(value).expanduser().resolve()
            if not is_project(path):
                raise ProjectNotFoundError(
                    f"{source} {path} is not a sparsebench project (it lacks "
                    f"{' or '.join(f'{m}/' for m in MARKERS)}); {HOW_TO_POINT}"
                )
            return path
    here = Path.cwd()
    for path in (here, *here.parents, installed_checkout()):
        if is_project(path):
            return path
    raise ProjectNotFoundError(
        f"no sparsebench project found: looked for {' and '.join(f'{m}/' for m in MARKERS)} "
        f"in {here} and the directories above it, and in {installed_checkout()} (where this "
        f"package is installed from); {HOW_TO_POINT}, or run from inside one"
    )


def project_file(text: str | Path, root: Path) -> Path:
    """A config file named on the command line: as given if it exists there (or is absolute),
    else the same relative path inside the project."""
    path = Path(text).expanduser()
    return path if path.is_absolute() or path.exists() else root / path
