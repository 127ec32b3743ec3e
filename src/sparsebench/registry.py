"""One registry for everything a grid can name: methods (per family), datasets, models, kernels.

`@register(kind, name, params=SomeParams)` records a builder and its params dataclass. Lookups
fail with the list of valid names, and params are checked against the dataclass fields before
any work starts, so a typo in a config is reported at load time with the valid choices.

Datasets and models also declare, statically, which kind of input meets between them: a dataset
the one it `produces`, a model the ones it `accepts` (a tuple, or a function of its params when
a param changes what it can read). A grid pairing a model with a dataset it cannot read is then
refused at load time, without building (possibly downloading) the dataset.
"""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sparsebench.spec import Regime

FAMILIES = ("sparse_training", "pruning", "compression", "federated")
KINDS = ("dataset", "model", "kernel", *FAMILIES)


class RegistryError(ValueError):
    """A name or parameter that the registry does not know; the message lists valid choices."""


class UnknownNameError(RegistryError):
    """The name itself is not registered (as opposed to a bad param of a known name)."""


INPUTS: dict[str, str] = {
    "features": "float feature vectors",
    "signal": "1-D float signals",
    "image": "float images shaped (C, H, W)",
    "lm": "token windows with a next-token target at every position, for language modelling",
    "next-token": "token windows with one target each, the token after the window",
}
"""The kinds of input a dataset produces and a model accepts, with what each one is."""

FLOAT_INPUTS = ("features", "signal", "image")
"""What a model reads unless it declares otherwise: any float tensor, as an MLP does."""

Accepts = tuple[str, ...] | Callable[[Any], tuple[str, ...]]


@dataclass(frozen=True)
class Entry:
    kind: str
    name: str
    obj: Any
    params: type | None
    produces: str | None = None
    """Datasets only: the kind of input (a key of INPUTS) the dataset gives a model."""
    accepts: Accepts | None = None
    """Models only: the input kinds the model reads, or a function of its params giving them."""
    regime: Regime | None = None
    """Methods only: the optimizer regime of the method's paper (None: not declared)."""

    def doc(self) -> str:
        text = (self.obj.__doc__ or "").strip()
        return text.splitlines()[0] if text else ""


_REGISTRY: dict[str, dict[str, Entry]] = {kind: {} for kind in KINDS}
_LOADED = False


def register(
    kind: str,
    name: str,
    params: type | None = None,
    *,
    produces: str | None = None,
    accepts: Accepts | None = None,
    regime: Regime | None = None,
) -> Callable[[Any], Any]:
    """Class or function decorator that registers `obj` under (kind, name).

    `produces` (datasets, default "features") and `accepts` (models, default FLOAT_INPUTS)
    declare the input kind that lets a grid's (dataset, model) pairs be checked at load time;
    `regime` (methods) the optimizer regime of the method's paper.
    """
    if kind not in _REGISTRY:
        raise RegistryError(f"unknown kind {kind!r}; valid kinds: {', '.join(KINDS)}")
    produces, accepts = _input_declaration(kind, name, produces, accepts)

    def decorate(obj: Any) -> Any:
        if name in _REGISTRY[kind] and _REGISTRY[kind][name].obj is not obj:
            raise RegistryError(f"{kind} {name!r} is registered twice")
        _REGISTRY[kind][name] = Entry(kind, name, obj, params, produces, accepts, regime)
        return obj

    return decorate


def _input_declaration(
    kind: str, name: str, produces: str | None, accepts: Accepts | None
) -> tuple[str | None, Accepts | None]:
    """Check an entry's input declaration and fill the defaults of datasets and models."""
    if produces is not None and kind != "dataset":
        raise RegistryError(f"{kind} {name!r}: only a dataset declares `produces`")
    if accepts is not None and kind != "model":
        raise RegistryError(f"{kind} {name!r}: only a model declares `accepts`")
    if kind == "dataset":
        produces = produces or "features"
        _check_inputs(kind, name, (produces,))
    if kind == "model":
        accepts = FLOAT_INPUTS if accepts is None else accepts
        if not callable(accepts):
            _check_inputs(kind, name, accepts)
    return produces, accepts


def _check_inputs(kind: str, name: str, inputs: tuple[str, ...]) -> None:
    unknown = [i for i in inputs if i not in INPUTS]
    if unknown or not inputs:
        raise RegistryError(
            f"{kind} {name!r}: unknown input kind(s) {', '.join(map(repr, unknown)) or '(none)'}; "
            f"valid kinds: {', '.join(INPUTS)}"
        )


