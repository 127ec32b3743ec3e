"""Load, validate and expand the suite's config files before any job runs.

Every file is checked against its JSON Schema in workflow/schemas, then every name and param in
a grid against the registry, the budget against each method's needs, and every (dataset, model)
pair against the input kinds they declare. Every problem of every file is collected and raised
as one ConfigError, one line each naming the file, the field and the valid choices, so one run
of `sparsebench validate` shows all that a config needs fixed, before any job starts.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from sparsebench import registry
from sparsebench.registry import RegistryError, UnknownNameError
from sparsebench.spec import Budget, Component, RunSpec


class ConfigError(ValueError):
    """An invalid config; the message names the file, the field and the valid choices.

    `problems` holds one line per problem; with several, the message lists them one per line.
    """

    def __init__(self, *problems: str) -> None:
        self.problems = list(problems)
        if len(problems) == 1:
            super().__init__(problems[0])
        else:
            lines = "\n".join(f"  {problem}" for problem in problems)
            super().__init__(f"{len(problems)} problems:\n{lines}")


@dataclass
class Experiment:
    path: Path
    family: str
    runs: list[RunSpec]
    claims: list[dict[str, Any]] = field(default_factory=list)
    raw: dict[str, Any] = field(default_factory=dict)
    reference: RunSpec | None = None
    """The grid run its `convergence` section names (the reference cell's first seed)."""
    probe: RunSpec | None = None
    """That run trained `convergence.factor` times longer: where the reference's curve goes."""


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

    @property
    def probes(self) -> list[RunSpec]:
        """Every grid's convergence probe (`Experiment.probe`), each once."""
        probes = [e.probe for e in self.experiments if e.probe is not None]
        return list({probe.key(): probe for probe in probes}.values())


def schema_dir(root: Path) -> Path:
    return root / "workflow" / "schemas"


def read_yaml(path: Path) -> dict[str, Any]:
    """The file's top-level mapping; a missing, unreadable or malformed file is a ConfigError."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except (OSError, ValueError) as err:
        raise ConfigError(f"{path}: cannot read: {err}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: {_yaml_problem(err)}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return data


def _yaml_problem(err: yaml.YAMLError) -> str:
    """The parser's complaint on one line, prefixed by where it is: `line 3, column 7`."""
    mark = getattr(err, "problem_mark", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
    problem = " ".join(str(getattr(err, "problem", None) or err).split())
    return f"{where}not valid YAML: {problem}"


def _yaml_integer(checker: Any, instance: Any) -> bool:
    """A YAML integer only: JSON Schema also counts 3.0, which breaks `range(steps)` in a job."""
    return isinstance(instance, int) and not isinstance(instance, bool)


Validator = jsonschema.validators.extend(
    jsonschema.Draft202012Validator,
    type_checker=jsonschema.Draft202012Validator.TYPE_CHECKER.redefine("integer", _yaml_integer),
)


def validate(data: dict[str, Any], schema_name: str, path: Path, root: Path) -> None:
    """Refuse `data` with every violation of its schema, one line each."""
    errors = schema_errors(data, schema_name, path, root)
    if errors:
        raise ConfigError(*errors)


def schema_errors(data: dict[str, Any], schema_name: str, path: Path, root: Path) -> list[str]:
    """Every violation of the schema, each as `file: field: what is wrong (valid choices)`."""
    return [f"{path}: {_field(e)}: {_explain(e)}" for e in _violations(data, schema_name, root)]


def _violations(data: Any, schema_name: str, root: Path) -> list[jsonschema.ValidationError]:
    """All errors, not only the best one; each oneOf/anyOf error replaced by its likeliest cause."""
    schema = yaml.safe_load((schema_dir(root) / f"{schema_name}.schema.yaml").read_text())
    errors = Validator(schema).iter_errors(data)
    return [jsonschema.exceptions.best_match([error]) for error in errors]


def _field(error: jsonschema.ValidationError) -> str:
    return _dotted(error.absolute_path)


def _dotted(parts: Any) -> str:
    """`methods[0].params` from the path ("methods", 0, "params")."""
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _explain(error: jsonschema.ValidationError) -> str:
    if error.validator == "enum":
        return f"{error.instance!r} is not valid; valid choices: " + ", ".join(
            map(str, error.validator_value)
        )
    if error.validator == "additionalProperties":
        allowed = ", ".join(sorted(error.schema.get("properties", {})))
        unexpected = sorted(set(error.instance) - set(error.schema.get("properties", {})), key=str)
        return f"unknown key(s) {', '.join(map(repr, unexpected))}; valid keys: {allowed}"
    return error.message


def load_hardware(name: str, root: Path) -> dict[str, Any]:
    """A hardware profile, checked against root's schema: a name is configs/hardware/<name>.yaml
    under root; anything with a folder or a .yaml/.yml suffix is a path to the profile's file.
    An unknown name says which folder was searched and how to point at another."""
    from sparsebench.paths import HOW_TO_POINT

    given = Path(name)
    folder = root / "configs" / "hardware"
    if given.name != name or given.suffix in (".yaml", ".yml"):
        path = given.expanduser()
    else:
        path = folder / f"{name}.yaml"
        if not path.exists():
            valid = ", ".join(hardware_names(root)) or "none"
            raise ConfigError(
                f"unknown hardware profile {name!r} in {folder}; valid choices: {valid}; "
                f"give a profile's path instead, or {HOW_TO_POINT}"
            )
    data = read_yaml(path)
    validate(data, "hardware", path, root)
    return data


def hardware_names(root: Path) -> list[str]:
    """The profiles under root's configs/hardware/, by name."""
    return sorted(p.stem for p in (root / "configs" / "hardware").glob("*.yaml"))


def load_experiment(path: Path, hardware: str, root: Path) -> Experiment:
    """One grid expanded to its runs, or a ConfigError listing every problem of the file."""
    data = read_yaml(path)
    violations = _violations(data, "experiment", root)
    errors = [f"{path}: {_field(e)}: {_explain(e)}" for e in violations]
    errors += _non_finite(data, (), path)
    broken = {e.absolute_path[0] for e in violations if e.absolute_path}
    errors += grid_errors(data, path, broken)
    if errors:
        raise ConfigError(*dict.fromkeys(errors))
    runs = expand_runs(data, hardware)
    reference, problems = reference_run(data.get("convergence"), runs, path)
    if problems:
        raise ConfigError(*problems)
    probe = None
    if reference is not None:
        probe = probe_run(reference, data["convergence"].get("factor", PROBE_FACTOR))
    return Experiment(path, data["family"], runs, data.get("claims", []), data, reference, probe)


PROBE_FACTOR = 4
"""How many times the grid's budget a convergence probe trains, unless the grid says."""


def reference_run(
    convergence: dict[str, Any] | None, runs: list[RunSpec], path: Path
) -> tuple[RunSpec | None, list[str]]:
    """The first seed of the one grid cell `convergence.reference` names, or the problem."""
    if convergence is None:
        return None, []
    wanted = convergence["reference"]

    def named(run: RunSpec) -> bool:
        params = wanted.get("params", {})
        return (
            run.method.name == wanted["method"]
            and all(run.method.params.get(k) == v for k, v in params.items())
            and wanted.get("dataset", run.dataset.name) == run.dataset.name
            and wanted.get("model", run.model.name) == run.model.name
        )

    def cell(run: RunSpec) -> str:
        return " / ".join(c.label() for c in (run.method, run.dataset, run.model))

    matches = [run for run in runs if named(run)]
    cells = sorted({cell(run) for run in matches})
    if len(cells) == 1:
        return min(matches, key=lambda run: run.seed), []
    choices = ", ".join(sorted({cell(run) for run in runs}))
    found = f"{len(cells)} cells ({', '.join(cells)})" if cells else "no cell"
    return None, [
        f"{path}: convergence.reference: names {found}; it must name exactly one of: {choices}"
    ]


def probe_run(reference: RunSpec, factor: int) -> RunSpec:
    """`reference` trained `factor` times longer: steps times factor (federated: rounds), the
    schedule stretched with it (milestones and cosine are fractions of the whole)."""
    length = "rounds" if reference.family == "federated" else "steps"
    budget = dict(reference.budget)
    budget[length] = getattr(Budget(**reference.budget), length) * factor
    return replace(reference, budget=budget)


def grid_errors(data: dict[str, Any], path: Path, broken: set[Any]) -> list[str]:
    """Registry, budget and compatibility problems of a grid; `broken` names the top-level
    sections the schema already refused, which are not checked twice."""
    family = data.get("family")
    sections = [("datasets", "dataset"), ("models", "model")]
    if family in registry.FAMILIES:
        sections.insert(0, ("methods", family))
    errors = [
        error
        for section, kind in sections
        for error in component_errors(data.get(section), section, kind, path)
    ]
    errors += compatibility_errors(data, path)
    if family in registry.FAMILIES and "budget" not in broken:
        errors += budget_errors(data, family, path)
    return errors


def component_errors(items: Any, section: str, kind: str, path: Path) -> list[str]:
    """Unknown names, empty axes and bad params of a methods/datasets/models section."""
    errors = []
    for i, item, name in _named(items):
        where = f"{path}: {section}[{i}]"
        try:
            registry.get(kind, name)
        except UnknownNameError as err:
            errors.append(f"{where}.name: {err}")
            continue
        params = _params(item)
        empty = [key for key, value in params.items() if value == []]
        errors += [
            f"{where}.params.{key}: an empty list is an axis with no values" for key in empty
        ]
        for values in expand_params(params):
            errors += [f"{where}.params: {e}" for e in registry.param_errors(kind, name, values)]
    return errors


def compatibility_errors(data: dict[str, Any], path: Path) -> list[str]:
    """Every (dataset, model) pair whose model cannot read the input kind the dataset declares."""
    datasets = [
        (j, name, registry.get("dataset", name).produces)
        for j, _, name in _named(data.get("datasets"), "dataset")
    ]
    errors = []
    for i, item, name in _named(data.get("models"), "model"):
        for label, accepts in _model_inputs(item, name):
            errors += [
                f"{path}: models[{i}].name: {_mismatch(label, accepts, dataset, j, produces)}"
                for j, dataset, produces in datasets
                if produces not in accepts
            ]
    return errors


def _model_inputs(item: dict[str, Any], name: str) -> Iterator[tuple[str, tuple[str, ...]]]:
    """(label, accepted input kinds): once for a model that declares a fixed tuple, per valid
    param combination (labelled with the params) for one whose inputs depend on its params."""
    if not callable(registry.get("model", name).accepts):
        yield name, registry.accepted_inputs(name, None)
        return
    for values in expand_params(_params(item)):
        try:
            params = registry.make_params("model", name, values)
        except RegistryError:
            continue  # reported by component_errors
        yield Component(name, values).label(), registry.accepted_inputs(name, params)


def _mismatch(model: str, accepts: tuple[str, ...], dataset: str, j: int, produces: str) -> str:
    """Why the pair cannot run, what the model reads instead, and which datasets give that."""
    fitting = ", ".join(registry.datasets_producing(accepts)) or "(none registered)"
    return (
        f"model {model!r} cannot read dataset {dataset!r} (datasets[{j}]), which gives "
        f"{produces} ({registry.INPUTS[produces]}); {model} accepts {', '.join(accepts)}; "
        f"valid datasets: {fitting}"
    )


def budget_errors(data: dict[str, Any], family: str, path: Path) -> list[str]:
    """A budget the Budget dataclass refuses, or one that breaks a method's update rule."""
    try:
        budget = Budget(**data.get("budget", {}))
    except (TypeError, ValueError) as err:
        return [f"{path}: budget: {err}"]
    return [
        error
        for i, _, name in _named(data.get("methods"), family)
        for error in budget_requirement_errors(family, name, budget, f"{path}: methods[{i}]")
    ]


def budget_requirement_errors(family: str, name: str, budget: Budget, where: str) -> list[str]:
    """Refuse a budget that breaks the method's update rule (e.g. SCAFFOLD's option II with
    Adam), naming the budget field, the value the method needs and why."""
    method = registry.get(family, name).obj
    return [
        f"{where}: {name} needs budget.{key} = {needed!r} ({method.budget_reason}), "
        f"got {getattr(budget, key)!r}"
        for key, needed in getattr(method, "budget_requirements", {}).items()
        if getattr(budget, key) != needed
    ]


def _named(items: Any, kind: str | None = None) -> Iterator[tuple[int, dict[str, Any], str]]:
    """(index, item, name) of the section's items that have a name (and, given `kind`, one the
    registry knows); the rest were already refused by the schema or by component_errors."""
    for i, item in enumerate(items if isinstance(items, list) else []):
        name = item.get("name") if isinstance(item, dict) else None
        if isinstance(name, str) and (kind is None or name in registry.names(kind)):
            yield i, item, name


def _params(item: dict[str, Any]) -> dict[str, Any]:
    """The item's params, or none where the schema refused them (not a mapping of names)."""
    params = item.get("params", {})
    if isinstance(params, dict) and all(isinstance(key, str) for key in params):
        return params
    return {}


def _non_finite(node: Any, parts: tuple[Any, ...], path: Path) -> list[str]:
    """NaN and infinity anywhere in the file (JSON Schema ranges let NaN through)."""
    if isinstance(node, float) and not math.isfinite(node):
        return [f"{path}: {_dotted(parts)}: {node!r} is not a finite number"]
    if isinstance(node, dict):
        pairs = node.items()
    elif isinstance(node, list):
        pairs = enumerate(node)
    else:
        return []
    return [error for key, value in pairs for error in _non_finite(value, (*parts, key), path)]


def expand_params(params: dict[str, Any]) -> list[dict[str, Any]]:
    """Each list-valued param is an axis; the product of the axes, in sorted key order."""
    keys = sorted(params)
    axes = [params[k] if isinstance(params[k], list) else [params[k]] for k in keys]
    return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*axes)]


