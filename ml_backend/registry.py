"""Name -> component registries, so backbones, selectors, predictors and metrics are chosen by name.

Components are registered by import path ("module:attribute") and imported on first use, so that
listing names (``--help``, settings, error messages) never imports torch. ``create`` turns
user-supplied parameters (strings from environment variables and CLI flags, JSON values from
Label Studio) into the types the component's signature declares, and refuses unknown names and
parameters with one line naming them.
"""
from __future__ import annotations

import importlib
import inspect
import numbers
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any, Generic, TypeVar

from .errors import ConfigError

T = TypeVar("T")


def check_int(name: str, value: object, minimum: int, allow_none: bool = False) -> int | None:
    """A whole number (not a bool) of at least ``minimum``; ConfigError naming it otherwise."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        wanted = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise ConfigError(f"{name} must be {wanted}, got {value!r}")
    return int(value)


class Registry(Generic[T]):
    """Maps a short name (CLI flags, env vars, extra_params) to a component factory.

    ``check`` runs on every created component (e.g. its ``check_params``), so a bad value fails
    when a project is configured, not at its first fit.
    """

    def __init__(self, kind: str, paths: Mapping[str, str] | None = None,
                 check: Callable[[T], object] | None = None) -> None:
        self.kind = kind
        self._paths = dict(paths or {})
        self._factories: dict[str, Callable[..., T]] = {}
        self._check = check

    def register(self, name: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
        def decorator(factory: Callable[..., T]) -> Callable[..., T]:
            if name in self._factories or name in self._paths:
                raise ValueError(f"{self.kind} '{name}' is registered twice")
            self._factories[name] = factory
            return factory

        return decorator

    def names(self) -> list[str]:
        return sorted({*self._factories, *self._paths})

    def get(self, name: str) -> Callable[..., T]:
        if name not in self._factories:
            if name not in self._paths:
                raise ConfigError(f"unknown {self.kind} '{name}'; choose from: {', '.join(self.names())}")
            module, _, attribute = self._paths[name].partition(":")
            self._factories[name] = getattr(importlib.import_module(module), attribute)
        return self._factories[name]

    def create(self, name: str, params: Mapping[str, Any] | None = None) -> T:
        factory = self.get(name)
        signature = inspect.signature(factory, eval_str=True)
        accepted = {p.name: p for p in signature.parameters.values() if p.kind is p.POSITIONAL_OR_KEYWORD
                    or p.kind is p.KEYWORD_ONLY}
        converted = {}
        for key, value in (params or {}).items():
            if key not in accepted:
                raise ConfigError(f"unknown parameter '{key}' for {self.kind} '{name}'; "
                                  f"allowed: {', '.join(sorted(accepted))}")
            converted[key] = convert(f"{name}.{key}", value, accepted[key])
        component = factory(**converted)
        if self._check is not None:
            self._check(component)
        return component


def _to_int(value: Any) -> int:
    """Whole numbers only: "7", 7 and 7.0 pass; "7.5", 7.5 and True do not."""
    if isinstance(value, bool):
        raise ValueError("a bool is not an integer")
    number = float(value.strip() if isinstance(value, str) else value)
    if not number.is_integer():
        raise ValueError("not a whole number")
    return int(number)


def _to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError("not a boolean")


def _to_floats(value: Any) -> tuple[float, ...]:
    items = value.split(",") if isinstance(value, str) else list(value)
    return tuple(float(item) for item in items)


def _to_str(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError("not a string")
    return value.strip()


#: Converters by declared type; parameters of other types pass as they are.
_CONVERTERS: dict[Any, Callable[[Any], Any]] = {int: _to_int, float: float, str: _to_str, bool: _to_bool}


def _declared(parameter: inspect.Parameter) -> tuple[Any, bool]:
    """The parameter's type without ``None``, and whether ``None`` is allowed."""
    annotation = parameter.annotation
    if annotation is inspect.Parameter.empty:
        return type(parameter.default), parameter.default is None
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return (args[0] if len(args) == 1 else annotation), len(args) < len(typing.get_args(annotation))
    return annotation, False


def convert(label: str, value: Any, parameter: inspect.Parameter) -> Any:
    """Coerce ``value`` to the parameter's declared type, with an error naming the parameter."""
    kind, optional = _declared(parameter)
    if optional and (value is None or (isinstance(value, str) and value.strip().lower() in ("", "none"))):
        return None
    if typing.get_origin(kind) is tuple:
        converter: Callable[[Any], Any] | None = _to_floats
    else:
        converter = _CONVERTERS.get(kind)
    if converter is None:
        return value
    try:
        return converter(value)
    except (TypeError, ValueError):
        expected = getattr(typing.get_origin(kind) or kind, "__name__", str(kind))
        raise ConfigError(f"parameter {label}={value!r} is not a valid {expected}") from None