def load_all() -> None:
    """Import every module that registers something, once."""
    global _LOADED
    if _LOADED:
        return
    for package in (
        "sparsebench.data",
        "sparsebench.models",
        "sparsebench.methods.sparse_training",
        "sparsebench.methods.pruning",
        "sparsebench.methods.compression",
        "sparsebench.methods.federated",
    ):
        _import_submodules(package)
    _LOADED = True


def _import_submodules(package_name: str) -> None:
    package = importlib.import_module(package_name)
    for info in pkgutil.iter_modules(package.__path__):
        if not info.name.startswith("_"):
            importlib.import_module(f"{package_name}.{info.name}")


def names(kind: str) -> list[str]:
    load_all()
    return sorted(_REGISTRY[kind])


def get(kind: str, name: str) -> Entry:
    load_all()
    if kind not in _REGISTRY:
        raise RegistryError(f"unknown kind {kind!r}; valid kinds: {', '.join(KINDS)}")
    try:
        return _REGISTRY[kind][name]
    except KeyError:
        valid = ", ".join(sorted(_REGISTRY[kind])) or "(none registered)"
        raise UnknownNameError(f"unknown {kind} {name!r}; valid choices: {valid}") from None


def accepted_inputs(model: str, params: Any) -> tuple[str, ...]:
    """The input kinds model `model` reads when built with `params` (its params dataclass)."""
    accepts = get("model", model).accepts
    inputs = accepts(params) if callable(accepts) else accepts
    _check_inputs("model", model, inputs)
    return inputs


def datasets_producing(inputs: tuple[str, ...]) -> list[str]:
    """The registered datasets whose input kind is one of `inputs`."""
    return [name for name in names("dataset") if _REGISTRY["dataset"][name].produces in inputs]


def make_params(kind: str, name: str, values: dict[str, Any]) -> Any:
    """Build the entry's params dataclass from a plain dict, checking names and types; the
    first problem found is raised."""
    params, problems = _build_params(kind, name, values)
    if problems:
        raise RegistryError(problems[0])
    return params


def param_errors(kind: str, name: str, values: dict[str, Any]) -> list[str]:
    """Every problem of `values`: unknown params, wrong types, and what the params dataclass
    refuses of the well-typed rest, so that one bad param never hides another."""
    return _build_params(kind, name, values)[1]


def _build_params(kind: str, name: str, values: dict[str, Any]) -> tuple[Any, list[str]]:
    """The params dataclass built from `values` (None on a problem) and every problem found."""
    entry = get(kind, name)
    if entry.params is None:
        extra = [f"{kind} {name!r} takes no params, got: {', '.join(values)}"] if values else []
        return None, extra
    fields = [f.name for f in dataclasses.fields(entry.params)]
    hints = typing.get_type_hints(entry.params)
    problems, typed = [], {}
    for key, value in values.items():
        if key not in fields:
            problems.append(
                f"{kind} {name!r} has no param {key!r}; valid params: {', '.join(fields)}"
            )
            continue
        try:
            _check_type(kind, name, key, value, hints[key])
            typed[key] = value
        except RegistryError as err:
            problems.append(str(err))
    try:
        params = entry.params(**typed)
    except (TypeError, ValueError) as err:
        return None, [*problems, f"{kind} {name!r}: {err}"]
    return (None if problems else params), problems


def _check_type(kind: str, name: str, key: str, value: Any, hint: Any) -> None:
    where = f"{kind} {name!r} param {key!r}"
    if typing.get_origin(hint) is typing.Literal:
        choices = typing.get_args(hint)
        if value not in choices:
            raise RegistryError(f"{where}: {value!r} is not one of {', '.join(map(repr, choices))}")
        return
    allowed = _allowed_types(hint)
    if allowed is None:
        return
    if isinstance(value, allowed) and not (isinstance(value, bool) and bool not in allowed):
        return
    raise RegistryError(f"{where}: expected {_type_name(hint)}, got {value!r}")


def _allowed_types(hint: Any) -> tuple[type, ...] | None:
    """The runtime types a value may have for `hint`; None when anything goes."""
    origin = typing.get_origin(hint)
    if origin is typing.Literal:
        return tuple({type(arg) for arg in typing.get_args(hint)})
    if origin in (typing.Union, types.UnionType):
        out: tuple[type, ...] = ()
        for arg in typing.get_args(hint):
            sub = _allowed_types(arg)
            if sub is None:
                return None
            out += sub
        return out
    if hint is float:
        return (float, int)
    if hint is type(None):
        return (type(None),)
    if isinstance(hint, type):
        return (hint,)
    if origin is not None and isinstance(origin, type):
        return (origin,)
    return None


def _type_name(hint: Any) -> str:
    return getattr(hint, "__name__", str(hint))