def expand_runs(data: dict[str, Any], hardware: str) -> list[RunSpec]:
    """The runs of a valid grid: methods (each with its own seeds) x datasets x models x seeds."""
    family, budget = data["family"], data.get("budget", {})
    runs = []
    for item in data["methods"]:
        seeds = item.get("seeds", data["seeds"])
        for method, dataset, model, seed in itertools.product(
            _components([item]), _components(data["datasets"]), _components(data["models"]), seeds
        ):
            runs.append(RunSpec(family, method, dataset, model, hardware, int(seed), dict(budget)))
    return runs


def _components(items: list[dict[str, Any]]) -> list[Component]:
    return [
        Component(item["name"], params)
        for item in items
        for params in expand_params(item.get("params", {}))
    ]


def load_suite(path: str | Path, root: str | Path = ".") -> Suite:
    """The suite and all its grids, or one ConfigError listing every problem of every file."""
    root, path = Path(root), Path(path)
    data = read_yaml(path)
    violations = _violations(data, "suite", root)
    errors = [f"{path}: {_field(e)}: {_explain(e)}" for e in violations]
    broken = {e.absolute_path[0] for e in violations if e.absolute_path}
    hardware, problems = _suite_hardware(data, broken, path, root)
    errors += problems
    experiments, problems = _suite_experiments(data.get("experiments"), data.get("hardware"), root)
    errors += problems
    kernels = data.get("kernels", [])
    if hardware is not None and isinstance(kernels, list) and kernels:
        errors += kernel_errors(kernels, hardware, path)
    if errors:
        raise ConfigError(*dict.fromkeys(errors))
    tracking = data.get("mlflow", {}).get("tracking_uri")
    benchmarks = data.get("benchmarks", [])
    return Suite(path, hardware, experiments, tracking, data, kernels, benchmarks)


