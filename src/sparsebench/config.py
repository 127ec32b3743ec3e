"""Load, validate and expand the suite's config files before any job runs.

Every file is checked against its JSON Schema in workflow/schemas, then every name and param in
a grid against the registry. A problem raises ConfigError with the file, the field path and the
valid choices, so a typo stops the workflow at start-up with one readable line.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from sparsebench import registry
from sparsebench.registry import RegistryError, UnknownNameError
from sparsebench.spec import Budget, Component, RunSpec


class ConfigError(ValueError):
    """An invalid config file; the message names the file, the field and the valid choices."""


@dataclass
class Experiment:
    path: Path
    family: str
    runs: list[RunSpec]
    claims: list[dict[str, Any]] = field(default_factory=list)
    raw: dict[str, Any] = field(default_factory=dict)


@dataclass
class Suite:
    path: Path
    hardware: dict[str, Any]
    experiments: list[Experiment]
    tracking_uri: str | None
    raw: dict[str, Any] = field(default_factory=dict)
    kernels: list[str] = field(default_factory=list)
    benchmarks: list[str] = field(default_factory=list)

    @property
    def runs(self) -> list[RunSpec]:
        return [run for experiment in self.experiments for run in experiment.runs]


def schema_dir(root: Path) -> Path:
    return root / "workflow" / "schemas"


def read_yaml(path: Path) -> dict[str, Any]:
    if not path.exists():
        raise ConfigError(f"{path}: file not found")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return data


def validate(data: dict[str, Any], schema_name: str, path: Path, root: Path) -> None:
    schema = yaml.safe_load((schema_dir(root) / f"{schema_name}.schema.yaml").read_text())
    validator = jsonschema.Draft202012Validator(schema)
    error = jsonschema.exceptions.best_match(validator.iter_errors(data))
    if error is not None:
        raise ConfigError(f"{path}: {_field(error)}: {_explain(error)}")


def _field(error: jsonschema.ValidationError) -> str:
    out = ""
    for part in error.absolute_path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _explain(error: jsonschema.ValidationError) -> str:
    if error.validator == "enum":
        return f"{error.instance!r} is not valid; valid choices: " + ", ".join(
            map(str, error.validator_value)
        )
    if error.validator == "additionalProperties":
        allowed = ", ".join(sorted(error.schema.get("properties", {})))
        unexpected = sorted(set(error.instance) - set(error.schema.get("properties", {})))
        return f"unknown key(s) {', '.join(map(repr, unexpected))}; valid keys: {allowed}"
    return error.message


def load_hardware(name: str, root: Path) -> dict[str, Any]:
    folder = root / "configs" / "hardware"
    path = folder / f"{name}.yaml"
    if not path.exists():
        valid = ", ".join(sorted(p.stem for p in folder.glob("*.yaml")))
        raise ConfigError(f"unknown hardware profile {name!r}; valid choices: {valid}")
    data = read_yaml(path)
    validate(data, "hardware", path, root)
    return data


def hardware_names(root: Path) -> list[str]:
    return sorted(p.stem for p in (root / "configs" / "hardware").glob("*.yaml"))


def load_experiment(path: Path, hardware: str, root: Path) -> Experiment:
    data = read_yaml(path)
    validate(data, "experiment", path, root)
    family = data["family"]
    budget = data.get("budget", {})
    runs = []
    for section, kind in (("methods", family), ("datasets", "dataset"), ("models", "model")):
        for i, item in enumerate(data[section]):
            for params in expand_params(item.get("params", {})):
                try:
                    registry.make_params(kind, item["name"], params)
                except RegistryError as err:
                    field_name = "name" if isinstance(err, UnknownNameError) else "params"
                    raise ConfigError(f"{path}: {section}[{i}].{field_name}: {err}") from None
    try:
        checked = Budget(**budget)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{path}: budget: {err}") from None
    for i, item in enumerate(data["methods"]):
        check_budget_requirements(family, item["name"], checked, f"{path}: methods[{i}]")
    for item in data["methods"]:
        seeds = item.get("seeds", data["seeds"])
        for method, dataset, model, seed in itertools.product(
            _components([item]), _components(data["datasets"]), _components(data["models"]), seeds
        ):
            runs.append(RunSpec(family, method, dataset, model, hardware, int(seed), dict(budget)))
    return Experiment(path, family, runs, data.get("claims", []), data)


def check_budget_requirements(family: str, name: str, budget: Budget, where: str) -> None:
    """Refuse a budget that breaks the method's update rule (e.g. SCAFFOLD's option II with
    Adam), naming the budget field, the value the method needs and why."""
    method = registry.get(family, name).obj
    for key, needed in getattr(method, "budget_requirements", {}).items():
        if getattr(budget, key) != needed:
            raise ConfigError(
                f"{where}: {name} needs budget.{key} = {needed!r} ({method.budget_reason}), "
                f"got {getattr(budget, key)!r}"
            )


def expand_params(params: dict[str, Any]) -> list[dict[str, Any]]:
    """Each list-valued param is an axis; the product of the axes, in sorted key order."""
    keys = sorted(params)
    axes = [params[k] if isinstance(params[k], list) else [params[k]] for k in keys]
    return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*axes)]


def _components(items: list[dict[str, Any]]) -> list[Component]:
    return [
        Component(item["name"], params)
        for item in items
        for params in expand_params(item.get("params", {}))
    ]


def load_suite(path: str | Path, root: str | Path = ".") -> Suite:
    root, path = Path(root), Path(path)
    data = read_yaml(path)
    validate(data, "suite", path, root)
    try:
        hardware = load_hardware(data["hardware"], root)
    except ConfigError as err:
        raise ConfigError(f"{path}: hardware: {err}") from None
    experiments = [
        load_experiment(root / exp, data["hardware"], root) for exp in data["experiments"]
    ]
    tracking = data.get("mlflow", {}).get("tracking_uri")
    kernels = data.get("kernels", [])
    if kernels:
        check_kernels(kernels, hardware, path)
    benchmarks = data.get("benchmarks", [])
    return Suite(path, hardware, experiments, tracking, data, kernels, benchmarks)


def check_kernels(names: list[str], hardware: dict[str, Any], path: Path) -> None:
    """Refuse unknown kernel names (importing the kernels decides interpreter vs compiled)."""
    from sparsebench.kernels.harness import load_kernels

    load_kernels(hardware["device"])
    for i, name in enumerate(names):
        try:
            registry.get("kernel", name)
        except RegistryError as err:
            raise ConfigError(f"{path}: kernels[{i}]: {err}") from None
