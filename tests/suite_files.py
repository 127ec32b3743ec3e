"""A suite on disk for config tests: one grid file, the cpu hardware profile and the schemas."""

from __future__ import annotations

from pathlib import Path

import yaml


def write_suite(tmp: Path, root: Path, grid: dict, suite_extra: dict | None = None) -> Path:
    """configs/suite.yaml under `tmp` naming one grid (`grid`), beside root's cpu profile and
    workflow/ (its schemas); `suite_extra` adds or replaces suite fields."""
    (tmp / "configs" / "experiments").mkdir(parents=True)
    (tmp / "configs" / "hardware").mkdir()
    (tmp / "configs" / "hardware" / "cpu.yaml").write_text(
        (root / "configs" / "hardware" / "cpu.yaml").read_text()
    )
    (tmp / "workflow").symlink_to(root / "workflow")
    (tmp / "configs" / "experiments" / "grid.yaml").write_text(yaml.safe_dump(grid))
    suite = {"hardware": "cpu", "experiments": ["configs/experiments/grid.yaml"]}
    suite.update(suite_extra or {})
    path = tmp / "configs" / "suite.yaml"
    path.write_text(yaml.safe_dump(suite))
    return path