def _suite_hardware(
    data: dict[str, Any], broken: set[Any], path: Path, root: Path
) -> tuple[dict[str, Any] | None, list[str]]:
    """The suite's hardware profile, or None and its problems (none new where the schema
    already refused the name)."""
    if "hardware" in broken or "hardware" not in data:
        return None, []
    try:
        return load_hardware(data["hardware"], root), []
    except ConfigError as err:
        return None, [f"{path}: hardware: {problem}" for problem in err.problems]


def _suite_experiments(files: Any, hardware: Any, root: Path) -> tuple[list[Experiment], list[str]]:
    """Every grid file the suite names, loaded, and the problems of those that fail."""
    experiments, errors = [], []
    for name in files if isinstance(files, list) else []:
        if not isinstance(name, str):
            continue
        try:
            experiments.append(load_experiment(root / name, str(hardware), root))
        except ConfigError as err:
            errors += err.problems
    return experiments, errors


def kernel_errors(names: list[Any], hardware: dict[str, Any], path: Path) -> list[str]:
    """Unknown kernel names. Checked only on a known hardware profile: importing the kernels
    for its device decides, once per process, between Triton's interpreter and compiling."""
    from sparsebench.kernels.harness import load_kernels

    load_kernels(hardware["device"])
    errors = []
    for i, name in enumerate(names):
        if not isinstance(name, str):
            continue  # refused by the schema
        try:
            registry.get("kernel", name)
        except RegistryError as err:
            errors.append(f"{path}: kernels[{i}]: {err}")
    return errors
